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

log = logging.getLogger(__name__)

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
class ServerSettings:
    host: str
    port: int
    max_workers: int = 16
    max_message_bytes: int = 1024 * 1024
    grace_seconds: float = 10.0


def request_id(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == metadata.REQUEST_ID and isinstance(value, str):
            return value[:128]
    return uuid.uuid4().hex


class ErrorInterceptor(grpc.ServerInterceptor):
    """Turns domain errors into statuses and hides everything else behind a generic one.

    Servicers stay thin: they raise domain errors and never build statuses;
    unexpected errors are logged with the request id, never sent to the caller.
    """

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
                log.info(
                    "rpc",
                    extra={
                        "method": method,
                        "code": (_code_of(context) or code).name,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                        "request_id": request_id(context),
                    },
                )
            raise AssertionError("unreachable: context.abort raises")

        return grpc.unary_unary_rpc_method_handler(
            guarded,
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
) -> RunningServer:
    """A started server with the services, grpc.health.v1 and reflection, on settings.port.

    Port 0 binds a free port; the bound one is in the result.
    """
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=settings.max_workers),
        interceptors=[ErrorInterceptor(), *interceptors],
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    register(server)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{settings.host}:{settings.port}")
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
