"""How gunicorn serves the gateway (bind address, workers, threads, timeouts), from the env."""

from __future__ import annotations

import os
from dataclasses import dataclass

from authgate_common.config import Env
from gateway import config


@dataclass(frozen=True)
class GunicornSettings:
    """What gunicorn_conf gives gunicorn; the settings are declared in gateway.config."""

    host: str = config.GATEWAY_HOST.default
    port: int = config.GATEWAY_PORT.default
    workers: int = config.GATEWAY_WORKERS.default
    threads: int = config.GATEWAY_THREADS.default
    timeout_seconds: int = config.GATEWAY_TIMEOUT.default
    graceful_timeout_seconds: int = config.GATEWAY_GRACEFUL_TIMEOUT.default
    keepalive_seconds: int = config.GATEWAY_KEEPALIVE.default
    # Headers up to this size (an Authorization header with a large token fits).
    max_header_field_bytes: int = 16384

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Env) -> GunicornSettings:
        return cls(
            host=config.GATEWAY_HOST.read(env),
            port=config.GATEWAY_PORT.read(env),
            workers=config.GATEWAY_WORKERS.read(env),
            threads=config.GATEWAY_THREADS.read(env),
            timeout_seconds=config.GATEWAY_TIMEOUT.read(env),
            graceful_timeout_seconds=config.GATEWAY_GRACEFUL_TIMEOUT.read(env),
            keepalive_seconds=config.GATEWAY_KEEPALIVE.read(env),
        )


def worker_tmp_dir() -> str | None:
    """Memory-backed /dev/shm for the workers' heartbeat files when there is one.

    A disk-backed (or read-only) /tmp makes heartbeats slow or impossible in containers.
    """
    return "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (not a temp file path)
