"""Access tokens issued by the auth service verify with the shared TokenVerifier."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from auth_svc.keys import KeyRing, generate_key_file
from auth_svc.tokens import (
    AccessTokenIssuer,
    AccessTokenSubject,
    hash_refresh_token,
    new_refresh_token,
)
from authgate_common.tokens import InvalidToken, TokenSettings
from tests.auth.conftest import verifier_for

SUBJECT = AccessTokenSubject(
    user_id="0b5c1b7e-8f1e-4c1a-9d55-4f8a2b0d7e11",
    username="Alice",
    email="alice@example.com",
    display_name="Alice Liddell",
    roles=frozenset({"support", "admin"}),
    session_id="5d0c3f0e-2a8b-4f7e-9c1d-3b6a7e9f0a12",
)


def _issuer(ring: KeyRing, settings: TokenSettings, ttl: int = 900) -> AccessTokenIssuer:
    return AccessTokenIssuer(settings, ring, ttl_seconds=ttl)


def test_issued_token_verifies_with_the_shared_verifier(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    ring = KeyRing.load(auth_keys_dir)
    token = _issuer(ring, token_settings).issue(SUBJECT, datetime.now(UTC))

    identity = verifier_for(ring, token_settings).verify(token)

    assert (identity.user_id, identity.username) == (SUBJECT.user_id, "Alice")
    assert (identity.email, identity.display_name) == ("alice@example.com", "Alice Liddell")


def test_header_carries_at_jwt_type_and_the_signing_kid(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    ring = KeyRing.load(auth_keys_dir)
    token = _issuer(ring, token_settings).issue(SUBJECT, datetime.now(UTC))

    assert jwt.get_unverified_header(token) == {
        "alg": "RS256",
        "typ": "at+jwt",
        "kid": ring.signer.kid,
    }


def test_claims_are_exactly_the_contract(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    ring = KeyRing.load(auth_keys_dir)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    token = _issuer(ring, token_settings, ttl=600).issue(SUBJECT, now)

    claims = jwt.decode(token, options={"verify_signature": False})

    issued = int(now.timestamp())
    assert claims == {
        "iss": token_settings.issuer,
        "aud": token_settings.audience,
        "sub": SUBJECT.user_id,
        "exp": issued + 600,
        "iat": issued,
        "nbf": issued,
        "jti": claims["jti"],
        "client_id": "authgate",
        "preferred_username": "Alice",
        "email": "alice@example.com",
        "name": "Alice Liddell",
        "roles": ["admin", "support"],
        "sid": SUBJECT.session_id,
        "amr": ["pwd"],
    }
    assert re.fullmatch(r"[0-9a-f]{32}", claims["jti"])


def test_email_and_name_are_left_out_when_not_registered(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    ring = KeyRing.load(auth_keys_dir)
    bare = AccessTokenSubject(
        user_id=SUBJECT.user_id, username="bob", email=None, display_name=None
    )

    claims = jwt.decode(
        _issuer(ring, token_settings).issue(bare, datetime.now(UTC)),
        options={"verify_signature": False},
    )

    assert "email" not in claims
    assert "name" not in claims


def test_every_token_has_its_own_jti(auth_keys_dir: Path, token_settings: TokenSettings) -> None:
    issuer = _issuer(KeyRing.load(auth_keys_dir), token_settings)
    now = datetime.now(UTC)
    jtis = {
        jwt.decode(issuer.issue(SUBJECT, now), options={"verify_signature": False})["jti"]
        for _ in range(20)
    }
    assert len(jtis) == 20


def test_expired_token_is_refused_by_the_verifier(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    ring = KeyRing.load(auth_keys_dir)
    token = _issuer(ring, token_settings, ttl=60).issue(SUBJECT, datetime(2020, 1, 1, tzinfo=UTC))

    with pytest.raises(InvalidToken) as raised:
        verifier_for(ring, token_settings).verify(token)
    assert raised.value.reason == "expired"


def test_token_from_before_a_rotation_still_verifies_and_new_ones_use_the_new_kid(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    before = KeyRing.load(auth_keys_dir)
    old_token = _issuer(before, token_settings).issue(SUBJECT, datetime.now(UTC))
    os.utime(before.signer.path, (1_000, 1_000))
    generate_key_file(auth_keys_dir)
    after = KeyRing.load(auth_keys_dir)
    new_token = _issuer(after, token_settings).issue(SUBJECT, datetime.now(UTC))
    verifier = verifier_for(after, token_settings)

    assert verifier.verify(old_token).user_id == SUBJECT.user_id
    assert verifier.verify(new_token).user_id == SUBJECT.user_id
    assert jwt.get_unverified_header(new_token)["kid"] == after.signer.kid != before.signer.kid


def test_refresh_token_is_opaque_random_and_urlsafe() -> None:
    tokens = {new_refresh_token() for _ in range(50)}

    assert len(tokens) == 50
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", token) for token in tokens)


def test_refresh_token_hash_is_sha256_hex_and_hides_the_token() -> None:
    token = new_refresh_token()
    digest = hash_refresh_token(token)

    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert token not in digest
    assert hash_refresh_token(token) == digest


def test_refresh_token_is_refused_as_an_access_token(
    auth_keys_dir: Path, token_settings: TokenSettings
) -> None:
    verifier = verifier_for(KeyRing.load(auth_keys_dir), token_settings)

    with pytest.raises(InvalidToken):
        verifier.verify(new_refresh_token())
