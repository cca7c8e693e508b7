"""Building gRPC servers the same way in every service, and stopping them gracefully."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authgate_common import settings as shared
from authgate_common.config import (
    Env,
    ReadFromEnv,
    Setting,
    from_setting,
    optional_path,
    optional_port,
    text,
)
from authgate_common.config import port as port_setting
from authgate_common.interceptors import (
    AccessLogInterceptor,
    ErrorInterceptor,
    MetricsInterceptor,
    RpcObserver,
)
from authgate_common.tls import ServerTls


class CannotBind(OSError):
    """A configured address cannot be bound: the port is taken, or the host is not ours."""


@dataclass(frozen=True)
class Keepalive(ReadFromEnv):
    """HTTP/2 keepalive and connection lifetime policy of a server."""

    # The server pings a connection quiet this long, and drops it when no answer comes in time.
    time_seconds: float = from_setting(shared.GRPC_KEEPALIVE_TIME_SECONDS)
    timeout_seconds: float = from_setting(shared.GRPC_KEEPALIVE_TIMEOUT_SECONDS)
    # Clients may ping (at most this often) even with no call running: channels stay warm.
    # Fixed, not settings: authgate's own clients ping every 30 s (authgate_common.channels),
    # and a server refusing those pings would disconnect them.
    permit_without_calls: bool = True
    min_ping_interval_seconds: float = 10.0
    # Idle connections are closed; every connection is closed after max age (its in-flight
    # calls get the grace period), so clients re-resolve and spread over new replicas.
    max_connection_idle_seconds: float = from_setting(shared.GRPC_MAX_CONNECTION_IDLE_SECONDS)
    max_connection_age_seconds: float = from_setting(shared.GRPC_MAX_CONNECTION_AGE_SECONDS)


@dataclass(frozen=True)
class ServerSettings:
    host: str
    port: int
    max_workers: int = shared.GRPC_MAX_WORKERS.default
    max_message_bytes: int = shared.GRPC_MAX_MESSAGE_BYTES.default
    grace_seconds: float = shared.GRPC_GRACE_SECONDS.default
    # Calls beyond this many at once are refused with RESOURCE_EXHAUSTED instead of queueing.
    max_concurrent_rpcs: int | None = shared.GRPC_MAX_CONCURRENT_RPCS.default
    keepalive: Keepalive = Keepalive()
    tls: ServerTls | None = None

    @classmethod
    def from_env(
        cls,
        env: Env,
        *,
        host: Setting[str],
        port: Setting[int],
        tls_cert: Setting[Path | None] | None = None,
        tls_key: Setting[Path | None] | None = None,
    ) -> ServerSettings:
        """The service's own address and TLS (with its cert and key settings, when it has
        them), and the GRPC_* settings both services share."""
        tls = None
        if tls_cert is not None and tls_key is not None:
            tls = ServerTls.from_env(env, cert_variable=tls_cert.name, key_variable=tls_key.name)
        return cls(
            host=host.read(env),
            port=port.read(env),
            max_workers=shared.GRPC_MAX_WORKERS.read(env),
            max_message_bytes=shared.GRPC_MAX_MESSAGE_BYTES.read(env),
            grace_seconds=shared.GRPC_GRACE_SECONDS.read(env),
            max_concurrent_rpcs=shared.GRPC_MAX_CONCURRENT_RPCS.read(env) or None,  # 0: no limit
            keepalive=Keepalive.from_env(env),
            tls=tls,
        )


@dataclass(frozen=True)
class ServiceRows:
    """The settings each gRPC service declares under its own prefix (AUTH_, PROFILE_):
    where it listens, its TLS and the port of its metrics."""

    host: Setting[str]
    port: Setting[int]
    tls_cert: Setting[Path | None]
    tls_key: Setting[Path | None]
    metrics_port: Setting[int | None]

    @classmethod
    def named(cls, prefix: str, service: str, *, port: int, metrics_port: int) -> ServiceRows:
        """e.g. ("AUTH", "auth"): AUTH_GRPC_HOST, AUTH_GRPC_PORT, AUTH_GRPC_TLS_CERT, ..."""
        grpc = f"{prefix}_GRPC"
        return cls(
            host=text(f"{grpc}_HOST", "127.0.0.1", f"address the {service} service listens on"),
            port=port_setting(f"{grpc}_PORT", port, f"port of the {service} service"),
            tls_cert=optional_path(
                f"{grpc}_TLS_CERT",
                f"PEM certificate (chain): the {service} service speaks TLS. "
                f"Set with `{grpc}_TLS_KEY`",
            ),
            tls_key=optional_path(f"{grpc}_TLS_KEY", f"unencrypted PEM key of `{grpc}_TLS_CERT`"),
            metrics_port=optional_port(
                f"{prefix}_METRICS_PORT",
                metrics_port,
                f"port of the Prometheus `/metrics` on `{grpc}_HOST`",
            ),
        )

    @property
    def rows(self) -> tuple[Setting[Any], ...]:
        """In the order the configuration reference lists them."""
        return (self.host, self.port, self.tls_cert, self.tls_key, self.metrics_port)

    def server_settings(self, env: Env) -> ServerSettings:
        return ServerSettings.from_env(
            env, host=self.host, port=self.port, tls_cert=self.tls_cert, tls_key=self.tls_key
        )


def server_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """The grpc core channel arguments for settings."""

    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    keepalive = settings.keepalive
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_time_ms", ms(keepalive.time_seconds)),
        ("grpc.keepalive_timeout_ms", ms(keepalive.timeout_seconds)),
        ("grpc.keepalive_permit_without_calls", int(keepalive.permit_without_calls)),
        ("grpc.http2.min_ping_interval_without_data_ms", ms(keepalive.min_ping_interval_seconds)),
        # Pings more often than allowed count as strikes; after this many, GOAWAY.
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_connection_idle_ms", ms(keepalive.max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", ms(keepalive.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", ms(settings.grace_seconds)),
    ]


@dataclass
class RunningServer:
    server: grpc.Server
    host: str
    port: int
    health: health.HealthServicer
    service_names: Sequence[str]
    # Closers of the resources the service made at start (engine, channels), run after stop.
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # Run first on stop, before in-flight calls are waited for (streams that never end).
    on_stopping: list[Callable[[], None]] = field(default_factory=list)
    # The port of the Prometheus /metrics endpoint, when the service serves one.
    metrics_port: int | None = None
    # What the process does on a signal besides stopping (auth_svc: SIGHUP reloads keys).
    signal_handlers: Mapping[signal.Signals, Callable[[], None]] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """Where clients connect, e.g. 127.0.0.1:50051."""
        return f"{self.host}:{self.port}"

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float | None = None) -> None:
        """Stop taking calls, let in-flight calls finish within grace, then close."""
        self.health.enter_graceful_shutdown()
        while self.on_stopping:
            self.on_stopping.pop()()
        self.server.stop(grace).wait()
        while self.on_stop:  # newest first, each once even if stop is called again
            self.on_stop.pop()()


def start_server(
    settings: ServerSettings,
    *,
    register: Callable[[grpc.Server], None],
    service_names: Sequence[str],
    interceptors: Iterable[grpc.ServerInterceptor] = (),
    observers: Iterable[RpcObserver] = (),
) -> RunningServer:
    """A started server with the services, grpc.health.v1 and reflection, on settings.port.

    Port 0 binds a free port; the bound one is in the result. Every call goes through
    the access log, the metrics (observers) and the error mapping, outermost first,
    then through interceptors.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        interceptors=[
            AccessLogInterceptor(),
            MetricsInterceptor(observers),
            ErrorInterceptor(),
            *interceptors,
        ],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{settings.host}:{settings.port}"
    try:
        if settings.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, settings.tls.credentials())
    except RuntimeError:  # grpcio >= 1.60 raises; older ones returned 0
        port = 0
    if port == 0:
        raise CannotBind(f"cannot bind {address}: the port is taken or the host is not ours")
    server.start()
    running = RunningServer(server, settings.host, port, health_servicer, service_names)
    running.set_serving(True)
    return running
