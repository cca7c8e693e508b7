"""Bulk users and profiles written straight into the services' tables (not through the API).

User n has a fixed id and name, so that the auth and profile databases agree without
reading each other: id `00000000-0000-4000-8000-<n, 12 digits>`, username `bench_<n>`.
On MariaDB rows come from the SEQUENCE engine (`INSERT ... SELECT FROM seq_a_to_b`); on
SQLite from executemany in chunks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

import sqlalchemy
from sqlalchemy.engine import make_url

CHUNK = 100_000
_CREATED = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)


def user_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def username(n: int) -> str:
    return f"bench_{n:07d}"


def count_users(auth_url: str) -> int:
    engine = sqlalchemy.create_engine(auth_url)
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(
                    sqlalchemy.text("SELECT COUNT(*) FROM users WHERE username LIKE 'bench\\_%'")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def seed(auth_url: str, profile_url: str, *, first: int, last: int, password_hash: str) -> None:
    """Users and profiles first..last (inclusive), all with the same password hash."""
    if make_url(auth_url).get_backend_name() == "sqlite":
        _seed_sqlite(auth_url, profile_url, first, last, password_hash)
    else:
        _seed_mysql(auth_url, profile_url, first, last, password_hash)


def _sqlite_path(url: str) -> str:
    database = make_url(url).database
    if not database:
        raise ValueError(f"not a SQLite file URL: {url}")
    return database


def _chunks(first: int, last: int) -> Iterator[range]:
    for start in range(first, last + 1, CHUNK):
        yield range(start, min(last, start + CHUNK - 1) + 1)


def _seed_sqlite(
    auth_url: str, profile_url: str, first: int, last: int, password_hash: str
) -> None:
    created = _CREATED.strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(_sqlite_path(auth_url), timeout=60) as auth:
        for chunk in _chunks(first, last):
            auth.executemany(
                "INSERT INTO users (id, username, username_normalized, password_hash, email,"
                " display_name, disabled, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, NULL, NULL, 0, ?, ?)",
                (
                    (user_id(n), username(n), username(n), password_hash, created, created)
                    for n in chunk
                ),
            )
            auth.commit()
    with sqlite3.connect(_sqlite_path(profile_url), timeout=60) as profiles:
        for chunk in _chunks(first, last):
            profiles.executemany(
                "INSERT INTO profiles (user_id, username, display_name, email, bio,"
                " created_at, updated_at) VALUES (?, ?, '', '', '', ?, ?)",
                ((user_id(n), username(n), created, created) for n in chunk),
            )
            profiles.commit()


_ID_SQL = "CONCAT('00000000-0000-4000-8000-', LPAD(seq, 12, '0'))"
_NAME_SQL = "CONCAT('bench_', LPAD(seq, 7, '0'))"
# Built from the constants above only; every value is a bound parameter. {a} and {b} are
# the integer bounds of the SEQUENCE table seq_a_to_b.
_USERS_FROM_SEQUENCE = (
    "INSERT INTO users (id, username, username_normalized, password_hash, email,"  # noqa: S608
    f" display_name, disabled, created_at, updated_at) SELECT {_ID_SQL}, {_NAME_SQL},"
    f" {_NAME_SQL}, :hash, NULL, NULL, 0, :created, :created FROM seq_{{a}}_to_{{b}}"
)
_PROFILES_FROM_SEQUENCE = (
    "INSERT INTO profiles (user_id, username, display_name, email, bio, created_at,"  # noqa: S608
    f" updated_at) SELECT {_ID_SQL}, {_NAME_SQL}, '', '', '', :created, :created"
    " FROM seq_{a}_to_{b}"
)


def _seed_mysql(auth_url: str, profile_url: str, first: int, last: int, password_hash: str) -> None:
    for url, statement in (
        (auth_url, _USERS_FROM_SEQUENCE),
        (profile_url, _PROFILES_FROM_SEQUENCE),
    ):
        engine = sqlalchemy.create_engine(url)
        try:
            for chunk in _chunks(first, last):
                with engine.begin() as connection:
                    connection.execute(
                        sqlalchemy.text(statement.format(a=chunk.start, b=chunk.stop - 1)),
                        {"hash": password_hash, "created": _CREATED},
                    )
        finally:
            engine.dispose()
