"""Pruning audit events older than AUTH_AUDIT_RETENTION_DAYS, on a timer off the request path.

A background thread deletes expired events at start and then every `interval_seconds`,
in batches of one transaction each, so that a large backlog never holds long locks.
A failed run (database down) is logged and retried at the next tick.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from auth_svc.repository import AuditRepository
from authgate_common.clock import Clock
from authgate_common.periodic import PeriodicThread

log = logging.getLogger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
PRUNE_BATCH_SIZE = 1000


class AuditPruner:
    def __init__(
        self,
        audit: AuditRepository,
        *,
        retention_days: int,
        clock: Clock,
        interval_seconds: float = PRUNE_INTERVAL_SECONDS,
    ) -> None:
        self._audit = audit
        self._retention = timedelta(days=retention_days)
        self._clock = clock
        # At start, then every interval; the thread must outlive a database outage.
        self._loop = PeriodicThread(
            "audit-pruner",
            self.prune,
            interval_seconds=interval_seconds,
            log=log,
            failure="pruning audit events failed",
            at_start=True,
        )

    def prune(self) -> int:
        """Delete the events older than the retention; how many went."""
        deleted = self._audit.prune(self._clock() - self._retention, batch_size=PRUNE_BATCH_SIZE)
        if deleted:
            log.info("pruned audit events", extra={"deleted": deleted})
        return deleted

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()
