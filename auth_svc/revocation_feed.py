"""The revocation feed: one poller per auth process, fanned out to every subscribed verifier.

A background thread reads the `revocations` table every `poll_seconds` (so a
revocation written through any auth replica reaches the subscribers of all of
them), keeps the live rows in memory for the snapshots, and hands each new row to
every subscription. After each successful read it may send a FeedStatus (at once
when the signing key set changed, else at most every `heartbeat_seconds`): a
subscriber that hears nothing for long knows the feed is down. No status is sent
while the database cannot be read, so a replica cut off from it goes stale too.

Each subscription holds one thread of the gRPC server for as long as it lasts, so
at most `max_subscribers` are accepted (RESOURCE_EXHAUSTED beyond: the verifier
retries, on another replica with round-robin); the rest of the pool stays free for
the unary RPCs.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import grpc
from authgate.auth.v1 import revocation_pb2, revocation_pb2_grpc
from google.protobuf import timestamp_pb2
from sqlalchemy.exc import SQLAlchemyError

from auth_svc.revocations import RevocationKind, RevocationLog, RevocationRecord
from authgate_common.clock import Clock, utc_now
from authgate_common.errors import DomainError, InvalidArgument, ResourceExhausted, Unavailable
from authgate_common.interceptors import status_of
from authgate_common.revocation import RevocationSet

log = logging.getLogger(__name__)

# Rows read per poll; a backlog larger than this is read over several polls.
_BATCH = 1000
# A subscriber this far behind (a stuck stream) is dropped; it reconnects and resumes.
_MAX_QUEUED = 10_000

_KINDS = {
    RevocationKind.USER: revocation_pb2.REVOCATION_KIND_USER,
    RevocationKind.SESSION: revocation_pb2.REVOCATION_KIND_SESSION,
    RevocationKind.KEY: revocation_pb2.REVOCATION_KIND_KEY,
    RevocationKind.ROLES: revocation_pb2.REVOCATION_KIND_ROLES,
}


@dataclass(frozen=True)
class FeedStatus:
    last_id: int
    kids: tuple[str, ...]


FeedEvent = RevocationRecord | FeedStatus


class Subscription:
    """One subscriber's queue of events; `events()` yields them until the feed drops it."""

    def __init__(self, after_id: int, on_close: Callable[[Subscription], None]) -> None:
        self.cursor = after_id
        self._queue: queue.Queue[FeedEvent | None] = queue.Queue()
        self._on_close = on_close
        self._closed = threading.Event()

    def put(self, event: FeedEvent) -> None:
        if self._closed.is_set():
            return
        if self._queue.qsize() >= _MAX_QUEUED:
            log.warning("dropping a revocation subscriber that does not keep up")
            self.close()
            return
        if isinstance(event, RevocationRecord):
            if event.id <= self.cursor:
                return  # seen already, e.g. from another replica before a reconnect
            self.cursor = event.id
        self._queue.put(event)

    def events(self, wait_seconds: float) -> Iterator[FeedEvent | None]:
        """Events as they come; None every wait_seconds of silence (to check the stream)."""
        while not self._closed.is_set():
            try:
                event = self._queue.get(timeout=wait_seconds)
            except queue.Empty:
                yield None
                continue
            if event is None:
                return
            yield event

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._queue.put(None)
            self._on_close(self)


class RevocationFeed:
    """Polls the revocation log and fans new rows and statuses out to subscriptions."""

    def __init__(
        self,
        revocation_log: RevocationLog,
        kids: Callable[[], Sequence[str]],
        *,
        poll_seconds: float = 0.2,
        heartbeat_seconds: float = 1.0,
        prune_seconds: float = 300.0,
        max_subscribers: int = 8,
        clock: Clock = utc_now,
    ) -> None:
        self._log = revocation_log
        self._kids = kids
        self._poll = poll_seconds
        self._heartbeat = heartbeat_seconds
        self._prune_every = prune_seconds
        self._max_subscribers = max_subscribers
        self._clock = clock
        self._lock = threading.Lock()
        self._rows: dict[int, RevocationRecord] = {}
        self._cursor = 0
        self._loaded = False
        self._subscriptions: set[Subscription] = set()
        self._last_kids: tuple[str, ...] = ()
        self._last_status_at: datetime | None = None
        self._last_prune_at: datetime | None = None
        self._failing = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # The auth process's own verifiers (e.g. of AdminService calls) check this set:
        # fed by the poller directly, with no network in between.
        self.local = RevocationSet()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="revocation-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and end every stream (they reconnect elsewhere and resume)."""
        self._stopping.set()
        with self._lock:
            subscriptions = list(self._subscriptions)
        for subscription in subscriptions:
            subscription.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def subscribe(self, after_id: int) -> Subscription:
        """A subscription whose first events are the snapshot after after_id, then a status.

        An after_id beyond every id the log ever gave (another database) starts over at 0.
        """
        if after_id < 0:
            raise InvalidArgument("after_id must not be negative")
        if self._stopping.is_set():
            raise Unavailable("the revocation feed is stopping, reconnect")
        try:
            newest = self._log.last_id() if after_id > 0 else 0
        except SQLAlchemyError:
            raise Unavailable("the revocations cannot be read, reconnect later") from None
        if after_id > newest:
            after_id = 0
        subscription = Subscription(after_id, self._forget)
        with self._lock:
            if len(self._subscriptions) >= self._max_subscribers:
                raise ResourceExhausted("too many revocation subscribers on this replica")
            self._subscriptions.add(subscription)
            if self._loaded:
                self._send_snapshot(subscription)
        return subscription

    def _forget(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscriptions.discard(subscription)

    def _send_snapshot(self, subscription: Subscription) -> None:
        now = self._clock()
        for row in sorted(self._rows.values(), key=lambda row: row.id):
            if row.expires_at > now:
                subscription.put(row)
        subscription.put(FeedStatus(self._cursor, self._last_kids))

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll()
            except Exception as exc:  # the database may be away; the thread must outlive it
                if not self._failing:
                    log.warning("reading the revocations failed: %s", type(exc).__name__)
                self._failing = True
            else:
                if self._failing:
                    log.info("reading the revocations works again")
                self._failing = False
            self._stopping.wait(self._poll)

    def poll(self) -> None:
        """Read new rows once and fan them out (the thread calls this every poll_seconds)."""
        now = self._clock()
        floor = 0
        if not self._loaded:
            # The sequence first: every id up to it is committed, so the rows read next
            # include all of them (and maybe more).
            floor = self._log.last_id()
        rows: list[RevocationRecord] = []
        after = self._cursor
        while True:
            batch = self._log.live_after(after, now, limit=_BATCH)
            rows.extend(batch)
            if len(batch) < _BATCH:
                break
            after = batch[-1].id
        kids = tuple(self._kids())
        with self._lock:
            if not self._loaded:
                self._cursor = max(self._cursor, floor)
            for row in rows:
                self._rows[row.id] = row
                self._cursor = max(self._cursor, row.id)
                row.apply_to(self.local)
            self._drop_expired(now)
            kids_changed = kids != self._last_kids
            self._last_kids = kids
            if not self._loaded:
                self._loaded = True
                for subscription in self._subscriptions:
                    self._send_snapshot(subscription)
            else:
                for row in rows:
                    for subscription in list(self._subscriptions):
                        subscription.put(row)
            if kids_changed or self._status_due(now):
                self._last_status_at = now
                status = FeedStatus(self._cursor, kids)
                for subscription in list(self._subscriptions):
                    subscription.put(status)
        self.local.heard(self._cursor)
        if self._last_prune_at is None or (now - self._last_prune_at).total_seconds() >= (
            self._prune_every
        ):
            self._last_prune_at = now
            pruned = self._log.prune(now)
            if pruned:
                log.info("pruned expired revocations", extra={"pruned": pruned})

    def _status_due(self, now: datetime) -> bool:
        last = self._last_status_at
        return last is None or (now - last).total_seconds() >= self._heartbeat

    def _drop_expired(self, now: datetime) -> None:
        expired = [row_id for row_id, row in self._rows.items() if row.expires_at <= now]
        for row_id in expired:
            del self._rows[row_id]


class RevocationServicer(revocation_pb2_grpc.RevocationServiceServicer):
    """WatchRevocations over a RevocationFeed.

    Public like GetJwks: the events name only ids and times, never a secret (see the
    proto). The shared ErrorInterceptor wraps unary RPCs only, so errors are mapped here.
    """

    def __init__(self, feed: RevocationFeed, *, idle_check_seconds: float = 1.0) -> None:
        self._feed = feed
        self._idle_check = idle_check_seconds

    def WatchRevocations(  # noqa: N802 - the name comes from the proto
        self, request: revocation_pb2.WatchRevocationsRequest, context: grpc.ServicerContext
    ) -> Iterator[revocation_pb2.RevocationEvent]:
        try:
            subscription = self._feed.subscribe(request.after_id)
        except DomainError as exc:
            context.abort(status_of(exc), exc.message)
        context.add_callback(subscription.close)  # the client went away
        try:
            for event in subscription.events(self._idle_check):
                if not context.is_active():
                    return
                if event is not None:
                    yield to_message(event)
        finally:
            subscription.close()


def to_message(event: FeedEvent) -> revocation_pb2.RevocationEvent:
    if isinstance(event, FeedStatus):
        return revocation_pb2.RevocationEvent(
            status=revocation_pb2.FeedStatus(last_id=event.last_id, kids=list(event.kids))
        )
    return revocation_pb2.RevocationEvent(
        revocation=revocation_pb2.Revocation(
            id=event.id,
            kind=_KINDS[event.kind],
            subject=event.subject,
            not_before=_timestamp(event.not_before),
            expires_at=_timestamp(event.expires_at),
            roles=sorted(event.roles),
        )
    )


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
