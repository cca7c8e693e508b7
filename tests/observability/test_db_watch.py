"""The database watcher: verdicts, timeouts, transitions, and its settings."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy

from authgate_common.config import ConfigError, Env
from authgate_common.db_watch import (
    DatabaseCheckSettings,
    DatabaseWatcher,
    select_one,
    watch_database,
)
from tests.harness import wait_until

QUICK = DatabaseCheckSettings(interval_seconds=0.05, timeout_seconds=0.2)


class Switchable:
    """A probe that succeeds, fails or hangs as the test says."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.release = threading.Event()

    def __call__(self) -> None:
        if self.mode == "fail":
            raise ConnectionRefusedError("down")
        if self.mode == "hang":
            self.release.wait(5)


def watcher_of(probe: Switchable, changes: list[bool]) -> DatabaseWatcher:
    return DatabaseWatcher(probe, changes.append, QUICK)


def test_a_succeeding_probe_changes_nothing() -> None:
    changes: list[bool] = []
    watcher = watcher_of(Switchable(), changes)
    assert watcher.check() is True
    assert changes == []


def test_a_failing_probe_reports_unreachable_once() -> None:
    probe, changes = Switchable(), []  # type: ignore[var-annotated]
    probe.mode = "fail"
    watcher = watcher_of(probe, changes)
    assert watcher.check() is False
    assert watcher.check() is False
    assert changes == [False]


def test_a_probe_slower_than_the_timeout_reports_unreachable() -> None:
    probe, changes = Switchable(), []  # type: ignore[var-annotated]
    probe.mode = "hang"
    watcher = watcher_of(probe, changes)
    try:
        assert watcher.check() is False
        assert changes == [False]
    finally:
        probe.release.set()


def test_a_hanging_probe_is_waited_on_again_not_started_twice() -> None:
    calls: list[int] = []
    release = threading.Event()

    def hanging() -> None:
        calls.append(1)
        release.wait(5)

    watcher = DatabaseWatcher(hanging, lambda _: None, QUICK)
    try:
        watcher.check()
        watcher.check()
        assert len(calls) == 1
    finally:
        release.set()


def test_recovery_reports_reachable_again() -> None:
    probe, changes = Switchable(), []  # type: ignore[var-annotated]
    probe.mode = "fail"
    watcher = watcher_of(probe, changes)
    watcher.check()
    probe.mode = "ok"
    assert watcher.check() is True
    assert changes == [False, True]


def test_the_started_watcher_checks_in_the_background_until_stopped() -> None:
    probe, changes = Switchable(), []  # type: ignore[var-annotated]
    watcher = watcher_of(probe, changes)
    watcher.start()
    try:
        probe.mode = "fail"
        assert wait_until(lambda: changes == [False], within=2)
        probe.mode = "ok"
        assert wait_until(lambda: changes == [False, True], within=2)
    finally:
        watcher.stop()
    probe.mode = "fail"
    threading.Event().wait(0.3)
    assert changes == [False, True]


def test_select_one_probes_a_real_engine(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        select_one(engine)()
    finally:
        engine.dispose()


def test_an_interval_of_zero_turns_the_watch_off(tmp_path: Path) -> None:
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        off = DatabaseCheckSettings(interval_seconds=0)
        assert watch_database(engine, lambda _: None, off) is None
    finally:
        engine.dispose()


def test_settings_default_to_every_five_seconds_with_a_two_second_timeout() -> None:
    assert DatabaseCheckSettings.from_env(Env({})) == DatabaseCheckSettings(5.0, 2.0)


def test_settings_are_read_from_the_environment() -> None:
    env = Env({"DB_CHECK_INTERVAL_SECONDS": "1.5", "DB_CHECK_TIMEOUT_SECONDS": "0.5"})
    assert DatabaseCheckSettings.from_env(env) == DatabaseCheckSettings(1.5, 0.5)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_a_bad_timeout_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigError, match="DB_CHECK_TIMEOUT_SECONDS"):
        DatabaseCheckSettings.from_env(Env({"DB_CHECK_TIMEOUT_SECONDS": value}))
