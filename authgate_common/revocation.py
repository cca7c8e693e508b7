"""Revocations pushed by the auth service, checked by every token verifier without a call.

A RevocationSubscriber (one background thread per process, started on first use
and again in a forked child) holds a WatchRevocations stream to the auth service:
a snapshot on connect, then each new revocation as it is written. It keeps a
RevocationSet (user id -> not-before, session id -> not-before, revoked key ids,
user id -> not-before and the roles left after a removal) that TokenVerifier
consults on every request, cached verifications included: a few dict lookups, no
call to the auth service on the request path. A removed role does not refuse the
user's earlier tokens: they keep only the roles the user still has, so a route that
needs the removed role answers 403 while the others work on. A stream silent for half
the staleness bound (2 to 10 s) is dropped and opened again (maybe to another replica). On a broken
stream it reconnects with backoff and resumes after the last id it saw.

Feed down: for up to REVOCATION_MAX_STALENESS_SECONDS since the feed was last
heard (it sends a status at least every second while it reads the database) the
verifier goes on with what it knows; past that it fails closed, refusing every
token as unavailable (503 at the gateway, UNAVAILABLE from the services) until the
feed is back, since a revocation may have been missed. Before the first snapshot
a request waits up to `initial_sync_seconds` for it, then fails closed too.
The metrics authgate_revocation_feed_connected and
authgate_revocation_feed_lag_seconds show it; the gateway's /readyz turns 503.

Subscribing needs no token (the verifiers have none): like the JWKS, the feed
carries only ids and times; keep the auth port internal (mTLS in production).
"""

from __future__ import annotations

import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import grpc
from authgate.auth.v1 import revocation_pb2, revocation_pb2_grpc

from authgate_common.jwks import JwksCache, KeysUnavailable
from authgate_common.settings import RevocationSettings

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger(__name__)

USER = "user"
SESSION = "session"
KEY = "key"
ROLES = "roles"
_KIND_NAMES = {
    revocation_pb2.REVOCATION_KIND_USER: USER,
    revocation_pb2.REVOCATION_KIND_SESSION: SESSION,
    revocation_pb2.REVOCATION_KIND_KEY: KEY,
    revocation_pb2.REVOCATION_KIND_ROLES: ROLES,
}


class RevocationsUnavailable(KeysUnavailable):
    """The verifier cannot tell whether a token was revoked: it refuses, as without keys."""


class RevokedToken(Exception):
    """The token was revoked; `reason` says by what (user, session or key)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RevocableToken(Protocol):
    """What a revocation check reads of a verified token."""

    @property
    def user_id(self) -> str: ...
    @property
    def session_id(self) -> str: ...
    @property
    def key_id(self) -> str: ...
    @property
    def issued_at(self) -> int: ...
    @property
    def roles(self) -> frozenset[str]: ...


class RevocationCheck(Protocol):
    def check(self, token: RevocableToken) -> frozenset[str]:
        """The roles the token may still use: its own, narrowed when a role was taken from
        the user since it was issued. Raises RevokedToken or RevocationsUnavailable."""


@dataclass(frozen=True)
class _Narrowing:
    """A user's tokens issued at or before not_before keep only these roles."""

    not_before: float
    expires_at: float
    roles: frozenset[str]
    # The revocation that gave `roles`: a later one (higher id) is the later state.
    revocation_id: int


class RevocationSet:
    """What is revoked, and how fresh that knowledge is; safe to share between threads.

    Lookups take no lock: single dict reads are atomic in CPython, and entries only
    get stricter (a not-before never moves back) until they expire.
    """

    def __init__(
        self,
        settings: RevocationSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings or RevocationSettings()
        self._clock = clock
        self._wall = wall_clock
        self._lock = threading.Lock()
        # subject -> (not_before, expires_at), in epoch seconds.
        self._users: dict[str, tuple[float, float]] = {}
        self._sessions: dict[str, tuple[float, float]] = {}
        self._keys: dict[str, float] = {}  # kid -> expires_at
        self._roles: dict[str, _Narrowing] = {}  # user id -> their roles after a removal
        self._synced = threading.Event()
        self._started_at = clock()
        self._heard_at: float | None = None
        self.last_id = 0

    def apply(
        self,
        kind: str,
        subject: str,
        not_before: datetime,
        expires_at: datetime,
        *,
        roles: Iterable[str] = (),
        revocation_id: int = 0,
    ) -> None:
        before, until = not_before.timestamp(), expires_at.timestamp()
        with self._lock:
            if kind == KEY:
                self._keys[subject] = max(until, self._keys.get(subject, 0.0))
                return
            if kind == ROLES:
                self._narrow(subject, before, until, frozenset(roles), revocation_id)
                return
            table = self._users if kind == USER else self._sessions if kind == SESSION else None
            if table is None:
                return  # a kind this verifier does not know: ignored, the feed may grow
            current = table.get(subject)
            if current is not None:
                before, until = max(before, current[0]), max(until, current[1])
            table[subject] = (before, until)

    def _narrow(
        self, user_id: str, before: float, until: float, roles: frozenset[str], revocation_id: int
    ) -> None:
        # The roles of the latest removal are the user's roles now (an addition since can
        # only be in tokens issued after it); the not-before only grows, as for users.
        current = self._roles.get(user_id)
        if current is not None:
            before, until = max(before, current.not_before), max(until, current.expires_at)
            if revocation_id < current.revocation_id:
                roles, revocation_id = current.roles, current.revocation_id
        self._roles[user_id] = _Narrowing(before, until, roles, revocation_id)

    def heard(self, last_id: int) -> None:
        """The feed is alive and every revocation up to last_id has been applied."""
        with self._lock:
            self.last_id = max(self.last_id, last_id)
            self._heard_at = self._clock()
            self._drop_expired(self._wall())
        self._synced.set()

    def advance(self, revocation_id: int) -> None:
        with self._lock:
            self.last_id = max(self.last_id, revocation_id)

    def restart_clock(self) -> None:
        """The initial-sync wait counts from now (a subscriber started in this process)."""
        self._started_at = self._clock()

    def _drop_expired(self, now: float) -> None:
        for table in (self._users, self._sessions):
            for subject in [s for s, (_, until) in table.items() if until <= now]:
                del table[subject]
        for kid in [k for k, until in self._keys.items() if until <= now]:
            del self._keys[kid]
        for user_id in [u for u, entry in self._roles.items() if entry.expires_at <= now]:
            del self._roles[user_id]

    def lag_seconds(self) -> float:
        """Seconds since the feed was last heard (infinite before the first time)."""
        heard = self._heard_at
        return math.inf if heard is None else max(0.0, self._clock() - heard)

    def fresh(self) -> bool:
        return self.lag_seconds() <= self._settings.max_staleness_seconds

    def is_key_revoked(self, kid: str) -> bool:
        return kid in self._keys

    def current(self) -> bool:
        """Whether revocations can be checked now (waiting for a starting feed's snapshot)."""
        return self._wait_synced() and self.fresh()

    def _wait_synced(self) -> bool:
        if self._synced.is_set():
            return True
        remaining = self._started_at + self._settings.initial_sync_seconds - self._clock()
        return remaining > 0 and self._synced.wait(remaining)

    def check(self, token: RevocableToken) -> frozenset[str]:
        if not self._wait_synced():
            raise RevocationsUnavailable("the revocation feed has not been received yet")
        if not self.fresh():
            raise RevocationsUnavailable("the revocation feed has been silent for too long")
        if token.key_id in self._keys:
            raise RevokedToken(KEY)
        for table, subject, reason in (
            (self._users, token.user_id, USER),
            (self._sessions, token.session_id, SESSION),
        ):
            entry = table.get(subject) if subject else None
            if entry is not None and token.issued_at <= entry[0]:
                raise RevokedToken(reason)
        narrowing = self._roles.get(token.user_id)
        if narrowing is not None and token.issued_at <= narrowing.not_before:
            return token.roles & narrowing.roles
        return token.roles


class FeedMetrics:
    """authgate_revocation_feed_connected and _lag_seconds of one verifier process.

    Under prometheus-client's multiprocess mode (gunicorn workers) /metrics shows the
    worst worker: the least connected, the most lagging.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        # Imported here: the gateway's gunicorn master reads token settings (this module's
        # importers) before it sets prometheus-client's multiprocess folder.
        from prometheus_client import Gauge

        self.connected = Gauge(
            "authgate_revocation_feed_connected",
            "1 while the revocation feed stream is open and has sent its snapshot, else 0.",
            registry=registry,
            multiprocess_mode="livemin",
        )
        self.lag = Gauge(
            "authgate_revocation_feed_lag_seconds",
            "Seconds since the revocation feed was last heard from (tokens are refused past "
            "REVOCATION_MAX_STALENESS_SECONDS).",
            registry=registry,
            multiprocess_mode="livemax",
        )

    def update(self, *, connected: bool, lag_seconds: float) -> None:
        self.connected.set(1 if connected else 0)
        # Never heard yet: report a large finite number, which Prometheus can compare.
        self.lag.set(lag_seconds if math.isfinite(lag_seconds) else 1e9)


ChannelFactory = Callable[[], grpc.Channel]
# How often an open stream's watchdog reports the lag and checks for silence.
_WATCH_SECONDS = 0.5


class RevocationSubscriber:
    """Keeps a RevocationSet (and a JwksCache's key set) in step with the auth service's feed.

    `check` is the RevocationCheck the TokenVerifier calls; it starts the background
    thread in the calling process when none runs there (after a gunicorn fork too).
    """

    def __init__(
        self,
        channel: ChannelFactory,
        revocations: RevocationSet,
        *,
        keys: JwksCache | None = None,
        metrics: FeedMetrics | None = None,
        settings: RevocationSettings | None = None,
        min_backoff_seconds: float = 0.1,
        max_backoff_seconds: float = 2.0,
    ) -> None:
        self._channel = channel
        self.revocations = revocations
        self._keys = keys
        self._metrics = metrics
        self._settings = settings or RevocationSettings()
        self._min_backoff = min_backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._call: Any = None
        self._event_at = 0.0  # when the open stream last delivered an event (monotonic)
        self.connected = threading.Event()
        # Set whenever an event has been applied: tests (and only tests) wait on it.
        self.applied = threading.Condition()

    def check(self, token: RevocableToken) -> frozenset[str]:
        self.ensure_started()
        return self.revocations.check(token)

    def ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid() or self._stopping.is_set():
                return
            # A thread inherited through fork does not run in the child: start our own.
            self._pid = os.getpid()
            self.connected.clear()
            self.revocations.restart_clock()
            self._thread = threading.Thread(
                target=self._run, name="revocation-subscriber", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        call = self._call
        if call is not None:
            call.cancel()
        thread = self._thread
        if thread is not None and thread.is_alive() and self._pid == os.getpid():
            thread.join(timeout=5)

    def _run(self) -> None:
        backoff = self._min_backoff
        while not self._stopping.is_set():
            try:
                self._follow()
                backoff = self._min_backoff  # the stream ended in order: reconnect at once
            except grpc.RpcError as exc:
                if not self._stopping.is_set():
                    log.warning(
                        "revocation feed disconnected",
                        extra={"code": _code_of(exc).name, "retry_in": round(backoff, 2)},
                    )
            except Exception:  # the thread must outlive any surprise
                log.exception("revocation feed subscriber failed")
            self.connected.clear()
            self._report()
            if self._stopping.wait(backoff * random.uniform(0.8, 1.2)):  # noqa: S311 - jitter
                return
            backoff = min(self._max_backoff, backoff * 2)
            # While waiting, report the growing lag.
            self._report()

    def _follow(self) -> None:
        stub = revocation_pb2_grpc.RevocationServiceStub(self._channel())
        request = revocation_pb2.WatchRevocationsRequest(after_id=self.revocations.last_id)
        # wait_for_ready: while the channel waits out its reconnect backoff (the auth
        # service was down a moment ago) the stream would fail at once, and this loop's
        # own backoff would add up to 2 s more before the first sync; a stream that cannot
        # connect is still ended by the watchdog below.
        call = stub.WatchRevocations(
            request, timeout=self._settings.stream_seconds, wait_for_ready=True
        )
        self._call = call
        if self._stopping.is_set():
            call.cancel()
        ended = threading.Event()
        self._event_at = time.monotonic()
        watchdog = threading.Thread(
            target=self._watch, args=(call, ended), name="revocation-watchdog", daemon=True
        )
        watchdog.start()
        try:
            for event in call:
                self._apply(event)
        except grpc.RpcError as exc:
            if _code_of(exc) == grpc.StatusCode.DEADLINE_EXCEEDED:
                return  # the stream's own deadline: resume on a new one
            raise
        finally:
            ended.set()
            self._call = None

    def _watch(self, call: Any, ended: threading.Event) -> None:
        """While the stream is open: keep the lag metric current, and drop a stream that has
        gone silent (e.g. its replica cannot read the database, or hangs) to reconnect,
        maybe to another replica, before the staleness bound is reached."""
        bound = self._settings.max_staleness_seconds
        silent_limit = max(2.0, min(10.0, bound / 2))
        while not ended.wait(_WATCH_SECONDS):
            self._report()
            silent = time.monotonic() - self._event_at
            if silent > silent_limit:
                log.warning(
                    "revocation feed silent, reconnecting",
                    extra={"silent_seconds": round(silent, 1)},
                )
                self.connected.clear()
                call.cancel()
                return

    def _apply(self, event: revocation_pb2.RevocationEvent) -> None:
        self._event_at = time.monotonic()
        which = event.WhichOneof("event")
        if which == "revocation":
            revocation = event.revocation
            kind = _KIND_NAMES.get(revocation.kind, "")
            self.revocations.apply(
                kind,
                revocation.subject,
                revocation.not_before.ToDatetime(tzinfo=UTC),
                revocation.expires_at.ToDatetime(tzinfo=UTC),
                roles=revocation.roles,
                revocation_id=revocation.id,
            )
            self.revocations.advance(revocation.id)
            if kind == KEY and self._keys is not None:
                self._keys.forget(revocation.subject)
        elif which == "status":
            if self._keys is not None:
                self._keys.confirm(event.status.kids)
            self.revocations.heard(event.status.last_id)
            self.connected.set()
        self._report()
        with self.applied:
            self.applied.notify_all()

    def _report(self) -> None:
        if self._metrics is not None:
            self._metrics.update(
                connected=self.connected.is_set(), lag_seconds=self.revocations.lag_seconds()
            )


def _code_of(error: grpc.RpcError) -> grpc.StatusCode:
    # The errors raised by calls are also grpc.Call objects that carry the status.
    code = getattr(error, "code", None)
    result = code() if callable(code) else None
    return result if isinstance(result, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
