"""Readiness follows the database: a background check flips grpc.health.v1 with it.

Each service runs `SELECT 1` through its own engine every few seconds. A check
that fails, or takes longer than the timeout, marks the service NOT_SERVING;
the next good one marks it SERVING again, with no restart.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, text

from authgate_common import settings as shared
from authgate_common.config import ReadFromEnv, from_setting
from authgate_common.periodic import PeriodicThread

log = logging.getLogger(__name__)

Probe = Callable[[], None]


@dataclass(frozen=True)
class DatabaseCheckSettings(ReadFromEnv):
    """How often the database is checked (0 turns the check off) and how long a check may take."""

    interval_seconds: float = from_setting(shared.DB_CHECK_INTERVAL_SECONDS)
    timeout_seconds: float = from_setting(shared.DB_CHECK_TIMEOUT_SECONDS)


def select_one(engine: Engine) -> Probe:
    """A probe that runs `SELECT 1` on a pooled connection (pre-ping replaces dead ones)."""

    def probe() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return probe


class _Attempt:
    """One probe on a daemon thread of its own: a hung driver call never blocks the watcher."""

    def __init__(self, probe: Probe) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        threading.Thread(target=self._run, args=(probe,), name="db-probe", daemon=True).start()

    def _run(self, probe: Probe) -> None:
        try:
            probe()
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()


class DatabaseWatcher:
    """Calls on_change(reachable) whenever the probe's verdict changes; starts as reachable."""

    def __init__(
        self,
        probe: Probe,
        on_change: Callable[[bool], None],
        settings: DatabaseCheckSettings,
        *,
        name: str = "database",
    ) -> None:
        self._probe = probe
        self._on_change = on_change
        self._settings = settings
        self._name = name
        self._loop = PeriodicThread(
            f"{name}-watch",
            self.check,
            interval_seconds=settings.interval_seconds,
            log=log,
            failure="checking the database failed",
            join_seconds=settings.timeout_seconds + 1,
        )
        self._pending: _Attempt | None = None
        self._reachable = True

    def start(self) -> None:
        self._loop.start()

    def stop(self) -> None:
        self._loop.stop()

    def check(self) -> bool:
        """One check: True when the probe succeeded within the timeout."""
        # A probe still hanging from the last check is waited on again, not doubled.
        if self._pending is None or self._pending.done.is_set():
            self._pending = _Attempt(self._probe)
        attempt = self._pending
        if not attempt.done.wait(self._settings.timeout_seconds):
            self._report(False, "timeout")
            return False
        if attempt.error is not None:
            self._report(False, type(attempt.error).__name__)
            return False
        self._report(True, None)
        return True

    def _report(self, reachable: bool, error: str | None) -> None:
        if reachable == self._reachable:
            return
        self._reachable = reachable
        if reachable:
            log.info("database reachable again: serving", extra={"database": self._name})
        else:
            # The error's type only: driver messages may name hosts and users.
            log.warning(
                "database unreachable: not serving",
                extra={"database": self._name, "error": error},
            )
        self._on_change(reachable)


def watch_database(
    engine: Engine,
    set_serving: Callable[[bool], None],
    settings: DatabaseCheckSettings,
    *,
    name: str = "database",
) -> DatabaseWatcher | None:
    """A started watcher of engine that calls set_serving; None when checks are turned off."""
    if settings.interval_seconds <= 0:
        return None
    watcher = DatabaseWatcher(select_one(engine), set_serving, settings, name=name)
    watcher.start()
    return watcher
