"""How gunicorn or granian serves the gateway (bind address, workers, threads, timeouts), from
the environment."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from authgate_common.config import ConfigError, Env, ReadFromEnv, from_setting
from gateway import config


@dataclass(frozen=True)
class ServingSettings(ReadFromEnv):
    """What gunicorn_conf gives gunicorn, and granian_serve granian; declared in gateway.config."""

    host: str = from_setting(config.GATEWAY_HOST)
    port: int = from_setting(config.GATEWAY_PORT)
    workers: int = from_setting(config.GATEWAY_WORKERS)
    threads: int = from_setting(config.GATEWAY_THREADS)
    timeout_seconds: int = from_setting(config.GATEWAY_TIMEOUT)
    graceful_timeout_seconds: int = from_setting(config.GATEWAY_GRACEFUL_TIMEOUT)
    keepalive_seconds: int = from_setting(config.GATEWAY_KEEPALIVE)
    # Headers up to this size (an Authorization header with a large token fits).
    max_header_field_bytes: int = 16384

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def worker_tmp_dir() -> str | None:
    """Memory-backed /dev/shm for the workers' heartbeat files when there is one.

    A disk-backed (or read-only) /tmp makes heartbeats slow or impossible in containers.
    """
    return "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (not a temp file path)


def settings_or_exit() -> ServingSettings:
    """The serving settings, once every row of the gateway's table is valid (not only the
    server's: a bad value stops the server's main process in one line rather than each
    worker as it boots); else that line, and exit status 2, as the gRPC services do."""
    try:
        env = Env.from_os()
        config.SETTINGS.validate(env)
        return ServingSettings.from_env(env)
    except ConfigError as exc:
        print(f"gateway: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
