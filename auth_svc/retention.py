"""Deleting, on a timer off the request path, the rows no one can use or see any more.

- Audit events older than AUTH_AUDIT_RETENTION_DAYS.
- Sessions whose refresh-token family expired longer ago than an access token can live:
  their refresh tokens are refused as expired, and no token naming the session is still
  accepted, so the rows (a few per login and refresh) would only grow the tables.

Each pruner runs in a background thread, at start and then every `interval_seconds`,
deleting in batches of one transaction each, so that a large backlog never holds long
locks. A failed run (database down) is logged and retried at the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from datetime import datetime, timedelta

from authgate_common.clock import Clock
from authgate_common.periodic import PeriodicThread

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0


@dataclass
class Pruner:
    """Calls `delete_before(now - keep)` at start and then every interval; logs what went.

    `Pruner("audit events", audit.prune, keep=timedelta(days=90), clock=clock)`;
    for sessions, `keep` is how long after its issue any verifier may accept an access
    token (auth_svc.revocations.token_lifetime_bound), so that none from them outlives them.
    """

    what: str
    delete_before: Callable[[datetime], int]
    _: KW_ONLY
    keep: timedelta
    clock: Clock
    interval_seconds: float = PRUNE_INTERVAL_SECONDS
    _loop: PeriodicThread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # At start, then every interval; the thread must outlive a database outage.
        self._loop = PeriodicThread(
            f"{self.what.replace(' ', '-')}-pruner",
            self.prune,
            interval_seconds=self.interval_seconds,
            log=log,
            failure=f"pruning {self.what} failed",
            at_start=True,
        )

    def prune(self) -> int:
        """Delete what is older than the cutoff; how many went."""
        deleted = self.delete_before(self.clock() - self.keep)
        if deleted:
            log.info(f"pruned {self.what}", extra={"deleted": deleted})
        return deleted

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
