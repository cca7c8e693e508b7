"""A daemon thread that runs one step every few seconds, off the request path, until stopped."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field


@dataclass(eq=False)  # one thread each: compared and hashed by identity
class PeriodicThread:
    """Runs `step` every `interval_seconds` (None: only when woken), and at once on `wake()`.

    The first step runs at start when `at_start`, else after the first interval or wake.
    A step that raises is logged as `failure` on the owner's `log` and the loop goes on:
    the thread must outlive a database outage or any other surprise.
    """

    name: str
    step: Callable[[], object]
    _: KW_ONLY
    interval_seconds: float | None
    log: logging.Logger
    failure: str
    at_start: bool = False
    join_seconds: float = 5.0
    _wake: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Run the step now (safe in a signal handler: it only sets an event)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_seconds)

    def _run(self) -> None:
        if self.at_start:
            self._wake.set()
        while not self._stopping.is_set():
            self._wake.wait(self.interval_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.step()
            except Exception:
                self.log.exception(self.failure)
