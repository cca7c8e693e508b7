"""Default-deny bearer authentication of the generic routes (RFC 6750 challenges)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from authgate_common.authorization import FORBIDDEN
from authgate_common.jwks import KeysUnavailable
from authgate_common.revocation import RevocationsUnavailable
from authgate_common.tokens import Identity, InvalidToken, TokenVerifier, bearer_token
from gateway.errors import Problem

log = logging.getLogger(__name__)

REALM = "authgate"
# "Bearer " plus room for surrounding whitespace on top of the token limit.
_HEADER_OVERHEAD = 64


@dataclass(frozen=True)
class Caller:
    """A verified caller: who the token names, and the token to forward."""

    identity: Identity
    token: str


def challenge(error: str | None = None, description: str | None = None) -> str:
    """A `WWW-Authenticate` value; the bare realm when no credentials were sent."""
    parts = [f'Bearer realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append(f'error_description="{_quoted(description)}"')
    return ", ".join(parts)


def _quoted(text: str) -> str:
    return "".join(ch for ch in text if 0x20 <= ord(ch) < 0x7F and ch not in '"\\')


def unauthorized(detail: str, *, error: str | None = "invalid_token") -> Problem:
    description = detail if error else None
    return Problem(401, detail, headers={"WWW-Authenticate": challenge(error, description)})


def forbidden() -> Problem:
    """403 for a valid token that lacks the role (RFC 6750 section 3.1 insufficient_scope)."""
    return Problem(403, FORBIDDEN, headers={"WWW-Authenticate": challenge("insufficient_scope")})


class Authenticator:
    """Turns an Authorization header into a verified Caller or a 401/503 Problem."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        max_token_bytes: int,
        on_rejected: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._verifier = verifier
        self._max_header = max_token_bytes + _HEADER_OVERHEAD
        # Told the reason of every refusal (a short fixed label): the metrics count them.
        self._on_rejected = on_rejected

    def authenticate(self, authorization: str | None) -> Caller:
        if authorization is not None and len(authorization) > self._max_header:
            self._on_rejected("too_large")
            raise unauthorized("the access token is too large")
        token = bearer_token(authorization)
        if token is None:
            self._on_rejected("missing")
            raise unauthorized(
                "this request needs an access token in an 'Authorization: Bearer' header",
                error=None,
            )
        try:
            identity = self._verifier.verify(token)
        except InvalidToken as exc:
            log.info("token rejected", extra={"reason": exc.reason})
            self._on_rejected(exc.reason)
            raise unauthorized(exc.message) from None
        except KeysUnavailable as exc:
            # A RevocationsUnavailable is a KeysUnavailable: the same 503, logged and counted apart.
            if isinstance(exc, RevocationsUnavailable):
                cause, reason = "the revocation feed is not current", "revocations_unavailable"
            else:
                cause, reason = "the key set is unavailable", "keys_unavailable"
            log.warning("token not verifiable: %s", cause)
            self._on_rejected(reason)
            raise Problem(
                503, "access tokens cannot be checked right now, try again later"
            ) from None
        return Caller(identity=identity, token=token)

    def authorize(self, caller: Caller, required_roles: Sequence[str]) -> None:
        """403 unless required_roles is empty or the verified token holds one of them."""
        if required_roles and not caller.identity.has_any_role(required_roles):
            log.info("insufficient role", extra={"user_id": caller.identity.user_id})
            self._on_rejected("insufficient_scope")
            raise forbidden()
