"""A `limits` storage in one SQLite file: exact counts across the workers of one gateway host.

`limits` counts in process memory or in a shared server (Redis). Under gunicorn each worker
is a process of its own, so in-memory counting lets through `limit x workers` requests.
When no Redis is configured, the workers of one gateway instance share this file instead
(`local://`, resolved by `resolve_storage_uri`): the moving window is checked and the hit
recorded in one `BEGIN IMMEDIATE` transaction, which SQLite serialises between processes.
Several gateway instances still need Redis to share one count (docs/scaling.md).

Written here because `limits` ships no file-backed storage; it is small on purpose: one
table of hit times per key (trimmed as it is read), one of fixed-window counters.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

from limits.storage import MovingWindowSupport, Storage

SCHEME = "sqlite"
# The default: shared by the workers of this instance (a file), or this process alone.
LOCAL_URI = "local://"
# Set by the gunicorn master (gateway.instance_dir.on_starting) for its workers.
SHARED_DIR_VARIABLE = "AUTHGATE_GATEWAY_SHARED_DIR"
FILE_NAME = "rate-limits.sqlite3"
# Another worker holding the write lock is a matter of microseconds; past this, fail open.
BUSY_TIMEOUT_SECONDS = 0.5

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hits (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS hits_by_key ON hits (key, at);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    expires_at REAL NOT NULL
);
"""


def resolve_storage_uri(uri: str, environ: dict[str, str] | None = None) -> str:
    """`local://` -> the instance's shared file under gunicorn, else process memory."""
    if uri != LOCAL_URI:
        return uri
    shared = (os.environ if environ is None else environ).get(SHARED_DIR_VARIABLE)
    if not shared:
        return "memory://"  # one process: its memory is the whole count
    return f"{SCHEME}:///{Path(shared, FILE_NAME).resolve().as_posix().lstrip('/')}"


class SqliteStorage(Storage, MovingWindowSupport):
    """Moving-window hits in a SQLite file; one connection per thread, made on first use."""

    STORAGE_SCHEME = [SCHEME]  # noqa: RUF012 (the registry of `limits` reads this list)

    def __init__(
        self, uri: str, wrap_exceptions: bool = False, **options: float | str | bool
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        path = urlparse(uri).path
        if not path or path == "/":
            raise ValueError("a sqlite:// rate limit storage needs a file path")
        self._path = path
        self._local = threading.local()

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return sqlite3.Error

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            # Made lazily, so each forked worker and each thread opens its own.
            connection = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")  # counts need not survive a crash
            connection.executescript(_SCHEMA)
            self._local.connection = connection
        return connection

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        now = time.time()
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute("DELETE FROM hits WHERE key = ? AND at <= ?", (key, now - expiry))
            (count,) = connection.execute(
                "SELECT COUNT(*) FROM hits WHERE key = ?", (key,)
            ).fetchone()
            if count + amount > limit:
                connection.execute("COMMIT")
                return False
            connection.executemany(
                "INSERT INTO hits (key, at) VALUES (?, ?)", [(key, now)] * amount
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        since = time.time() - expiry
        oldest, count = (
            self._connection()
            .execute("SELECT MIN(at), COUNT(*) FROM hits WHERE key = ? AND at > ?", (key, since))
            .fetchone()
        )
        return (float(oldest) if oldest is not None else time.time(), int(count))

    # The fixed-window half of the Storage interface (a counter per key that restarts when
    # its window expires): the gateway uses the moving window, but any `limits` strategy
    # works on this storage.

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            row = connection.execute(
                "SELECT count, expires_at FROM counters WHERE key = ?", (key,)
            ).fetchone()
            if row is None or row[1] <= now:
                count = amount
                connection.execute(
                    "INSERT OR REPLACE INTO counters (key, count, expires_at) VALUES (?, ?, ?)",
                    (key, count, now + expiry),
                )
            else:
                count = int(row[0]) + amount
                connection.execute("UPDATE counters SET count = ? WHERE key = ?", (count, key))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return count

    def get(self, key: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT count FROM counters WHERE key = ? AND expires_at > ?", (key, time.time())
            )
            .fetchone()
        )
        return 0 if row is None else int(row[0])

    def get_expiry(self, key: str) -> float:
        row = (
            self._connection()
            .execute(
                "SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?",
                (key, time.time()),
            )
            .fetchone()
        )
        return time.time() if row is None else float(row[0])

    def check(self) -> bool:
        try:
            self._connection().execute("SELECT 1").fetchone()
        except sqlite3.Error:
            return False
        return True

    def reset(self) -> int | None:
        connection = self._connection()
        removed = connection.execute("DELETE FROM hits").rowcount
        return removed + connection.execute("DELETE FROM counters").rowcount

    def clear(self, key: str) -> None:
        connection = self._connection()
        connection.execute("DELETE FROM hits WHERE key = ?", (key,))
        connection.execute("DELETE FROM counters WHERE key = ?", (key,))
