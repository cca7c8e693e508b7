"""Draining the outbox of account deletions to the profile service, until each succeeds.

An account deletion commits a `profile_deletions` row with the deletion itself, so the
profile's removal cannot be lost: this worker calls ProfileAdminService.DeleteUserProfile
for every due row and deletes the row once the call succeeded. A failed call (profile
service down, slow, refusing) is tried again later, with exponential backoff and jitter,
for as long as it takes. The call is idempotent, so a row taken twice (a replica that
died after the call, before removing the row) does no harm.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import timedelta

import grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

from auth_svc.keys import KeyRing
from auth_svc.repository import ProfileDeletionOutbox
from auth_svc.tokens import issue_internal_token
from authgate_common import metadata
from authgate_common.clock import Clock, utc_now
from authgate_common.internal import (
    AUTH_SERVICE_SUBJECT,
    INTERNAL_TOKEN_TTL_SECONDS,
    PROFILE_DELETE_ROLE,
    internal_token_settings,
)
from authgate_common.periodic import PeriodicThread
from authgate_common.tokens import TokenSettings

log = logging.getLogger(__name__)

# Deletes the profile of a user id; raises (grpc.RpcError) when it did not succeed.
DeleteProfile = Callable[[str], None]

CALL_TIMEOUT_SECONDS = 5.0
# A taken row is due again after this, should its worker die before finishing it.
LEASE = timedelta(seconds=60)
BATCH = 50


class GrpcProfileDeleter:
    """DeleteProfile over a channel to the profile service, with an internal token."""

    def __init__(
        self, channel: grpc.Channel, tokens: TokenSettings, keys: KeyRing, *, clock: Clock
    ) -> None:
        self._stub = profile_pb2_grpc.ProfileAdminServiceStub(channel)
        self._tokens = internal_token_settings(tokens)
        self._keys = keys
        self._clock = clock

    def __call__(self, user_id: str) -> None:
        token = issue_internal_token(
            self._tokens,
            self._keys,
            subject=AUTH_SERVICE_SUBJECT,
            roles=frozenset({PROFILE_DELETE_ROLE}),
            ttl_seconds=INTERNAL_TOKEN_TTL_SECONDS,
            now=self._clock(),
        )
        self._stub.DeleteUserProfile(
            profile_pb2.DeleteUserProfileRequest(user_id=user_id),
            timeout=CALL_TIMEOUT_SECONDS,
            metadata=((metadata.AUTHORIZATION, f"Bearer {token}"),),
        )


def backoff_seconds(attempts: int, *, base: float, maximum: float) -> float:
    """The wait after the attempts-th failure: doubling from base up to maximum, then
    jittered down by up to half, so that replicas and rows spread out."""
    ceiling = min(maximum, base * 2.0 ** min(attempts - 1, 30))
    return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter only


class ProfileDeletionWorker:
    """A background thread that drains the outbox: every `poll_seconds`, and at once when
    `notify` says a deletion committed in this process."""

    def __init__(
        self,
        outbox: ProfileDeletionOutbox,
        delete_profile: DeleteProfile,
        *,
        clock: Clock = utc_now,
        poll_seconds: float = 1.0,
        base_backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 300.0,
    ) -> None:
        self._outbox = outbox
        self._delete_profile = delete_profile
        self._clock = clock
        self._base = base_backoff_seconds
        self._max = max_backoff_seconds
        # The database may be down for a moment: the rows wait, the loop goes on.
        self._loop = PeriodicThread(
            "profile-outbox",
            self.drain_once,
            interval_seconds=poll_seconds,
            log=log,
            failure="draining the profile outbox failed",
            join_seconds=CALL_TIMEOUT_SECONDS + 1,
        )

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def notify(self, _user_id: str = "") -> None:
        self._loop.wake()

    def drain_once(self) -> int:
        """Try every due row once; how many profiles were deleted."""
        deleted = 0
        for due in self._outbox.take_due(self._clock(), lease=LEASE, limit=BATCH):
            if self._loop.stopping:
                break
            try:
                self._delete_profile(due.user_id)
            except grpc.RpcError as exc:
                attempts = due.attempts + 1
                wait = backoff_seconds(attempts, base=self._base, maximum=self._max)
                self._outbox.retry_at(
                    due.user_id, attempts, self._clock() + timedelta(seconds=wait)
                )
                code = getattr(exc, "code", lambda: None)()
                log.warning(
                    "profile deletion failed, will retry",
                    extra={
                        "user_id": due.user_id,
                        "attempts": attempts,
                        "code": getattr(code, "name", "UNKNOWN"),
                        "retry_in_seconds": round(wait, 1),
                    },
                )
                continue
            self._outbox.done(due.user_id)
            deleted += 1
            log.info("profile deleted", extra={"user_id": due.user_id})
        return deleted
