"""Each service's Alembic history builds exactly the tables its models describe (SQLite, MariaDB).

The comparison with the models is what fails when a model changes without a migration.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from sqlalchemy import Column, Engine, String, Table

from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.migrations import MigrationSet, SchemaNotCurrent, SchemaState
from profile_svc.migrations import PROFILE_MIGRATIONS

# Migrations start from a database without tables (on MySQL too: see database_url).
pytestmark = pytest.mark.empty_database

HISTORIES = {"auth": AUTH_MIGRATIONS, "profile": PROFILE_MIGRATIONS}


@pytest.fixture(params=sorted(HISTORIES))
def migrations(request: pytest.FixtureRequest) -> MigrationSet:
    return HISTORIES[request.param]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(database_url)
    yield engine
    engine.dispose()


def table_names(engine: Engine) -> set[str]:
    return set(sqlalchemy.inspect(engine).get_table_names())


def differences(migrations: MigrationSet, engine: Engine) -> list[object]:
    with engine.connect() as connection:
        return migrations.differences(connection)


def state(migrations: MigrationSet, engine: Engine) -> SchemaState:
    with engine.connect() as connection:
        return migrations.status(connection).state


def test_upgrade_from_empty_creates_exactly_the_tables_of_the_models(
    migrations: MigrationSet, database_url: str, engine: Engine
) -> None:
    migrations.upgrade(database_url)

    assert table_names(engine) == {*migrations.metadata.tables, migrations.version_table}
    assert differences(migrations, engine) == []
    assert state(migrations, engine) is SchemaState.CURRENT


def test_downgrade_to_base_removes_the_tables_and_upgrade_builds_them_again(
    migrations: MigrationSet, database_url: str, engine: Engine
) -> None:
    migrations.upgrade(database_url)

    migrations.downgrade(database_url, "base")
    assert table_names(engine) == {migrations.version_table}
    assert state(migrations, engine) is SchemaState.EMPTY

    migrations.upgrade(database_url)
    assert differences(migrations, engine) == []


def test_both_histories_share_one_database_without_touching_each_other(
    database_url: str, engine: Engine
) -> None:
    AUTH_MIGRATIONS.upgrade(database_url)
    PROFILE_MIGRATIONS.upgrade(database_url)
    assert differences(AUTH_MIGRATIONS, engine) == []
    assert differences(PROFILE_MIGRATIONS, engine) == []

    AUTH_MIGRATIONS.downgrade(database_url, "base")

    assert state(AUTH_MIGRATIONS, engine) is SchemaState.EMPTY
    assert state(PROFILE_MIGRATIONS, engine) is SchemaState.CURRENT
    assert "profiles" in table_names(engine)


def test_each_history_is_one_line_with_one_head(migrations: MigrationSet) -> None:
    scripts = migrations.scripts()
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1
    assert all(not script.is_merge_point for script in scripts.walk_revisions())


def test_version_tables_differ_between_services() -> None:
    assert AUTH_MIGRATIONS.version_table != PROFILE_MIGRATIONS.version_table


def test_require_current_refuses_an_empty_database_and_names_make_migrate(
    migrations: MigrationSet, engine: Engine
) -> None:
    with pytest.raises(SchemaNotCurrent) as refused:
        migrations.require_current(engine)

    message = str(refused.value)
    assert "not migrated" in message
    assert "make migrate" in message
    assert "\n" not in message


def test_require_current_refuses_a_revision_the_code_does_not_know(
    migrations: MigrationSet, database_url: str, engine: Engine
) -> None:
    migrations.upgrade(database_url)
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(f"UPDATE {migrations.version_table} SET version_num = 'from_future'")  # noqa: S608
        )

    with pytest.raises(SchemaNotCurrent, match="does not know"):
        migrations.require_current(engine)


# --- A history with a second revision: outdated schemas, and the autogenerate workflow ---


def copied_history(
    migrations: MigrationSet, tmp_path: Path, metadata: sqlalchemy.MetaData
) -> MigrationSet:
    """The service's scripts copied to tmp_path, so a test can add revisions to them."""
    folder = tmp_path / "migrations"
    source = Path(migrations.scripts().dir)
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return MigrationSet(migrations.service, str(folder), migrations.version_table, metadata)


def with_extra_column(metadata: sqlalchemy.MetaData) -> sqlalchemy.MetaData:
    """A copy of the models with one more nullable column on their first table."""
    changed = sqlalchemy.MetaData()
    for table in metadata.sorted_tables:
        table.to_metadata(changed)
    first: Table = changed.tables[metadata.sorted_tables[0].name]
    first.append_column(Column("nickname", String(40), nullable=True))
    return changed


def test_a_database_behind_the_head_is_outdated_until_upgraded(
    migrations: MigrationSet, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    migrations.upgrade(database_url)
    longer = copied_history(migrations, tmp_path, migrations.metadata)
    longer.revision(database_url, "nothing yet", autogenerate=False)

    assert state(longer, engine) is SchemaState.OUTDATED
    with pytest.raises(SchemaNotCurrent, match=r"outdated.*make migrate"):
        longer.require_current(engine)

    longer.upgrade(database_url)
    longer.require_current(engine)


def test_a_model_change_without_a_revision_shows_as_a_difference_and_autogenerate_fixes_it(
    migrations: MigrationSet, database_url: str, engine: Engine, tmp_path: Path
) -> None:
    migrations.upgrade(database_url)
    changed = copied_history(migrations, tmp_path, with_extra_column(migrations.metadata))
    assert differences(changed, engine) != []

    script = changed.revision(database_url, "add nickname")
    assert "models" not in script.read_text()  # revisions never import the models
    changed.upgrade(database_url)

    assert differences(changed, engine) == []
    changed.downgrade(database_url, "-1")
    assert differences(migrations, engine) == []
