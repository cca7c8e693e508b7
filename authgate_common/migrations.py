"""Alembic migrations per service, run from code: upgrade, inspect, compare, and the start check.

Each service has its own history (`<service>/migrations/`) and its own version table
(`alembic_version_<name>`), so two services can even share one database. Nothing here
reads an alembic.ini: the Config is built in code and points at the installed package.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import (
    Connection,
    Engine,
    MetaData,
    String,
    column,
    create_engine,
    inspect,
    select,
    table,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

MIGRATE_HINT = "run `make migrate`"


class SchemaNotCurrent(RuntimeError):
    """The database schema is not at the revision this code needs; the message says what to do."""


class SchemaState(Enum):
    CURRENT = "current"
    EMPTY = "not migrated"
    OUTDATED = "outdated"
    UNKNOWN = "at a revision this code does not know"


@dataclass(frozen=True)
class SchemaStatus:
    state: SchemaState
    database_revisions: tuple[str, ...]
    code_heads: tuple[str, ...]


@dataclass(frozen=True)
class MigrationSet:
    """One service's migration history: where its scripts live and which tables it owns."""

    service: str  # e.g. "auth_svc", used in messages
    script_location: str  # "package:folder", resolved inside the installed package
    version_table: str
    metadata: MetaData

    def config(self, connection: Connection | None = None, stdout: Any = None) -> Config:
        config = Config(stdout=stdout or io.StringIO())
        config.set_main_option("script_location", self.script_location)
        config.set_main_option("path_separator", "os")
        config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
        config.attributes["migrations"] = self
        config.attributes["connection"] = connection
        return config

    def scripts(self) -> ScriptDirectory:
        return ScriptDirectory.from_config(self.config())

    def upgrade(self, database_url: str, revision: str = "head") -> None:
        with _connection(database_url) as connection:
            self._refuse_unrecorded_tables(connection)
            command.upgrade(self.config(connection), revision)

    def stamp(self, database_url: str, revision: str) -> None:
        """Record `revision` as applied without running anything (adopting existing tables)."""
        with _connection(database_url) as connection:
            command.stamp(self.config(connection), revision)

    def downgrade(self, database_url: str, revision: str) -> None:
        with _connection(database_url) as connection:
            command.downgrade(self.config(connection), revision)

    def revision(self, database_url: str, message: str, *, autogenerate: bool = True) -> Path:
        """Write a new revision script (compared against the database when autogenerating)."""
        with _connection(database_url) as connection:
            script = command.revision(
                self.config(connection), message=message, autogenerate=autogenerate
            )
        # One head gives one script.
        assert script is not None
        assert not isinstance(script, list)
        path = Path(script.path)
        _tidy(path)
        return path

    def status(self, connection: Connection) -> SchemaStatus:
        found = self.database_revisions(connection)
        scripts = self.scripts()
        heads = tuple(sorted(scripts.get_heads()))
        known = {script.revision for script in scripts.walk_revisions()}
        if set(found) == set(heads):
            state = SchemaState.CURRENT
        elif not found:
            state = SchemaState.EMPTY
        elif set(found) - known:
            state = SchemaState.UNKNOWN
        else:
            state = SchemaState.OUTDATED
        return SchemaStatus(state, found, heads)

    def database_revisions(self, connection: Connection) -> tuple[str, ...]:
        """The revisions recorded in the version table; () when it does not exist."""
        # Read directly: alembic's MigrationContext logs on every service start otherwise.
        if not inspect(connection).has_table(self.version_table):
            return ()
        version_num = column("version_num", String)
        rows = connection.execute(select(version_num).select_from(table(self.version_table)))
        return tuple(sorted(rows.scalars()))

    def _refuse_unrecorded_tables(self, connection: Connection) -> None:
        # Tables made before migrations existed (by create_all): creating them again would
        # fail halfway, and guessing their revision could skip a change.
        if self.database_revisions(connection):
            return
        present = set(inspect(connection).get_table_names()) & set(self.metadata.tables)
        if present:
            base = self.scripts().get_base()
            raise CommandError(
                f"tables {', '.join(sorted(present))} exist but {self.version_table} records no "
                f"revision: a database made before migrations. If it matches the initial "
                f"revision, record it with `python -m {self.service}.migrate stamp {base}`, "
                "then upgrade"
            )

    def require_current(self, engine: Engine) -> None:
        """Raise SchemaNotCurrent unless the database is at this code's head revision."""
        with engine.connect() as connection:
            status = self.status(connection)
        if status.state is SchemaState.CURRENT:
            return
        found = ", ".join(status.database_revisions) or "none"
        needed = ", ".join(status.code_heads)
        advice = (
            "deploy the code that matches it"
            if status.state is SchemaState.UNKNOWN
            else f"{MIGRATE_HINT} (or `python -m {self.service}.migrate upgrade`)"
        )
        raise SchemaNotCurrent(
            f"the database schema is {status.state.value} (database revision {found}, "
            f"this code needs {needed}): {advice}"
        )

    def differences(self, connection: Connection) -> list[Any]:
        """What autogenerate would change to make the database match the models ([] = none)."""
        migration = MigrationContext.configure(connection, opts=self.context_options(connection))
        return list(compare_metadata(migration, self.metadata))

    def context_options(self, connection: Connection) -> dict[str, Any]:
        """The options env.py configures alembic with (also used for comparing)."""
        return {
            "version_table": self.version_table,
            "target_metadata": self.metadata,
            "compare_type": True,
            "compare_server_default": True,
            # SQLite alters tables by copying them ("batch" mode).
            "render_as_batch": connection.dialect.name == "sqlite",
            "include_name": self._owns,
            "render_item": render_type_decorator,
        }

    def _owns(self, name: str | None, type_: str, _parents: Any) -> bool:
        # Tables of another service (or its version table) may share the database: not ours.
        return type_ != "table" or name in self.metadata.tables


def run_env() -> None:
    """The body of every service's env.py: migrate on the connection the caller opened."""
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported; migrate a database")
    migrations: MigrationSet = context.config.attributes["migrations"]
    connection: Connection | None = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through authgate_common.migrations.MigrationSet")
    context.configure(connection=connection, **migrations.context_options(connection))
    with context.begin_transaction():
        context.run_migrations()


def render_type_decorator(
    type_: str, obj: Any, autogen_context: AutogenContext
) -> str | Literal[False]:
    """Render a model's own column type as plain SQLAlchemy types, never as an import of models.

    A revision must keep meaning what it meant when written, whatever the models become.
    """
    if type_ != "type" or not isinstance(obj, TypeDecorator):
        return False
    rendered = f"sa.{obj.impl_instance!r}"
    on_mysql = obj.load_dialect_impl(mysql.dialect())
    if type(on_mysql).__module__.startswith("sqlalchemy.dialects.mysql"):
        if autogen_context.imports is not None:
            autogen_context.imports.add("from sqlalchemy.dialects import mysql")
        rendered += f'.with_variant(mysql.{on_mysql!r}, "mysql")'
    return rendered


def _tidy(path: Path) -> None:
    """Lint and format a new script with the project's ruff, when installed (development)."""
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.is_file():
        subprocess.run([str(ruff), "check", "--fix", "--quiet", str(path)], check=False)
        subprocess.run([str(ruff), "format", "--quiet", str(path)], check=False)


@contextmanager
def _connection(database_url: str) -> Iterator[Connection]:
    """A connection of its own for migrating: no pool, no pragmas.

    SQLite keeps foreign keys off here (its default): batch migrations copy and drop
    tables, which with enforcement on would cascade deletes.
    """
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            yield connection
            connection.commit()
    finally:
        engine.dispose()
