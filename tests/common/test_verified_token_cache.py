"""TokenVerifier's optional cache of verified tokens: bounded in size and time, successes only."""

from __future__ import annotations

import time

import pytest

from authgate_common.jwks import JwksCache
from authgate_common.tokens import (
    Identity,
    InvalidToken,
    TokenSettings,
    TokenVerifier,
    VerifiedTokens,
)
from tests.token_factory import TokenFactory


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_verifier(
    settings: TokenSettings, factory: TokenFactory, clock: Clock, **cache: float
) -> TokenVerifier:
    keys = JwksCache(factory.jwks_source(), allowed_algorithms=settings.algorithms)
    return TokenVerifier(
        settings,
        keys,
        cache_size=int(cache.get("size", 16)),
        cache_seconds=cache.get("seconds", 60.0),
        clock=clock,
    )


def test_a_verified_token_is_answered_from_the_cache(
    token_settings: TokenSettings,
    token_factory: TokenFactory,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = make_verifier(token_settings, token_factory, clock)
    token = token_factory.mint("user-1", "alice")
    first = verifier.verify(token)

    def no_signature_check(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the signature was checked again")

    monkeypatch.setattr("authgate_common.tokens.jwt.decode", no_signature_check)
    assert verifier.verify(token) == first


def test_a_cached_token_is_checked_again_after_cache_seconds(
    token_settings: TokenSettings, token_factory: TokenFactory, clock: Clock
) -> None:
    verifier = make_verifier(token_settings, token_factory, clock, seconds=60)
    token = token_factory.mint("user-1", "alice")
    verifier.verify(token)
    cache = verifier._cache
    assert cache is not None
    clock.now += 61
    assert cache.get(token) is None


def test_a_cached_token_is_not_accepted_past_its_expiry(
    token_settings: TokenSettings, token_factory: TokenFactory, clock: Clock
) -> None:
    expires = int(time.time()) + 5
    verifier = make_verifier(token_settings, token_factory, clock, seconds=3600)
    token = token_factory.mint("user-1", "alice", exp=expires)
    verifier.verify(token)
    clock.now = expires + 1
    assert verifier._cache is not None
    assert verifier._cache.get(token) is None


def test_a_refused_token_is_not_cached(
    token_settings: TokenSettings, token_factory: TokenFactory, clock: Clock
) -> None:
    verifier = make_verifier(token_settings, token_factory, clock)
    forged = token_factory.tampered(token_factory.mint("user-1", "alice"), sub="user-2")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(forged)
    assert verifier._cache is not None
    assert len(verifier._cache) == 0


def test_the_cache_never_holds_more_than_its_size(
    token_settings: TokenSettings, token_factory: TokenFactory, clock: Clock
) -> None:
    verifier = make_verifier(token_settings, token_factory, clock, size=3)
    tokens = [token_factory.mint(f"user-{i}", f"user{i}") for i in range(5)]
    for token in tokens:
        verifier.verify(token)
    cache = verifier._cache
    assert cache is not None
    assert len(cache) == 3
    assert cache.get(tokens[0]) is None  # the oldest went first
    assert cache.get(tokens[-1]) is not None


def test_without_a_size_nothing_is_cached(
    token_settings: TokenSettings, token_factory: TokenFactory
) -> None:
    keys = JwksCache(token_factory.jwks_source(), allowed_algorithms=token_settings.algorithms)
    verifier = TokenVerifier(token_settings, keys)
    assert verifier._cache is None


def test_entries_expire_by_the_clock_given() -> None:
    clock = Clock()
    cache = VerifiedTokens(4, 10.0, clock)
    identity = Identity("u", "n", "", "", "j", int(clock.now) + 100)
    cache.put("t", identity)
    assert cache.get("t") == identity
    clock.now += 10
    assert cache.get("t") is None
