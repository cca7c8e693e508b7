"""A bound on concurrent argon2 computations, so that a login flood cannot exhaust memory.

Each argon2id hash holds its whole memory cost (64 MiB by default) while it runs. At most
`max_concurrent` run at once; a caller beyond that waits up to `queue_timeout_seconds` for
a slot and is then refused with ResourceExhausted (gRPC RESOURCE_EXHAUSTED, HTTP 429 with
Retry-After at the gateway). Waiting callers hold only a thread, never hash memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from authgate_common.errors import ResourceExhausted

BUSY_MESSAGE = "too many sign-ins are in progress, try again shortly"
# Memory that all running hashes may take together, unless configured otherwise.
DEFAULT_HASH_MEMORY_BUDGET_KIB = 1024 * 1024


def default_max_concurrent_hashes(memory_kib: int, cpus: int | None = None) -> int:
    """Two hashes per core (argon2 is CPU-bound: more only adds latency), within 1 GiB."""
    by_cpu = 2 * (cpus or os.cpu_count() or 1)
    by_memory = DEFAULT_HASH_MEMORY_BUDGET_KIB // memory_kib
    return max(1, min(by_cpu, by_memory))


class HashLimiter:
    def __init__(
        self, max_concurrent: int, *, queue_timeout_seconds: float, retry_after_seconds: int = 1
    ) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self.max_concurrent = max_concurrent
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._held = threading.local()  # a thread already holding a slot nests freely
        self._queue_timeout = queue_timeout_seconds
        self._retry_after = retry_after_seconds

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the slots while the block runs; ResourceExhausted if none frees in time.

        Re-entrant per thread: a block inside another's slot uses that slot.
        """
        if getattr(self._held, "slot", False):
            yield
            return
        if not self._slots.acquire(timeout=self._queue_timeout):
            raise ResourceExhausted(BUSY_MESSAGE, retry_after_seconds=self._retry_after)
        self._held.slot = True
        try:
            yield
        finally:
            self._held.slot = False
            self._slots.release()
