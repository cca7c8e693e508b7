"""Pruning audit events older than AUTH_AUDIT_RETENTION_DAYS, on a timer off the request path.

A background thread deletes expired events at start and then every `interval_seconds`,
in batches of one transaction each, so that a large backlog never holds long locks.
A failed run (database down) is logged and retried at the next tick.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from auth_svc.repository import AuditRepository
from authgate_common.clock import Clock

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
        self._interval = interval_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def prune(self) -> int:
        """Delete the events older than the retention; how many went."""
        deleted = self._audit.prune(self._clock() - self._retention, batch_size=PRUNE_BATCH_SIZE)
        if deleted:
            log.info("pruned audit events", extra={"deleted": deleted})
        return deleted

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-pruner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.prune()
            except Exception:  # the thread must outlive a database outage
                log.exception("pruning audit events failed")
            self._stopping.wait(self._interval)
