"""Fixtures every test area shares: databases (SQLite and a real MariaDB/MySQL), keys, settings."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest
import sqlalchemy
from sqlalchemy.engine import make_url

from authgate_common.tokens import TokenSettings

pytest_plugins = [
    "tests.fixtures.auth_fixtures",
    "tests.fixtures.profile_fixtures",
    "tests.fixtures.gateway_fixtures",
    "tests.fixtures.services_fixtures",
    "tests.fixtures.tls_fixtures",
    "tests.fixtures.response_scan",
]

MYSQL_URL_VARIABLE = "AUTHGATE_TEST_MYSQL_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--step",
        choices=("all", "parallel", "serial"),
        default="all",
        help="`make test`'s steps: parallel = all but the tests marked serial, serial = only "
        "those (an option rather than -m, so that a -m of the caller still applies)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    step = config.getoption("--step")
    if step == "all":
        return
    wanted = step == "serial"
    keep = [item for item in items if (item.get_closest_marker("serial") is not None) == wanted]
    dropped = [item for item in items if item not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


DEFAULT_MYSQL_SERVER = "mysql+pymysql://root@127.0.0.1:3306/"


def services_required() -> bool:
    """Whether a missing MySQL or Redis fails the run: in CI it is never a skip."""
    return os.environ.get("CI", "").lower() in {"1", "true"} or bool(
        os.environ.get("AUTHGATE_REQUIRE_MYSQL")
    )


def skip_or_fail_without(message: str) -> NoReturn:
    """A missing MySQL or Redis: the test is skipped, or fails where they are required."""
    if services_required():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def mysql_server_url() -> str:
    """URL of a MySQL/MariaDB server (no database) that tests may create databases on."""
    url = os.environ.get(MYSQL_URL_VARIABLE, DEFAULT_MYSQL_SERVER)
    engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.OperationalError as exc:
        message = (
            f"MySQL/MariaDB is not reachable at {make_url(url).render_as_string()} "
            f"({type(exc.orig).__name__}). Start one, or point {MYSQL_URL_VARIABLE} at a server "
            "(e.g. mysql+pymysql://root@127.0.0.1:3306/) to run the MySQL tests."
        )
        skip_or_fail_without(message)
    finally:
        engine.dispose()
    return url


@contextlib.contextmanager
def temporary_mysql_database(server_url: str, label: str = "test") -> Iterator[str]:
    """A database created on the server for the caller alone, dropped afterwards; its URL."""
    name = f"authgate_{label}_{uuid.uuid4().hex[:12]}"
    server = sqlalchemy.create_engine(server_url)
    with server.begin() as connection:
        connection.execute(
            sqlalchemy.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        )
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with server.begin() as connection:
            _end_sessions_on(connection, name)
            connection.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS `{name}`"))
        server.dispose()


def _end_sessions_on(connection: sqlalchemy.Connection, database: str) -> None:
    """KILL what is still connected to database: a session whose client went away behind a
    stalled proxy keeps its locks until the server notices, and DROP DATABASE would wait
    for them (seen at a faults test's teardown)."""
    rows = connection.execute(
        sqlalchemy.text(
            "SELECT id FROM information_schema.processlist WHERE db = :db AND id <> CONNECTION_ID()"
        ),
        {"db": database},
    )
    for (session_id,) in rows.all():
        with contextlib.suppress(sqlalchemy.exc.DBAPIError):  # it may have ended meanwhile
            connection.execute(sqlalchemy.text(f"KILL {int(session_id)}"))


@pytest.fixture(scope="session")
def mysql_database(mysql_server_url: str) -> Iterator[str]:
    """A database of this test run's own, created at its start and dropped at its end."""
    with temporary_mysql_database(mysql_server_url) as url:
        yield url


def _drop_all_tables(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        metadata = sqlalchemy.MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty database, once on SQLite and once on MySQL; its tables are dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    url: str = request.getfixturevalue("mysql_database")
    _drop_all_tables(url)
    yield url
    _drop_all_tables(url)


@pytest.fixture(scope="session")
def token_settings() -> TokenSettings:
    return TokenSettings(issuer="authgate-test", audience="authgate-test-api")
