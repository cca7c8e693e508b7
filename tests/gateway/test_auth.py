"""The bearer-token middleware: verified callers, RFC 6750 challenges, never a 5xx."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt
import pytest

from authgate_common.jwks import JwkDict, JwksCache
from authgate_common.tokens import TokenSettings, TokenVerifier
from gateway.auth import Authenticator, challenge
from gateway.errors import Problem
from tests.gateway.fake_upstreams import TokenMinter


@pytest.fixture(scope="module")
def minter(token_settings: TokenSettings) -> TokenMinter:
    return TokenMinter(token_settings)


def _authenticator(settings: TokenSettings, keys: Sequence[JwkDict]) -> Authenticator:
    cache = JwksCache(lambda: keys, allowed_algorithms=settings.algorithms)
    return Authenticator(TokenVerifier(settings, cache), max_token_bytes=settings.max_token_bytes)


@pytest.fixture
def authenticator(minter: TokenMinter, token_settings: TokenSettings) -> Authenticator:
    return _authenticator(token_settings, [minter.jwk])


def _refused(authenticator: Authenticator, header: str | None) -> Problem:
    with pytest.raises(Problem) as caught:
        authenticator.authenticate(header)
    return caught.value


def test_a_valid_token_gives_the_caller_and_the_token(
    authenticator: Authenticator, minter: TokenMinter
) -> None:
    token = minter.mint("user-1", "alice")
    caller = authenticator.authenticate(f"Bearer {token}")
    assert (caller.identity.user_id, caller.identity.username, caller.token) == (
        "user-1",
        "alice",
        token,
    )


def test_the_scheme_is_case_insensitive(authenticator: Authenticator, minter: TokenMinter) -> None:
    assert authenticator.authenticate(f"bearer {minter.mint('u')}").identity.user_id == "u"


@pytest.mark.parametrize("header", [None, "", "Basic YTpi", "Bearer", "Bearer a b", "Token abc"])
def test_no_bearer_token_is_401_with_a_bare_challenge(
    authenticator: Authenticator, header: str | None
) -> None:
    problem = _refused(authenticator, header)
    assert problem.status == 401
    assert problem.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'


@pytest.mark.parametrize(
    ("claims", "description"),
    [
        ({"exp": int(time.time()) - 3600}, "the access token has expired"),
        ({"nbf": int(time.time()) + 3600}, "the access token is not valid yet"),
        ({"aud": "someone-else"}, "the access token is for another audience"),
        ({"iss": "someone-else"}, "the access token has an unknown issuer"),
    ],
)
def test_an_invalid_token_is_401_invalid_token_with_the_reason(
    authenticator: Authenticator, minter: TokenMinter, claims: dict[str, Any], description: str
) -> None:
    problem = _refused(authenticator, f"Bearer {minter.mint('u', **claims)}")
    assert problem.status == 401
    assert problem.detail == description
    assert problem.headers["WWW-Authenticate"] == (
        f'Bearer realm="authgate", error="invalid_token", error_description="{description}"'
    )


def test_an_unsigned_token_is_401(authenticator: Authenticator, minter: TokenMinter) -> None:
    none_key: Any = None
    unsigned = jwt.encode({"sub": "u"}, key=none_key, algorithm="none", headers={"kid": minter.kid})
    assert _refused(authenticator, f"Bearer {unsigned}").status == 401


def test_a_token_signed_by_another_key_with_the_same_kid_is_401(
    authenticator: Authenticator, token_settings: TokenSettings, minter: TokenMinter
) -> None:
    forger = TokenMinter(token_settings)
    forger.kid = minter.kid
    problem = _refused(authenticator, f"Bearer {forger.mint('u')}")
    assert problem.detail == "the access token's signature is invalid"
    assert (
        'error_description="the access token\'s signature is invalid"'
        in (problem.headers["WWW-Authenticate"])
    )


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "é.é.é", "\x00\x01.x.y", "eyJ" * 50])
def test_garbage_tokens_are_401(authenticator: Authenticator, token: str) -> None:
    assert _refused(authenticator, f"Bearer {token}").status == 401


def test_an_oversized_authorization_header_is_401(authenticator: Authenticator) -> None:
    problem = _refused(authenticator, "Bearer " + "a" * 1_000_000)
    assert (problem.status, problem.detail) == (401, "the access token is too large")


def test_unreachable_keys_are_503(token_settings: TokenSettings, minter: TokenMinter) -> None:
    def failing_source() -> Sequence[JwkDict]:
        raise ConnectionError("auth service down")

    cache = JwksCache(failing_source, allowed_algorithms=token_settings.algorithms)
    authenticator = Authenticator(TokenVerifier(token_settings, cache), max_token_bytes=8192)
    problem = _refused(authenticator, f"Bearer {minter.mint('u')}")
    assert problem.status == 503
    assert "WWW-Authenticate" not in problem.headers


def test_challenge_strips_characters_that_would_break_the_header() -> None:
    assert challenge("invalid_token", 'a"b\\c\nd') == (
        'Bearer realm="authgate", error="invalid_token", error_description="abcd"'
    )
