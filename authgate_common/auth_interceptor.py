"""Authentication and role checks of the protected services' calls, by the forwarded token.

Both services use it: profile_svc for ProfileService, auth_svc for AdminService. A call
needs a valid bearer token, and when its RPC declares `required_roles` (read from the
method descriptor, see authgate_common.authorization) the token must hold one of them,
else PERMISSION_DENIED. Roles come from the verified token only, never from metadata.

grpcio calls `intercept_service` outside the worker thread that runs the
handler, so the check runs inside the wrapped handler, which also binds the
verified Identity to a ContextVar for the servicer (CallerIdentity). The
servicer never reads identity from raw metadata.

Domain errors raised here (Unauthenticated, Unavailable) become statuses in
authgate_common.grpc_server.ErrorInterceptor, which start_server puts outside
every other interceptor.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import grpc

from authgate_common import metadata
from authgate_common.authorization import FORBIDDEN, required_roles
from authgate_common.call_context import note_user
from authgate_common.errors import PermissionDenied, Unauthenticated, Unavailable
from authgate_common.grpc_server import request_id, with_unary_behaviour
from authgate_common.jwks import KeysUnavailable
from authgate_common.tokens import Identity, InvalidToken, TokenVerifier, bearer_token

log = logging.getLogger(__name__)


class CallerIdentity:
    """The verified identity of the call being handled, shared by interceptor and servicer."""

    def __init__(self) -> None:
        self._current: ContextVar[Identity | None] = ContextVar("caller_identity", default=None)

    def get(self) -> Identity:
        """The caller's identity; fails closed when no interceptor has verified one."""
        identity = self._current.get()
        if identity is None:
            raise Unauthenticated("an access token is required")
        return identity

    @contextmanager
    def bound(self, identity: Identity) -> Iterator[None]:
        # Worker threads are reused across calls: always unbind afterwards.
        token = self._current.set(identity)
        try:
            yield
        finally:
            self._current.reset(token)


class AuthInterceptor(grpc.ServerInterceptor):
    """Verifies the bearer token of calls to the given services; other services stay open."""

    def __init__(
        self,
        verifier: TokenVerifier,
        caller: CallerIdentity,
        *,
        protected_services: Sequence[str],
    ) -> None:
        self._verifier = verifier
        self._caller = caller
        self._prefixes = tuple(f"/{name}/" for name in protected_services)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefixes):
            return handler
        if handler.unary_unary is None:
            # Only unary RPCs are wrapped below: a streaming one would go unchecked, so it is
            # not served at all (UNIMPLEMENTED) until this interceptor learns to check it.
            return None
        behaviour = handler.unary_unary
        required = required_roles(handler_call_details.method)

        def authenticated(request: Any, context: grpc.ServicerContext) -> Any:
            identity = self._authenticate(context)
            note_user(identity.user_id)
            if required and not identity.has_any_role(required):
                log.info("permission denied", extra={"request_id": request_id(context)})
                raise PermissionDenied(FORBIDDEN)
            with self._caller.bound(identity):
                return behaviour(request, context)

        return with_unary_behaviour(handler, authenticated)

    def _authenticate(self, context: grpc.ServicerContext) -> Identity:
        values = _metadata_values(context)
        authorization = values.get(metadata.AUTHORIZATION, [])
        token = bearer_token(authorization[0]) if len(authorization) == 1 else None
        if token is None:
            raise Unauthenticated("a bearer access token is required")
        try:
            identity = self._verifier.verify(token)
        except InvalidToken as exc:
            log.info(
                "token rejected", extra={"reason": exc.reason, "request_id": request_id(context)}
            )
            raise Unauthenticated(exc.message) from None
        except KeysUnavailable:
            log.warning("token keys unavailable", extra={"request_id": request_id(context)})
            raise Unavailable("the token keys are unavailable, try again later") from None
        for key, expected in (
            (metadata.USER_ID, identity.user_id),
            (metadata.USERNAME, identity.username),
        ):
            # Identity metadata is optional, but when sent it must agree with the token.
            sent = values.get(key)
            if sent is not None and sent != [expected]:
                log.info(
                    "identity metadata mismatch",
                    extra={"key": key, "request_id": request_id(context)},
                )
                raise Unauthenticated("identity metadata does not match the access token")
        return identity


def _metadata_values(context: grpc.ServicerContext) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for key, value in context.invocation_metadata() or ():
        text = value if isinstance(value, str) else ""
        values.setdefault(key.lower(), []).append(text)
    return values
