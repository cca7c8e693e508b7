"""Building, running and stopping the gRPC servers the same way in every service."""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import sqlalchemy.exc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from authgate_common import errors, metadata
from authgate_common import settings as shared
from authgate_common.call_context import call_scope
from authgate_common.config import Env, Setting
from authgate_common.tls import ServerTls

log = logging.getLogger(__name__)

# Called once per RPC when it ends: (full method name, status code, seconds taken).
RpcObserver = Callable[[str, grpc.StatusCode, float], None]

_STATUS_OF_ERROR: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_of(error: errors.DomainError) -> grpc.StatusCode:
    for error_type in type(error).__mro__:
        if error_type in _STATUS_OF_ERROR:
            return _STATUS_OF_ERROR[error_type]
    return grpc.StatusCode.INTERNAL


@dataclass(frozen=True)
class Keepalive:
    """HTTP/2 keepalive and connection lifetime policy of a server."""

    # The server pings a connection quiet this long, and drops it when no answer comes in time.
    time_seconds: float = shared.GRPC_KEEPALIVE_TIME_SECONDS.default
    timeout_seconds: float = shared.GRPC_KEEPALIVE_TIMEOUT_SECONDS.default
    # Clients may ping (at most this often) even with no call running: channels stay warm.
    # Fixed, not settings: authgate's own clients ping every 30 s (authgate_common.channels),
    # and a server refusing those pings would disconnect them.
    permit_without_calls: bool = True
    min_ping_interval_seconds: float = 10.0
    # Idle connections are closed; every connection is closed after max age (its in-flight
    # calls get the grace period), so clients re-resolve and spread over new replicas.
    max_connection_idle_seconds: float = shared.GRPC_MAX_CONNECTION_IDLE_SECONDS.default
    max_connection_age_seconds: float = shared.GRPC_MAX_CONNECTION_AGE_SECONDS.default

    @classmethod
    def from_env(cls, env: Env) -> Keepalive:
        return cls(
            time_seconds=shared.GRPC_KEEPALIVE_TIME_SECONDS.read(env),
            timeout_seconds=shared.GRPC_KEEPALIVE_TIMEOUT_SECONDS.read(env),
            max_connection_idle_seconds=shared.GRPC_MAX_CONNECTION_IDLE_SECONDS.read(env),
            max_connection_age_seconds=shared.GRPC_MAX_CONNECTION_AGE_SECONDS.read(env),
        )


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
        cls, env: Env, *, host: Setting[str], port: Setting[int], tls: ServerTls | None = None
    ) -> ServerSettings:
        """The service's own address and TLS, and the GRPC_* settings both services share."""
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


def request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == metadata.REQUEST_ID and isinstance(value, str):
            return value[:128]
    return uuid.uuid4().hex


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns domain errors into statuses and hides everything else behind a generic one.

    Servicers stay thin: they raise domain errors and never build statuses;
    unexpected errors are logged with the request id, never sent to the caller.
    Every RPC ends with one "rpc" log line (method, code, latency, request and
    user id) and a call of each observer (metrics).
    """

    def __init__(self, observers: Iterable[RpcObserver] = ()) -> None:
        self._observers = tuple(observers)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behaviour = handler.unary_unary
        method = handler_call_details.method

        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            with call_scope() as fields:
                return handle(request, context, fields)

        def handle(request: Any, context: grpc.ServicerContext, fields: dict[str, str]) -> Any:
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return behaviour(request, context)
            except errors.DomainError as exc:
                code = status_of(exc)
                retry_after = getattr(exc, "retry_after_seconds", None)
                if retry_after is not None:
                    # The gateway turns this trailer into an HTTP Retry-After header.
                    context.set_trailing_metadata(((metadata.RETRY_AFTER, str(retry_after)),))
                context.abort(code, exc.message)
            except (
                sqlalchemy.exc.OperationalError,
                sqlalchemy.exc.InterfaceError,
                sqlalchemy.exc.TimeoutError,
            ):
                code = grpc.StatusCode.UNAVAILABLE
                log.warning(
                    "database unavailable",
                    extra={"method": method, "request_id": request_id(context)},
                )
                context.abort(code, "storage is unavailable, try again later")
            except Exception:
                if _aborted(context):
                    raise
                code = grpc.StatusCode.INTERNAL
                log.exception(
                    "unexpected error", extra={"method": method, "request_id": request_id(context)}
                )
                context.abort(code, "internal error")
            finally:
                self._finish(method, _code_of(context) or code, started, context, fields)
            raise AssertionError("unreachable: context.abort raises")

        return with_unary_behaviour(handler, guarded)

    def _finish(
        self,
        method: str,
        code: grpc.StatusCode,
        started: float,
        context: grpc.ServicerContext,
        fields: dict[str, str],
    ) -> None:
        seconds = time.perf_counter() - started
        log.info(
            "rpc",
            extra={
                "method": method,
                "code": code.name,
                "latency_ms": round(seconds * 1000, 2),
                "request_id": request_id(context),
                "user_id": fields.get("user_id"),
            },
        )
        for observe in self._observers:
            try:
                observe(method, code, seconds)
            except Exception:
                # Metrics must never turn an answered call into a failed one.
                log.exception("rpc observer failed", extra={"method": method})


def with_unary_behaviour(
    handler: grpc.RpcMethodHandler[Any, Any], behaviour: Callable[[Any, grpc.ServicerContext], Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    """handler's unary RPC served by behaviour (a wrapper of it), with the same (de)serializers."""
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _code_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    # The runtime context has code() (grpcio >= 1.38); the type stubs do not.
    code = getattr(context, "code", None)
    return code() if callable(code) else None


def _aborted(context: grpc.ServicerContext) -> bool:
    # context.abort raises a plain Exception after setting the code: let it through.
    code = _code_of(context)
    return code is not None and code != grpc.StatusCode.OK


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: Sequence[str]
    # Closers of the resources the service made at start (engine, channels), run after stop.
    on_stop: list[Callable[[], None]] = field(default_factory=list)
    # The port of the Prometheus /metrics endpoint, when the service serves one.
    metrics_port: int | None = None

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

    Port 0 binds a free port; the bound one is in the result.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        interceptors=[ErrorInterceptor(observers), *interceptors],
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
    if settings.tls is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, settings.tls.credentials())
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    server.start()
    running = RunningServer(server, port, health_servicer, service_names)
    running.set_serving(True)
    return running


def run_until_signalled(running: RunningServer, grace: float) -> None:
    """Block until SIGTERM or SIGINT, then stop gracefully."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop.wait()
    running.stop(grace)
    log.info("stopped")
