"""How gunicorn serves the gateway (bind address, workers, threads, timeouts), from the env."""

from __future__ import annotations

import os
from dataclasses import dataclass

from authgate_common.config import Env, port


@dataclass(frozen=True)
class GunicornSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 8
    # A worker silent for this long is killed and replaced (a stuck request included).
    timeout_seconds: int = 30
    # On SIGTERM, workers stop accepting and finish in-flight requests within this.
    graceful_timeout_seconds: int = 10
    # Idle keep-alive connections are closed after this; behind a load balancer, make
    # it longer than the balancer's own idle timeout.
    keepalive_seconds: int = 5
    # Headers up to this size (an Authorization header with a large token fits).
    max_header_field_bytes: int = 16384

    @property
    def bind(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def from_env(cls, env: Env) -> GunicornSettings:
        return cls(
            host=env.str("GATEWAY_HOST", cls.host),
            port=port(env, "GATEWAY_PORT", cls.port),
            workers=env.int("GATEWAY_WORKERS", cls.workers, minimum=1, maximum=256),
            threads=env.int("GATEWAY_THREADS", cls.threads, minimum=1, maximum=1024),
            timeout_seconds=env.int("GATEWAY_TIMEOUT", cls.timeout_seconds, minimum=1),
            graceful_timeout_seconds=env.int(
                "GATEWAY_GRACEFUL_TIMEOUT", cls.graceful_timeout_seconds, minimum=0
            ),
            keepalive_seconds=env.int(
                "GATEWAY_KEEPALIVE", cls.keepalive_seconds, minimum=0, maximum=3600
            ),
        )


def worker_tmp_dir() -> str | None:
    """Memory-backed /dev/shm for the workers' heartbeat files when there is one.

    A disk-backed (or read-only) /tmp makes heartbeats slow or impossible in containers.
    """
    return "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 (not a temp file path)
