"""The test token factory makes exactly the tokens it promises (checked with TokenVerifier)."""

from __future__ import annotations

import time

import pytest

from authgate_common.jwks import JwksCache
from authgate_common.tokens import InvalidToken, TokenSettings, TokenVerifier
from tests.token_factory import TokenFactory, jwk_thumbprint

# RFC 7638 section 3.1.
RFC_7638_N = (
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJEC"
    "PebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Qv"
    "zqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6We"
    "Zu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
)


@pytest.fixture
def verifier(token_settings: TokenSettings, token_factory: TokenFactory) -> TokenVerifier:
    keys = JwksCache(token_factory.jwks_source(), allowed_algorithms=token_settings.algorithms)
    return TokenVerifier(token_settings, keys)


def test_thumbprint_matches_the_rfc_7638_example() -> None:
    thumbprint = jwk_thumbprint({"kty": "RSA", "n": RFC_7638_N, "e": "AQAB"})

    assert thumbprint == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_published_key_carries_the_thumbprint_as_kid(token_factory: TokenFactory) -> None:
    jwk = token_factory.jwk()

    assert jwk["kid"] == jwk_thumbprint({k: jwk[k] for k in ("e", "kty", "n")})
    assert (jwk["alg"], jwk["use"]) == ("RS256", "sig")


def test_a_minted_token_verifies_with_its_claims(
    token_factory: TokenFactory, verifier: TokenVerifier
) -> None:
    token = token_factory.mint("user-1", "alice", name="Alice", email="a@example.com")

    identity = verifier.verify(token)

    assert (identity.user_id, identity.username) == ("user-1", "alice")
    assert (identity.display_name, identity.email) == ("Alice", "a@example.com")


@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (lambda f: f.alg_none(), "algorithm"),
        (lambda f: f.hs256_with_public_key(), "algorithm"),
        (lambda f: f.tampered(f.mint("user-1", "alice"), sub="admin"), "signature"),
        (lambda f: f.foreign_key_same_kid(), "signature"),
        (lambda f: f.mint("u", "a", exp=int(time.time()) - 100), "expired"),
        (lambda f: f.mint("u", "a", aud="elsewhere"), "audience"),
        (lambda f: f.mint("u", "a", iss="elsewhere"), "issuer"),
        (lambda f: f.mint_with_header({"typ": "JWT"}), "type"),
        (lambda f: f.mint_with_header({"kid": "other"}), "unknown_key"),
    ],
)
def test_each_forgery_fails_for_its_own_reason(
    token_factory: TokenFactory, verifier: TokenVerifier, forge: object, reason: str
) -> None:
    assert callable(forge)
    token = forge(token_factory)

    with pytest.raises(InvalidToken) as raised:
        verifier.verify(token)

    assert raised.value.reason == reason
