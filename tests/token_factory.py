"""Minting access tokens in tests, valid and hostile, without the auth service.

    factory = TokenFactory(token_settings)
    cache = JwksCache(factory.jwks_source(), allowed_algorithms=("RS256",))
    token = factory.mint("user-1", "alice", name="Alice")       # a valid RFC 9068 token
    factory.mint("user-1", "alice", exp=0)                       # claim overrides; None drops one
    factory.mint_with_header({"alg": "none"}, sign=False, ...)   # header overrides
    factory.alg_none(...), factory.hs256_with_public_key(...), factory.tampered(token, sub=...),
    factory.foreign_key_same_kid(...)                            # the classic forgeries

The key is a fresh 2048-bit RSA key per factory; `kid` is its RFC 7638 thumbprint,
like the auth service's keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from authgate_common.jwks import JwkDict, JwksSource
from authgate_common.tokens import TokenSettings

CLIENT_ID = "authgate"
_RSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "RS256": hashes.SHA256(),
    "RS384": hashes.SHA384(),
    "RS512": hashes.SHA512(),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def rsa_public_jwk_members(public_key: rsa.RSAPublicKey) -> dict[str, str]:
    """The required members of an RSA public JWK (RFC 7518 section 6.3.1)."""
    numbers = public_key.public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def jwk_thumbprint(members: Mapping[str, str]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace, base64url."""
    canonical = json.dumps(dict(sorted(members.items())), separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class TokenFactory:
    """Signs tokens with its own RSA key and publishes that key as a JWK."""

    def __init__(
        self,
        settings: TokenSettings,
        *,
        key: rsa.RSAPrivateKey | None = None,
        algorithm: str = "RS256",
        lifetime_seconds: int = 900,
    ) -> None:
        self.settings = settings
        self.key = key if key is not None else new_rsa_key()
        self.algorithm = algorithm
        self.lifetime_seconds = lifetime_seconds
        self.kid = jwk_thumbprint(rsa_public_jwk_members(self.key.public_key()))

    # -- the key ------------------------------------------------------------------

    def jwk(self) -> dict[str, str]:
        """The public key as the auth service's GetJwks publishes it."""
        members = rsa_public_jwk_members(self.key.public_key())
        return {**members, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def jwks_source(self) -> JwksSource:
        """A JwksCache source serving this factory's key (and nothing else)."""

        def source() -> Sequence[JwkDict]:
            return [self.jwk()]

        return source

    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # -- valid tokens ---------------------------------------------------------------

    def claims(self, sub: str, username: str, /, **overrides: Any) -> dict[str, Any]:
        """RFC 9068 claims for sub; overrides replace claims, and a None override drops one."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": sub,
            "exp": now + self.lifetime_seconds,
            "iat": now,
            "nbf": now,
            "jti": uuid.uuid4().hex,
            "client_id": CLIENT_ID,
            "preferred_username": username,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def header(self, **overrides: Any) -> dict[str, Any]:
        header: dict[str, Any] = {"alg": self.algorithm, "typ": "at+jwt", "kid": self.kid}
        header.update(overrides)
        return {name: value for name, value in header.items() if value is not None}

    def mint(self, sub: str, username: str, /, **overrides: Any) -> str:
        """A valid access token (unless overrides make it otherwise)."""
        return self.mint_with_header({}, self.claims(sub, username, **overrides))

    # -- hostile tokens -------------------------------------------------------------

    def mint_with_header(
        self,
        header_overrides: Mapping[str, Any],
        claims: Mapping[str, Any] | None = None,
        *,
        sub: str = "user-1",
        username: str = "alice",
        key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """RSA-signed (with `key`, default the factory's) with header fields replaced or dropped.

        The signature is a real RSASSA-PKCS1-v1_5 one over whatever the header says, so
        only the header is "wrong"; SHA-256 unless alg names RS384 or RS512.
        """
        header = self.header(**header_overrides)
        body = dict(claims) if claims is not None else self.claims(sub, username)
        signing_input = _signing_input(header, body)
        hash_algorithm = _RSA_HASHES.get(str(header.get("alg")), hashes.SHA256())
        signer = key if key is not None else self.key
        signature = signer.sign(signing_input, padding.PKCS1v15(), hash_algorithm)
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"

    def alg_none(self, sub: str = "user-1", username: str = "alice", /, **overrides: Any) -> str:
        """An unsigned token: header alg "none", empty signature."""
        header = self.header(alg="none")
        return _compact(header, self.claims(sub, username, **overrides), signature=b"")

    def hs256_with_public_key(
        self, sub: str = "user-1", username: str = "alice", /, **overrides: Any
    ) -> str:
        """HS256 keyed with the public key's PEM: the algorithm-confusion forgery."""
        header = self.header(alg="HS256")
        signing_input = _signing_input(header, self.claims(sub, username, **overrides))
        signature = hmac.new(self.public_pem(), signing_input, hashlib.sha256).digest()
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"

    def foreign_key_same_kid(
        self, sub: str = "user-1", username: str = "alice", /, **overrides: Any
    ) -> str:
        """Signed by another RSA key while claiming this factory's kid."""
        return self.mint_with_header({}, self.claims(sub, username, **overrides), key=new_rsa_key())

    @staticmethod
    def tampered(token: str, **claim_changes: Any) -> str:
        """token with its payload changed and its original signature kept."""
        header_part, payload_part, signature_part = token.split(".")
        payload = json.loads(
            base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4))
        )
        payload.update(claim_changes)
        new_payload = b64url(json.dumps(payload, separators=(",", ":")).encode())
        return f"{header_part}.{new_payload}.{signature_part}"


def _signing_input(header: Mapping[str, Any], claims: Mapping[str, Any]) -> bytes:
    parts = (
        json.dumps(dict(header), separators=(",", ":")),
        json.dumps(dict(claims), separators=(",", ":")),
    )
    return ".".join(b64url(part.encode()) for part in parts).encode("ascii")


def _compact(header: Mapping[str, Any], claims: Mapping[str, Any], *, signature: bytes) -> str:
    return f"{_signing_input(header, claims).decode('ascii')}.{b64url(signature)}"
