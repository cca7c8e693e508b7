"""gunicorn configuration of the gateway, read from the environment (see gateway.serving).

    gunicorn --config python:gateway.gunicorn_conf 'gateway.wsgi:create_app_from_env()'

Command-line flags still override what is set here.
"""

from __future__ import annotations

import gc

from gateway import instance_dir, metrics_dir, serving

# gunicorn finds its hooks by name in this module.
from gateway.metrics_dir import child_exit  # noqa: F401
from gateway.server_name import hide_server_software

hide_server_software()

_settings = serving.settings_or_exit()

bind = [_settings.bind]
workers = _settings.workers
threads = _settings.threads
worker_class = "gthread"
timeout = _settings.timeout_seconds
graceful_timeout = _settings.graceful_timeout_seconds
keepalive = _settings.keepalive_seconds
limit_request_field_size = _settings.max_header_field_bytes
worker_tmp_dir = serving.worker_tmp_dir()
# No control socket: nothing uses it, and its default path would clash between stacks
# on one machine and is read-only in the container.
control_socket_disable = True


def on_starting(server: object) -> None:
    metrics_dir.on_starting(server)
    instance_dir.on_starting(server)


def on_exit(server: object) -> None:
    metrics_dir.on_exit(server)
    instance_dir.on_exit(server)


def post_worker_init(worker: object) -> None:
    # The loaded app lives as long as the worker: out of the collector's sight it costs no
    # full collection while serving, nor the one at exit (0.3 s of every stop, measured).
    gc.freeze()
