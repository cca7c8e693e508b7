"""Server interceptors, one concern each, composed in the same order by every service.

Outermost first (see grpc_server.start_server): access log, metrics, errors, then a
service's own (authentication). The outer two see the final status code, whether the
call returned, set a code, or was aborted by the error interceptor.

grpcio calls `intercept_service` outside the worker thread that runs the handler,
so per-call work happens inside the wrapped behaviour, where ContextVars hold.
Only unary-unary RPCs are wrapped; other handlers pass through untouched.
"""

from __future__ import annotations

import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeAlias

import grpc
import sqlalchemy.exc

from authgate_common import errors, metadata
from authgate_common.authorization import FORBIDDEN, required_roles
from authgate_common.call_context import call_scope, note_user, noted_user
from authgate_common.jwks import KeysUnavailable
from authgate_common.tokens import Identity, InvalidToken, bearer_token

log = logging.getLogger(__name__)
# The "rpc" lines keep the logger name they have always had: log queries filter on it.
access_log = logging.getLogger("authgate_common.grpc_server")

UnaryBehaviour = Callable[[Any, grpc.ServicerContext], Any]
Continuation: TypeAlias = (
    "Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None]"
)
# Called once per RPC when it ends: (full method name, status code, seconds taken).
RpcObserver = Callable[[str, grpc.StatusCode, float], None]


def with_unary_behaviour(
    handler: grpc.RpcMethodHandler[Any, Any], behaviour: UnaryBehaviour
) -> grpc.RpcMethodHandler[Any, Any]:
    """handler's unary RPC served by behaviour (a wrapper of it), with the same (de)serializers."""
    return grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class UnaryInterceptor(grpc.ServerInterceptor, ABC):
    """An interceptor that wraps the behaviour of each unary-unary RPC.

    grpcio asks the interceptors for a handler on every call; the wrapped handler of a
    method is made once and reused while the handler inside stays the same object (the
    registered services' handlers do; the set of methods served is fixed, so the map is
    bounded). Per-call work stays inside the wrapped behaviour.
    """

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], Any]] = {}

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return self.not_unary(handler)
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]  # type: ignore[no-any-return]
        wrapped = with_unary_behaviour(handler, self.wrap(method, handler.unary_unary))
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def not_unary(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """What serves a streaming RPC (or an unknown method): by default, as it is."""
        return handler

    @abstractmethod
    def wrap(self, method: str, behaviour: UnaryBehaviour) -> UnaryBehaviour:
        """behaviour with this interceptor's concern around it."""


def request_id(context: grpc.ServicerContext) -> str:
    """The caller's x-request-id (bounded), or a new one."""
    for key, value in context.invocation_metadata():
        if key == metadata.REQUEST_ID and isinstance(value, str):
            return value[:128]
    return uuid.uuid4().hex


def _code_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    # The runtime context has code() (grpcio >= 1.38); the type stubs do not.
    code = getattr(context, "code", None)
    return code() if callable(code) else None


def _observed(
    behaviour: UnaryBehaviour, ended: Callable[[grpc.ServicerContext, grpc.StatusCode, float], None]
) -> UnaryBehaviour:
    """behaviour, calling ended(context, final code, seconds) however the call ends."""

    def observed(request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        failed = True
        try:
            response = behaviour(request, context)
            failed = False
            return response
        finally:
            default = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            ended(context, _code_of(context) or default, time.perf_counter() - started)

    return observed


class AccessLogInterceptor(UnaryInterceptor):
    """One "rpc" line per call: method, code, latency, request id and the user it acted for.

    It opens the call scope in which inner code notes the user (call_context.note_user).
    """

    def wrap(self, method: str, behaviour: UnaryBehaviour) -> UnaryBehaviour:
        def ended(context: grpc.ServicerContext, code: grpc.StatusCode, seconds: float) -> None:
            access_log.info(
                "rpc",
                extra={
                    "method": method,
                    "code": code.name,
                    "latency_ms": round(seconds * 1000, 2),
                    "request_id": request_id(context),
                    "user_id": noted_user(),
                },
            )

        observed = _observed(behaviour, ended)

        def scoped(request: Any, context: grpc.ServicerContext) -> Any:
            with call_scope():
                return observed(request, context)

        return scoped


class MetricsInterceptor(UnaryInterceptor):
    """Tells each observer (the metrics) how every call ended and how long it took."""

    def __init__(self, observers: Iterable[RpcObserver]) -> None:
        super().__init__()
        self._observers = tuple(observers)

    def wrap(self, method: str, behaviour: UnaryBehaviour) -> UnaryBehaviour:
        def ended(_context: grpc.ServicerContext, code: grpc.StatusCode, seconds: float) -> None:
            for observe in self._observers:
                try:
                    observe(method, code, seconds)
                except Exception:
                    # Metrics must never turn an answered call into a failed one.
                    log.exception("rpc observer failed", extra={"method": method})

        return _observed(behaviour, ended)


_STATUS_OF_ERROR: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def _database_error_fields(exc: Exception) -> dict[str, object]:
    """What kind of database failure it was: the exception's class and the driver's error
    number (MySQL's 1205 lock wait, 2003 cannot connect, ...). Never its message, which
    may quote the statement's values."""
    fields: dict[str, object] = {"error": type(exc).__name__}
    args = getattr(getattr(exc, "orig", None), "args", ())
    if args and isinstance(args[0], int):
        fields["db_error_code"] = args[0]
    return fields


_DATABASE_UNAVAILABLE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


def status_of(error: errors.DomainError) -> grpc.StatusCode:
    for error_type in type(error).__mro__:
        if error_type in _STATUS_OF_ERROR:
            return _STATUS_OF_ERROR[error_type]
    return grpc.StatusCode.INTERNAL


class ErrorInterceptor(UnaryInterceptor):
    """Turns domain errors into statuses and hides everything else behind a generic one.

    Servicers stay thin: they raise domain errors and never build statuses;
    unexpected errors are logged with the request id, never sent to the caller.
    """

    def wrap(self, method: str, behaviour: UnaryBehaviour) -> UnaryBehaviour:
        def mapped(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return behaviour(request, context)
            except errors.DomainError as exc:
                retry_after = getattr(exc, "retry_after_seconds", None)
                if retry_after is not None:
                    # The gateway turns this trailer into an HTTP Retry-After header.
                    context.set_trailing_metadata(((metadata.RETRY_AFTER, str(retry_after)),))
                context.abort(status_of(exc), exc.message)
            except _DATABASE_UNAVAILABLE as exc:
                log.warning(
                    "database unavailable",
                    extra={
                        "method": method,
                        "request_id": request_id(context),
                        **_database_error_fields(exc),
                    },
                )
                context.abort(
                    grpc.StatusCode.UNAVAILABLE, "storage is unavailable, try again later"
                )
            except Exception:
                if _code_of(context) not in (None, grpc.StatusCode.OK):
                    raise  # context.abort raises a plain Exception after setting the code
                log.exception(
                    "unexpected error", extra={"method": method, "request_id": request_id(context)}
                )
                context.abort(grpc.StatusCode.INTERNAL, "internal error")

        return mapped


class TokenVerifying(Protocol):
    """What checks a bearer token: authgate_common.tokens.TokenVerifier, or a local one."""

    def verify(self, token: str) -> Identity: ...


class CallerIdentity:
    """The verified identity of the call being handled, shared by interceptor and servicer."""

    def __init__(self) -> None:
        self._current: ContextVar[Identity | None] = ContextVar("caller_identity", default=None)

    def get(self) -> Identity:
        """The caller's identity; fails closed when no interceptor has verified one."""
        identity = self._current.get()
        if identity is None:
            raise errors.Unauthenticated("an access token is required")
        return identity

    @contextmanager
    def bound(self, identity: Identity) -> Iterator[None]:
        # Worker threads are reused across calls: always unbind afterwards.
        token = self._current.set(identity)
        try:
            yield
        finally:
            self._current.reset(token)


class AuthInterceptor(UnaryInterceptor):
    """Verifies the bearer token of calls to the protected services, and the roles their RPCs
    require (`required_roles`, read from the method descriptors); other services stay open.

    The verified identity is bound to `caller` for the call (servicers read
    `caller.get()`, never raw metadata), and noted for the access log. Identity
    metadata (x-user-id, x-username) is optional, but when sent it must agree with
    the token. Errors are domain errors, for ErrorInterceptor (outside this one).
    """

    def __init__(
        self,
        verifier: TokenVerifying,
        *,
        protected_services: Sequence[str],
        caller: CallerIdentity | None = None,
    ) -> None:
        super().__init__()
        self._verifier = verifier
        self._prefixes = tuple(f"/{name}/" for name in protected_services)
        self.caller = caller if caller is not None else CallerIdentity()

    def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if not handler_call_details.method.startswith(self._prefixes):
            return continuation(handler_call_details)
        return super().intercept_service(continuation, handler_call_details)

    def not_unary(
        self, handler: grpc.RpcMethodHandler[Any, Any] | None
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        # A protected streaming RPC would go unchecked: it is not served (UNIMPLEMENTED)
        # until this interceptor learns to check one.
        return None

    def wrap(self, method: str, behaviour: UnaryBehaviour) -> UnaryBehaviour:
        # The RPC's `required_roles` option (any one suffices), checked against the roles
        # of the verified token only, never against metadata.
        required = required_roles(method)

        def authenticated(request: Any, context: grpc.ServicerContext) -> Any:
            identity = self.authenticate(context)
            note_user(identity.user_id)
            if required and not identity.has_any_role(required):
                log.info("permission denied", extra={"request_id": request_id(context)})
                raise errors.PermissionDenied(FORBIDDEN)
            with self.caller.bound(identity):
                return behaviour(request, context)

        return authenticated

    def authenticate(self, context: grpc.ServicerContext) -> Identity:
        values = _metadata_values(context)
        authorization = values.get(metadata.AUTHORIZATION, [])
        token = bearer_token(authorization[0]) if len(authorization) == 1 else None
        if token is None:
            raise errors.Unauthenticated("a bearer access token is required")
        try:
            identity = self._verifier.verify(token)
        except InvalidToken as exc:
            log.info(
                "token rejected", extra={"reason": exc.reason, "request_id": request_id(context)}
            )
            raise errors.Unauthenticated(exc.message) from None
        except KeysUnavailable:
            log.warning("token keys unavailable", extra={"request_id": request_id(context)})
            raise errors.Unavailable("the token keys are unavailable, try again later") from None
        for key, expected in (
            (metadata.USER_ID, identity.user_id),
            (metadata.USERNAME, identity.username),
        ):
            sent = values.get(key)
            if sent is not None and sent != [expected]:
                log.info(
                    "identity metadata mismatch",
                    extra={"key": key, "request_id": request_id(context)},
                )
                raise errors.Unauthenticated("identity metadata does not match the access token")
        return identity


def _metadata_values(context: grpc.ServicerContext) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        text = value if isinstance(value, str) else ""
        values.setdefault(key.lower(), []).append(text)
    return values
