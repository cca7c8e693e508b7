"""gunicorn serves the gateway with settings from the environment (gateway/gunicorn_conf.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from authgate_common.config import Env
from gateway.serving import ServingSettings

APP = "gateway.wsgi:create_app_from_env()"
GUNICORN = [sys.executable, "-m", "gunicorn", "--config", "python:gateway.gunicorn_conf"]


def print_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """gunicorn's own view of the settings the config module gives it (nothing is started)."""
    return subprocess.run(
        [*GUNICORN, "--print-config", APP],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def setting(output: str, name: str) -> str:
    for line in output.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    raise AssertionError(f"{name} not in gunicorn's configuration")


def test_defaults() -> None:
    settings = ServingSettings.from_env(Env({}))
    assert settings.bind == "127.0.0.1:8080"
    assert (settings.workers, settings.threads) == (2, 8)
    assert (settings.timeout_seconds, settings.graceful_timeout_seconds) == (30, 10)
    assert settings.keepalive_seconds == 5


def test_every_variable_is_read() -> None:
    settings = ServingSettings.from_env(
        Env(
            {
                "GATEWAY_HOST": "0.0.0.0",
                "GATEWAY_PORT": "9000",
                "GATEWAY_WORKERS": "4",
                "GATEWAY_THREADS": "16",
                "GATEWAY_TIMEOUT": "60",
                "GATEWAY_GRACEFUL_TIMEOUT": "20",
                "GATEWAY_KEEPALIVE": "75",
            }
        )
    )
    assert settings == ServingSettings("0.0.0.0", 9000, 4, 16, 60, 20, 75)


def test_an_ipv6_host_is_bracketed() -> None:
    assert ServingSettings.from_env(Env({"GATEWAY_HOST": "::"})).bind == "[::]:8080"


def test_gunicorn_takes_its_settings_from_the_config_module() -> None:
    result = print_config({"GATEWAY_PORT": "9123", "GATEWAY_WORKERS": "3", "GATEWAY_THREADS": "5"})
    assert result.returncode == 0, result.stderr
    assert setting(result.stdout, "bind") == "['127.0.0.1:9123']"
    assert setting(result.stdout, "workers") == "3"
    assert setting(result.stdout, "threads") == "5"
    assert setting(result.stdout, "worker_class") == "gthread"
    assert setting(result.stdout, "graceful_timeout") == "10"
    assert setting(result.stdout, "control_socket_disable") == "True"


def test_a_bad_value_stops_gunicorn_with_one_clear_line() -> None:
    result = print_config({"GATEWAY_THREADS": "0"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "gateway: configuration error: GATEWAY_THREADS must be at least 1 and at most 1024, got 0"
    )


def test_a_bad_application_value_stops_gunicorn_before_any_worker() -> None:
    result = print_config({"GATEWAY_MAX_BODY_BYTES": "0"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "gateway: configuration error: GATEWAY_MAX_BODY_BYTES must be at least 1 and at most "
        "16777216, got 0"
    )


def test_the_config_module_leaves_prometheus_client_unimported() -> None:
    # prometheus-client picks its multiprocess mode at import; the master sets the
    # directory in on_starting, after this module is read.
    probe = "import sys, gateway.gunicorn_conf; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.strip() == "False"
