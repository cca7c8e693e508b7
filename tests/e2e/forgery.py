"""Hand-built hostile JWTs: what an attacker would send instead of a token we issued."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.token_factory import b64url


def b64url_json(value: object) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def decode_segment(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return value


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return decode_segment(header), decode_segment(payload), signature


def alg_none(token: str) -> str:
    header, payload, _ = parts(token)
    return f"{b64url_json({**header, 'alg': 'none'})}.{b64url_json(payload)}."


def hs256_with_public_key(token: str, public_pem: bytes) -> str:
    """The classic key-confusion attack: HMAC keyed with the RSA public key."""
    header, payload, _ = parts(token)
    signing_input = f"{b64url_json({**header, 'alg': 'HS256'})}.{b64url_json(payload)}"
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def tampered_payload(token: str, **changes: object) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{b64url_json({**decode_segment(payload), **changes})}.{signature}"


def signed_by_foreign_key(token: str) -> str:
    """Same header (kid included) and claims, signed by a key we never published."""
    header, payload, _ = parts(token)
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = foreign.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jwt.encode(
        payload, pem, algorithm="RS256", headers={"kid": header["kid"], "typ": header["typ"]}
    )


def public_pem_of_jwk(jwk: dict[str, str]) -> bytes:
    key = jwt.PyJWK(jwk).key
    assert isinstance(key, rsa.RSAPublicKey)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
