"""Issuing tokens: RS256 access tokens (RFC 9068) and opaque refresh tokens stored as hashes."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from auth_svc.keys import KeyRing
from authgate_common.tokens import TokenSettings

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - the RFC 9068 typ header
CLIENT_ID = "authgate"
# Longer than any token we issue (43 characters); longer input is refused unhashed.
MAX_REFRESH_TOKEN_LENGTH = 256


@dataclass(frozen=True)
class AccessTokenSubject:
    """What an access token says about its user."""

    user_id: str
    username: str
    email: str | None
    display_name: str | None
    # The user's roles when the token is issued (RFC 9068 section 7.2.1.1).
    roles: frozenset[str] = frozenset()
    # The session: the refresh-token family the token was issued for.
    session_id: str = ""
    # How the user authenticated (RFC 8176).
    amr: tuple[str, ...] = ("pwd",)


# (user id, iat) -> the earliest iat the user's new token may carry (see
# auth_svc.revocations.RevocationLog.first_honoured_iat).
HonouredIat = Callable[[str, int], int]
# Longest wait for that second to come; beyond it (clocks apart) the token is issued as is.
_MAX_IAT_WAIT_SECONDS = 1.0


class AccessTokenIssuer:
    """Signs access tokens with the key ring's newest key."""

    def __init__(
        self,
        settings: TokenSettings,
        keys: KeyRing,
        *,
        ttl_seconds: int,
        honoured_iat: HonouredIat | None = None,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._algorithm = settings.algorithms[0]
        self.ttl_seconds = ttl_seconds
        self._honoured_iat = honoured_iat

    def issue(self, subject: AccessTokenSubject, now: datetime) -> str:
        issued_at = int(now.timestamp())
        if self._honoured_iat is not None:
            honoured = self._honoured_iat(subject.user_id, issued_at)
            if honoured > issued_at:
                # The user was revoked this very second: a token with this iat would be
                # refused, so it is issued in the next second (at most a second's wait).
                wait = honoured - time.time()
                if wait > _MAX_IAT_WAIT_SECONDS:
                    honoured = issued_at
                elif wait > 0:
                    time.sleep(wait)
                issued_at = honoured
        claims: dict[str, Any] = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": subject.user_id,
            "exp": issued_at + self.ttl_seconds,
            "iat": issued_at,
            "nbf": issued_at,
            "jti": uuid.uuid4().hex,
            "client_id": CLIENT_ID,
            "preferred_username": subject.username,
            "roles": sorted(subject.roles),
            "sid": subject.session_id,
            "amr": list(subject.amr),
        }
        if subject.email:
            claims["email"] = subject.email
        if subject.display_name:
            claims["name"] = subject.display_name
        signer = self._keys.signer
        return jwt.encode(
            claims,
            signer.private_key,
            algorithm=self._algorithm,
            headers={"typ": ACCESS_TOKEN_TYPE, "kid": signer.kid},
        )


def issue_internal_token(
    settings: TokenSettings,
    keys: KeyRing,
    *,
    subject: str,
    roles: frozenset[str],
    ttl_seconds: int,
    now: datetime,
) -> str:
    """A token for a call between the services (settings: authgate_common.internal's)."""
    issued_at = int(now.timestamp())
    claims: dict[str, Any] = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": subject,
        "exp": issued_at + ttl_seconds,
        "iat": issued_at,
        "nbf": issued_at,
        "jti": uuid.uuid4().hex,
        "client_id": CLIENT_ID,
        "roles": sorted(roles),
    }
    signer = keys.signer
    return jwt.encode(
        claims,
        signer.private_key,
        algorithm=settings.algorithms[0],
        headers={"typ": ACCESS_TOKEN_TYPE, "kid": signer.kid},
    )


def new_refresh_token() -> str:
    """256 random bits, URL-safe; only its hash is stored."""
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """SHA-256 in hex: the token has full entropy, so a fast hash is enough to hide it."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
