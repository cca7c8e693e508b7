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
    "tests.fixtures.scheduling",
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
            speaks_tls = connection.execute(sqlalchemy.text("SELECT @@have_ssl")).scalar() == "YES"
    except sqlalchemy.exc.OperationalError as exc:
        message = (
            f"MySQL/MariaDB is not reachable at {make_url(url).render_as_string()} "
            f"({type(exc.orig).__name__}). Start one, or point {MYSQL_URL_VARIABLE} at a server "
            "(e.g. mysql+pymysql://root@127.0.0.1:3306/) to run the MySQL tests."
        )
        skip_or_fail_without(message)
    finally:
        engine.dispose()
    parsed = make_url(url)
    if not speaks_tls and not any(option.startswith("ssl") for option in parsed.query):
        # PyMySQL would build an SSL context for every connection (26 ms each, thousands of
        # connections in a run) only to find the server speaks none.
        parsed = parsed.update_query_dict({"ssl_disabled": "true"})
    return parsed.render_as_string(hide_password=False)


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


class ReusedMysqlDatabase:
    """The test process's MariaDB database, handed from test to test in one of two states.

    Empty: no tables. Migrated: auth_svc's and profile_svc's tables at their head revisions,
    made by the real migrations once, holding only the rows the migrations wrote. Getting
    back to "migrated" after a test deletes its rows and restores those (milliseconds);
    dropping and migrating again each test cost a third of a second, over 250 tests.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        # The migrated tables and the rows the migrations wrote; None while not migrated.
        self._schema: sqlalchemy.MetaData | None = None
        self._seed: dict[str, list[dict[str, object]]] = {}

    def empty(self) -> None:
        """No tables at all: the state a migration test starts from."""
        with self._engine.begin() as connection:
            _end_sessions_on(connection, self._name)
        _drop_all_tables(self.url)
        self._schema = None

    def migrated(self) -> None:
        """Both schemas at head with only the migrations' own rows."""
        from auth_svc.migrations import AUTH_MIGRATIONS
        from profile_svc.migrations import PROFILE_MIGRATIONS

        if self._schema is not None and self._tables() == self._schema.tables.keys():
            self._restore(self._schema)
            return
        self.empty()
        AUTH_MIGRATIONS.upgrade(self.url)
        PROFILE_MIGRATIONS.upgrade(self.url)
        schema = sqlalchemy.MetaData()
        schema.reflect(self._engine)
        with self._engine.connect() as connection:
            self._seed = {
                name: [dict(row._mapping) for row in connection.execute(table.select())]
                for name, table in schema.tables.items()
            }
        self._schema = schema

    @property
    def _name(self) -> str:
        name = make_url(self.url).database
        assert name is not None
        return name

    def _tables(self) -> set[str]:
        return set(sqlalchemy.inspect(self._engine).get_table_names())

    def _restore(self, schema: sqlalchemy.MetaData) -> None:
        with self._engine.begin() as connection:
            # A session a test left behind (a server not stopped) would hold row locks.
            _end_sessions_on(connection, self._name)
            connection.execute(sqlalchemy.text("SET FOREIGN_KEY_CHECKS = 0"))
            counted = set(
                connection.execute(
                    sqlalchemy.text(
                        "SELECT table_name FROM information_schema.tables "
                        "WHERE table_schema = DATABASE() AND auto_increment > 1"
                    )
                ).scalars()
            )
            for name in counted:  # emptied, and ids start at 1 again, as in a new database
                quoted = connection.dialect.identifier_preparer.quote(name)
                connection.exec_driver_sql(f"TRUNCATE TABLE {quoted}")
            for name, table in schema.tables.items():
                if name not in counted:
                    connection.execute(table.delete())
                if self._seed[name]:
                    connection.execute(table.insert(), self._seed[name])
            connection.execute(sqlalchemy.text("SET FOREIGN_KEY_CHECKS = 1"))

    def dispose(self) -> None:
        self._engine.dispose()


@pytest.fixture(scope="session")
def reused_mysql_database(mysql_database: str) -> Iterator[ReusedMysqlDatabase]:
    database = ReusedMysqlDatabase(mysql_database)
    yield database
    database.dispose()


def _drop_all_tables(url: str) -> None:
    engine = sqlalchemy.create_engine(url)
    try:
        metadata = sqlalchemy.MetaData()
        metadata.reflect(engine)
        metadata.drop_all(engine)
    finally:
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database of the test's own, once on SQLite and once on MySQL.

    SQLite: a new, empty file. MySQL: the test process's database, migrated (both
    services' schemas at head, no rows but the migrations' own), or with no tables at
    all for a test marked `empty_database`.
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    database: ReusedMysqlDatabase = request.getfixturevalue("reused_mysql_database")
    if request.node.get_closest_marker("empty_database") is not None:
        database.empty()
    else:
        database.migrated()
    return database.url


@pytest.fixture(scope="session")
def token_settings() -> TokenSettings:
    return TokenSettings(issuer="authgate-test", audience="authgate-test-api")
