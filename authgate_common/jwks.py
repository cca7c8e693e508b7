"""Cache of the public keys of the auth service; an unknown `kid` refetches, once per cooldown."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import grpc
import jwt
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf import json_format

log = logging.getLogger(__name__)

JwkDict = Mapping[str, str]
JwksSource = Callable[[], Sequence[JwkDict]]


class KeysUnavailable(Exception):
    """The key source could not be reached and no key matches."""


class JwksCache:
    """Public keys by `kid`.

    A `kid` that is not cached triggers a refetch, but at most one fetch runs at a
    time (callers arriving meanwhile wait for its result instead of fetching
    again) and at most one starts per `cooldown` seconds, so a flood of tokens
    with made-up `kid`s costs one fetch per cooldown. Keys are also refetched when
    older than `max_age`, so that retired keys drop out.

    Keys that could not be refreshed (nor confirmed by the revocation feed, see
    `confirm`) for `max_age + grace` seconds are no longer trusted: `get` raises
    KeysUnavailable, so a verifier cut off from the auth service fails closed
    instead of honouring a key that may have been removed meanwhile.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        allowed_algorithms: Sequence[str],
        cooldown: float = 5.0,
        max_age: float = 300.0,
        grace: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._allowed = frozenset(allowed_algorithms)
        self._cooldown = cooldown
        self._max_age = max_age
        self._grace = grace
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._last_fetch_failed = False
        self._reported: frozenset[str] = frozenset()  # the key ids the feed last reported
        self._lock = threading.Lock()
        self.fetch_count = 0

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key for kid, fetching the key set when needed and allowed.

        Raises KeysUnavailable when the key is not known and the source failed.
        """
        key = self._keys.get(kid)
        if key is not None and not self._stale():
            return key
        generation = self._attempted_at
        # A key still trusted is served while another caller refetches, instead of waiting
        # for a fetch that may take its whole timeout (an auth service reconnecting).
        if key is not None and not self._expired():
            if not self._lock.acquire(blocking=False):
                return key
        else:
            self._lock.acquire()
        try:
            # Single flight: whoever waited on the lock reuses the fetch that
            # finished meanwhile instead of starting another.
            if self._attempted_at == generation and self._may_fetch():
                self._fetch()
            key = self._keys.get(kid)
            if self._last_fetch_failed and (key is None or self._expired()):
                raise KeysUnavailable("the key set could not be fetched")
            return key
        finally:
            self._lock.release()

    def forget(self, kid: str) -> None:
        """Stop honouring kid at once (the feed says the key was revoked)."""
        with self._lock:
            if kid in self._keys:
                self._keys = {k: v for k, v in self._keys.items() if k != kid}

    def confirm(self, kids: Sequence[str]) -> None:
        """The auth service's current key ids, as the revocation feed reports them.

        A key the feed reported before and no longer reports was removed: it is dropped
        at once. A key the feed never reported (rotated in on another replica first) is
        kept. While the feed reports keys, the cached ones count as freshly fetched (no
        periodic refetch, no expiry of the grace); a key the cache lacks is fetched when a
        token needs it, as usual.
        """
        current = frozenset(kids)
        with self._lock:
            removed = self._reported - current
            self._reported = current
            if removed & self._keys.keys():
                self._keys = {k: v for k, v in self._keys.items() if k not in removed}
            if self._keys.keys() & current and self._fetched_at is not None:
                self._fetched_at = self._clock()
                self._last_fetch_failed = False

    def _expired(self) -> bool:
        return (
            self._fetched_at is None
            or self._clock() - self._fetched_at > self._max_age + self._grace
        )

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at > self._max_age

    def _may_fetch(self) -> bool:
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._cooldown

    def _fetch(self) -> None:
        self._attempted_at = self._clock()
        self.fetch_count += 1
        try:
            jwks = self._source()
        except Exception as exc:  # any failure of the source keeps the keys we have
            self._last_fetch_failed = True
            log.warning("fetching the JWKS failed: %s", type(exc).__name__)
            return
        keys: dict[str, jwt.PyJWK] = {}
        for jwk in jwks:
            kid, alg = jwk.get("kid"), jwk.get("alg")
            if not kid or alg not in self._allowed:
                continue
            try:
                keys[kid] = jwt.PyJWK(dict(jwk), algorithm=alg)
            except jwt.PyJWKError:
                log.warning("ignoring an unusable key in the JWKS")
        self._keys = keys
        self._fetched_at = self._attempted_at
        self._last_fetch_failed = False


# How long a key fetch may wait for the auth service: a little over the channels' longest
# reconnect backoff (a second), so that a fetch made while the channel waits to redial an
# auth service that just came back gets its answer; a token needing a fetch while the
# auth service is down is refused (503) after this long, once per cooldown.
KEY_FETCH_TIMEOUT_SECONDS = 2.0


def grpc_jwks_source(
    channel: grpc.Channel, *, timeout: float = KEY_FETCH_TIMEOUT_SECONDS
) -> JwksSource:
    """Fetch the key set with AuthService.GetJwks over an existing channel."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)

    def fetch() -> Sequence[JwkDict]:
        # wait_for_ready: while the channel waits out its reconnect backoff (the auth
        # service was down a moment ago, or restarted) a call would fail at once, and the
        # cooldown would then keep tokens refused for seconds after it is back.
        response = stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=timeout, wait_for_ready=True)
        return [
            json_format.MessageToDict(key, preserving_proto_field_name=True)
            for key in response.keys
        ]

    return fetch
