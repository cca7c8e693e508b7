"""The JWKS cache: refetch on an unknown kid, single flight, at most one fetch per cooldown."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest

from authgate_common.jwks import JwkDict, JwksCache, KeysUnavailable
from tests.token_factory import new_rsa_key, rsa_public_jwk_members


def _jwk(kid: str) -> dict[str, str]:
    members = rsa_public_jwk_members(new_rsa_key().public_key())
    return {**members, "kid": kid, "use": "sig", "alg": "RS256"}


class KeySource:
    """A key set that the test changes, counting how often it is fetched."""

    def __init__(self, keys: Sequence[JwkDict], delay: float = 0.0) -> None:
        self.keys = list(keys)
        self.delay = delay
        self.calls = 0
        self.failing = False
        self._lock = threading.Lock()

    def __call__(self) -> Sequence[JwkDict]:
        with self._lock:
            self.calls += 1
        time.sleep(self.delay)
        if self.failing:
            raise ConnectionError("auth service down")
        return self.keys


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY_A = _jwk("key-a")
KEY_B = _jwk("key-b")


def _cache(source: KeySource, clock: Clock, cooldown: float = 5.0) -> JwksCache:
    return JwksCache(
        source, allowed_algorithms=["RS256"], cooldown=cooldown, max_age=300, clock=clock
    )


def test_known_kid_is_served_from_the_cache_after_the_first_fetch() -> None:
    source, clock = KeySource([KEY_A]), Clock()
    cache = _cache(source, clock)
    assert cache.get("key-a") is not None
    assert cache.get("key-a") is not None
    assert source.calls == 1


def test_unknown_kid_refetches_and_finds_a_rotated_key_after_the_cooldown() -> None:
    source, clock = KeySource([KEY_A]), Clock()
    cache = _cache(source, clock)
    assert cache.get("key-a") is not None
    source.keys = [KEY_A, KEY_B]
    clock.now += 5.0
    assert cache.get("key-b") is not None
    assert source.calls == 2


def test_a_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() -> None:
    source, clock = KeySource([KEY_A]), Clock()
    cache = _cache(source, clock)
    cache.get("key-a")
    clock.now += 10
    for index in range(500):
        assert cache.get(f"random-{index}") is None
    assert source.calls == 2


def test_concurrent_unknown_kids_share_one_fetch() -> None:
    source, clock = KeySource([KEY_A], delay=0.2), Clock()
    cache = _cache(source, clock)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get("key-a") is not None))
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [True] * 20
    assert source.calls == 1


def test_unreachable_source_without_the_key_raises_keys_unavailable() -> None:
    source, clock = KeySource([KEY_A]), Clock()
    source.failing = True
    cache = _cache(source, clock)
    with pytest.raises(KeysUnavailable):
        cache.get("key-a")


def test_unreachable_source_keeps_serving_keys_already_fetched() -> None:
    source, clock = KeySource([KEY_A]), Clock()
    cache = _cache(source, clock)
    cache.get("key-a")
    source.failing = True
    clock.now += 400  # stale: a refetch is attempted and fails
    assert cache.get("key-a") is not None


def test_keys_with_an_algorithm_not_allowed_are_ignored() -> None:
    hs_key = {"kty": "oct", "kid": "hmac", "alg": "HS256", "k": "c2VjcmV0"}
    source, clock = KeySource([KEY_A, hs_key]), Clock()
    cache = _cache(source, clock)
    assert cache.get("key-a") is not None
    assert cache.get("hmac") is None
