"""`python -m auth_svc.migrate` / `python -m profile_svc.migrate` and `make migrate`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy

from auth_svc import migrate as auth_migrate
from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.config import Env
from authgate_common.migrate_cli import main
from authgate_common.migrations import MigrationSet
from profile_svc import migrate as profile_migrate
from profile_svc.migrations import PROFILE_MIGRATIONS

# Migrations start from a database without tables (on MySQL too: see database_url).
pytestmark = pytest.mark.empty_database

ROOT = Path(__file__).resolve().parents[2]
CLIS = {
    "auth": (AUTH_MIGRATIONS, auth_migrate.database_url, "AUTH_DATABASE_URL"),
    "profile": (PROFILE_MIGRATIONS, profile_migrate.database_url, "PROFILE_DATABASE_URL"),
}


def run(service: str, database_url: str, *argv: str) -> int:
    migrations, url_from_env, variable = CLIS[service]
    return main(migrations, url_from_env, list(argv), Env({variable: database_url}))


def revision_of(migrations: MigrationSet, url: str) -> str | None:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            revisions = migrations.status(connection).database_revisions
    finally:
        engine.dispose()
    return revisions[0] if revisions else None


@pytest.mark.parametrize("service", sorted(CLIS))
def test_upgrade_then_current_and_check_report_the_head(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The CLI on SQLite only: tests/migrations/test_histories.py covers both backends.
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    head = CLIS[service][0].scripts().get_current_head()
    assert head is not None

    assert run(service, database_url, "upgrade") == 0
    assert run(service, database_url, "current") == 0
    assert run(service, database_url, "check") == 0

    out = capsys.readouterr().out
    assert f"is at {head} (current)" in out
    assert "matches the models" in out


@pytest.mark.parametrize("service", sorted(CLIS))
def test_check_fails_on_an_unmigrated_database(
    service: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(service, f"sqlite:///{tmp_path / 'empty.db'}", "check") == 1
    assert "not migrated" in capsys.readouterr().err


def test_downgrade_to_base_then_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'auth.db'}"
    assert run("auth", url, "upgrade") == 0
    assert run("auth", url, "downgrade", "base") == 0
    assert revision_of(AUTH_MIGRATIONS, url) is None
    assert run("auth", url, "upgrade") == 0
    assert revision_of(AUTH_MIGRATIONS, url) == AUTH_MIGRATIONS.scripts().get_current_head()


def test_an_invalid_database_url_is_a_configuration_error_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run("profile", "postgresql://db/x", "upgrade") == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "configuration error: PROFILE_DATABASE_URL" in err


def test_an_unknown_revision_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("auth", f"sqlite:///{tmp_path / 'a.db'}", "upgrade", "nonexistent") == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert "nonexistent" in err


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("service", sorted(CLIS))
def test_an_unreachable_database_fails_with_one_line_and_no_password(
    service: str, capsys: pytest.CaptureFixture[str]
) -> None:
    unreachable = f"mysql+pymysql://root:hunter2secret@127.0.0.1:{closed_port()}/x"

    assert run(service, unreachable, "upgrade") == 1

    captured = capsys.readouterr()
    assert captured.err.strip().count("\n") == 0
    assert "database error on" in captured.err
    assert "hunter2secret" not in captured.err + captured.out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_migrate_upgrades_both_configured_databases(tmp_path: Path) -> None:
    # Through the real entry points: python -m auth_svc.migrate, python -m profile_svc.migrate.
    auth_url = f"sqlite:///{tmp_path / 'auth.db'}"
    profile_url = f"sqlite:///{tmp_path / 'profile.db'}"
    done = subprocess.run(
        # STAMP= skips the install step: this interpreter's environment is the one to use.
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "migrate",
            "STAMP=",
            f"BIN={Path(sys.executable).parent}",
        ],
        env={**os.environ, "AUTH_DATABASE_URL": auth_url, "PROFILE_DATABASE_URL": profile_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert revision_of(AUTH_MIGRATIONS, auth_url) == AUTH_MIGRATIONS.scripts().get_current_head()
    assert (
        revision_of(PROFILE_MIGRATIONS, profile_url)
        == PROFILE_MIGRATIONS.scripts().get_current_head()
    )


def test_tables_made_before_migrations_are_refused_until_stamped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database_url = f"sqlite:///{tmp_path / 'made-by-create-all.db'}"
    initial = AUTH_MIGRATIONS.scripts().get_base()
    assert initial is not None
    # What the services' create_all made before migrations: the initial tables, no version.
    AUTH_MIGRATIONS.upgrade(database_url, initial)
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text(f"DROP TABLE {AUTH_MIGRATIONS.version_table}"))
    engine.dispose()

    assert run("auth", database_url, "upgrade") == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err]
    assert f"python -m auth_svc.migrate stamp {initial}" in err

    assert run("auth", database_url, "stamp", str(initial)) == 0
    assert run("auth", database_url, "upgrade") == 0
    assert run("auth", database_url, "check") == 0
