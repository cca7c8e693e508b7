"""Verification of RFC 9068 access tokens, shared by the gateway and the profile service."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from authgate_common import settings as shared
from authgate_common.config import ReadFromEnv, from_setting
from authgate_common.jwks import JwksCache, KeysUnavailable
from authgate_common.revocation import RevocationCheck, RevokedToken

ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Verified tokens the gateway and the profile service remember (a few MB at most: tokens
# are at most TokenSettings.max_token_bytes, typically under 1 KB), and for how long at most.
VERIFIED_TOKEN_CACHE_SIZE = 4096
VERIFIED_TOKEN_CACHE_SECONDS = 60.0
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti")


@dataclass(frozen=True)
class TokenSettings(ReadFromEnv):
    """What a valid access token looks like; the same for issuer and verifiers."""

    issuer: str = from_setting(shared.JWT_ISSUER)
    audience: str = from_setting(shared.JWT_AUDIENCE)
    algorithms: tuple[str, ...] = from_setting(shared.JWT_ALGORITHMS)
    leeway_seconds: int = from_setting(shared.JWT_LEEWAY_SECONDS)
    max_lifetime_seconds: int = from_setting(shared.JWT_MAX_LIFETIME_SECONDS)
    # Longer tokens are refused before parsing: a guard of the parser, not a policy.
    max_token_bytes: int = 8192


@dataclass(frozen=True)
class Identity:
    """Who a verified access token names."""

    user_id: str
    username: str
    email: str
    display_name: str
    token_id: str
    expires_at: int
    # The `roles` claim: role names, compared as whole strings (never by prefix).
    roles: frozenset[str] = frozenset()
    # The `sid` claim: the session (refresh-token family) the token was issued for.
    # It, the signing key and `iat` are what revocations are checked against.
    session_id: str = ""
    key_id: str = ""
    issued_at: int = 0

    def has_any_role(self, required: Iterable[str]) -> bool:
        """Whether the token holds at least one of the required roles (exact names)."""
        return not self.roles.isdisjoint(required)


class InvalidToken(Exception):
    """The token is not acceptable; `reason` is a short stable label, the message is client-safe."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TokenVerifier:
    """Verifies access tokens against keys from a JwksCache with pinned algorithms.

    With `cache_size`, tokens that verified are remembered (at most that many, oldest
    dropped first) and accepted again without a signature check until the earlier of their
    `exp` and `cache_seconds` after their check; the second bound makes a retired key's
    tokens stop working soon after the key leaves the JWKS. Only successes are cached, so
    no input can make a good token look bad or a bad one good.

    With `revocations` (authgate_common.revocation), every token, cached or not, is
    checked against what the auth service revoked, and its key against the key set,
    on every call: a revocation takes effect within the feed's latency. A role taken
    from the user since the token was issued is left out of the returned identity's
    roles (the cache keeps the token's own), so its routes answer 403, not 401.
    """

    def __init__(
        self,
        settings: TokenSettings,
        keys: JwksCache,
        *,
        cache_size: int = 0,
        cache_seconds: float = VERIFIED_TOKEN_CACHE_SECONDS,
        clock: Callable[[], float] = time.time,
        revocations: RevocationCheck | None = None,
    ) -> None:
        self._settings = settings
        self._keys = keys
        self._cache = VerifiedTokens(cache_size, cache_seconds, clock) if cache_size else None
        self._revocations = revocations

    def verify(self, token: str) -> Identity:
        """The identity in a valid token; raises InvalidToken or KeysUnavailable.

        RevocationsUnavailable (a KeysUnavailable) when revocations cannot be checked.
        """
        if self._cache is None:
            identity = self._verify(token)
        else:
            cached = self._cache.get(token)
            if cached is None:
                identity = self._verify(token)
                self._cache.put(token, identity)
            else:
                identity = cached
                if self._keys.get(identity.key_id) is None:  # the key left the key set
                    raise InvalidToken(
                        "unknown_key", "the access token is signed by an unknown key"
                    )
        if self._revocations is not None:
            try:
                roles = self._revocations.check(identity)
            except RevokedToken:
                raise InvalidToken("revoked", "the access token has been revoked") from None
            if roles != identity.roles:  # a role was taken from the user since it was issued
                identity = dataclasses.replace(identity, roles=roles)
        return identity

    def _verify(self, token: str) -> Identity:
        settings = self._settings
        if len(token) > settings.max_token_bytes:
            raise InvalidToken("too_large", "the access token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed", "the access token is malformed") from None
        alg = header.get("alg")
        if alg not in settings.algorithms:
            raise InvalidToken("algorithm", "the access token's algorithm is not accepted")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("type", "the token is not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not 0 < len(kid) <= 128:
            raise InvalidToken("malformed", "the access token has no usable key id")
        # jku, x5u, jwk and x5c headers are never looked at: keys come only from our JWKS.
        key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown_key", "the access token is signed by an unknown key")
        if key.algorithm_name != alg:
            raise InvalidToken("algorithm", "the access token's algorithm does not match its key")
        claims = self._decode(token, key, alg)
        return self._identity(claims, kid)

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any]:
        settings = self._settings
        try:
            return jwt.decode(
                token,
                key=key.key,
                algorithms=[alg],
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": list(REQUIRED_CLAIMS), "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired", "the access token has expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not_yet_valid", "the access token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("audience", "the access token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("issuer", "the access token has an unknown issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(
                "missing_claim", f"the access token has no {exc.claim} claim"
            ) from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("signature", "the access token's signature is invalid") from None
        except jwt.PyJWTError:
            raise InvalidToken("malformed", "the access token is malformed") from None

    def _identity(self, claims: dict[str, Any], kid: str) -> Identity:
        settings = self._settings
        sub, jti, iat, exp = claims["sub"], claims["jti"], claims["iat"], claims["exp"]
        if not isinstance(sub, str) or not sub or not isinstance(jti, str) or not jti:
            raise InvalidToken("malformed", "the access token's subject is invalid")
        if not isinstance(iat, int) or not isinstance(exp, int):
            raise InvalidToken("malformed", "the access token's times are invalid")
        if iat > time.time() + settings.leeway_seconds:
            raise InvalidToken("not_yet_valid", "the access token is issued in the future")
        if exp - iat > settings.max_lifetime_seconds:
            raise InvalidToken("lifetime", "the access token's lifetime is too long")
        return Identity(
            user_id=sub,
            username=_str_claim(claims, "preferred_username"),
            email=_str_claim(claims, "email"),
            display_name=_str_claim(claims, "name"),
            token_id=jti,
            expires_at=exp,
            roles=_roles_claim(claims),
            session_id=_str_claim(claims, "sid"),
            key_id=kid,
            issued_at=iat,
        )


class VerifiedTokens:
    """A bounded map of verified tokens to their identities, each until its expiry."""

    def __init__(self, size: int, seconds: float, clock: Callable[[], float]) -> None:
        self._size = size
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, Identity]] = {}

    def get(self, token: str) -> Identity | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        good_until, identity = entry
        if self._clock() >= good_until:
            with self._lock:
                self._entries.pop(token, None)
            return None
        return identity

    def put(self, token: str, identity: Identity) -> None:
        good_until = min(float(identity.expires_at), self._clock() + self._seconds)
        with self._lock:
            while len(self._entries) >= self._size:
                # Oldest first: dicts keep insertion order.
                del self._entries[next(iter(self._entries))]
            self._entries[token] = (good_until, identity)

    def __len__(self) -> int:
        return len(self._entries)


def _str_claim(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name, "")
    return value if isinstance(value, str) else ""


def _roles_claim(claims: dict[str, Any]) -> frozenset[str]:
    """The `roles` claim as a set; absent means none, anything but a list of strings is bad."""
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(role, str) for role in roles):
        raise InvalidToken("malformed", "the access token's roles are invalid")
    return frozenset(roles)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


__all__: Sequence[str] = [
    "Identity",
    "InvalidToken",
    "KeysUnavailable",
    "TokenSettings",
    "TokenVerifier",
    "bearer_token",
]
