"""The SQLite rate-limit storage: one exact count for every process that shares its file."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter

from gateway.rate_limit_storage import (
    LOCAL_URI,
    SHARED_DIR_VARIABLE,
    SqliteStorage,
    resolve_storage_uri,
)
from gateway.rate_limiter import RateLimiter
from gateway.rate_limits import parse_rate_limit

LIMIT = RateLimitItemPerMinute(10)


def storage_uri(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'limits.sqlite3').as_posix().lstrip('/')}"


def test_local_is_process_memory_outside_gunicorn() -> None:
    assert resolve_storage_uri(LOCAL_URI, {}) == "memory://"


def test_local_is_the_instance_file_under_gunicorn(tmp_path: Path) -> None:
    uri = resolve_storage_uri(LOCAL_URI, {SHARED_DIR_VARIABLE: str(tmp_path)})
    assert uri == f"sqlite:///{(tmp_path / 'rate-limits.sqlite3').as_posix().lstrip('/')}"


def test_other_uris_are_kept() -> None:
    assert resolve_storage_uri("redis://127.0.0.1:6379/0", {}) == "redis://127.0.0.1:6379/0"


def test_the_sqlite_scheme_is_registered_with_limits(tmp_path: Path) -> None:
    assert isinstance(storage_from_string(storage_uri(tmp_path)), SqliteStorage)


def test_the_moving_window_allows_exactly_the_limit(tmp_path: Path) -> None:
    strategy = MovingWindowRateLimiter(storage_from_string(storage_uri(tmp_path)))
    outcomes = [strategy.hit(LIMIT, "login", "198.51.100.1") for _ in range(11)]
    assert outcomes == [True] * 10 + [False]
    assert strategy.hit(LIMIT, "login", "198.51.100.2")


def test_the_window_reports_its_start_and_count(tmp_path: Path) -> None:
    strategy = MovingWindowRateLimiter(storage_from_string(storage_uri(tmp_path)))
    for _ in range(3):
        strategy.hit(LIMIT, "login", "client")
    stats = strategy.get_window_stats(LIMIT, "login", "client")
    assert stats.remaining == 7


def test_the_fixed_window_counts_too(tmp_path: Path) -> None:
    strategy = FixedWindowRateLimiter(storage_from_string(storage_uri(tmp_path)))
    outcomes = [strategy.hit(LIMIT, "register", "client") for _ in range(11)]
    assert outcomes == [True] * 10 + [False]
    strategy.clear(LIMIT, "register", "client")
    assert strategy.hit(LIMIT, "register", "client")


def _hit_many(uri: str, hits: int, results: multiprocessing.Queue[int]) -> None:
    limiter = RateLimiter(uri, key_prefix="race")
    items = parse_rate_limit("25/minute")
    allowed = sum(1 for _ in range(hits) if limiter.hit(items, "login", "client") is None)
    results.put(allowed)


def test_processes_sharing_the_file_are_counted_exactly(tmp_path: Path) -> None:
    """Four processes (as gunicorn workers are) race 20 hits each at a limit of 25."""
    context = multiprocessing.get_context("fork")
    results: multiprocessing.Queue[int] = context.Queue()
    workers = [
        context.Process(target=_hit_many, args=(storage_uri(tmp_path), 20, results))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    allowed = sum(results.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert allowed == 25


def test_a_storage_failure_is_reported(tmp_path: Path) -> None:
    failures: list[None] = []
    unusable = tmp_path / "missing-dir" / "limits.sqlite3"  # sqlite cannot create the folder
    limiter = RateLimiter(
        f"sqlite:///{unusable.as_posix().lstrip('/')}",
        key_prefix="x",
        on_storage_failure=lambda: failures.append(None),
    )
    assert limiter.hit(parse_rate_limit("1/minute"), "login", "client") is None
    assert failures == [None]


def test_a_path_is_required() -> None:
    with pytest.raises(ValueError, match="file path"):
        SqliteStorage("sqlite://")
