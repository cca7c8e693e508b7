"""Revision 73a329c1e4fa on SQLite and MariaDB: sessions that exist before it are kept."""

from __future__ import annotations

import pytest
import sqlalchemy

from auth_svc.migrations import AUTH_MIGRATIONS

# Migrations start from a database without tables (on MySQL too: see database_url).
pytestmark = pytest.mark.empty_database

BEFORE = "7385b57386e8"
SESSIONS = "73a329c1e4fa"


def test_existing_refresh_families_become_sessions(database_url: str) -> None:
    AUTH_MIGRATIONS.upgrade(database_url, BEFORE)
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.text(
                    "INSERT INTO users (id, username, username_normalized, password_hash, "
                    "disabled, created_at, updated_at, failed_logins) VALUES "
                    "('u-1', 'alice', 'alice', 'h', 0, '2026-01-01 00:00:00', "
                    "'2026-01-01 00:00:00', 0)"
                )
            )
            for token_id, parent, issued in (
                ("t-1", None, "2026-01-02 00:00:00"),
                ("t-2", "t-1", "2026-01-03 00:00:00"),
            ):
                connection.execute(
                    sqlalchemy.text(
                        "INSERT INTO refresh_tokens (id, token_hash, family_id, user_id, "
                        "parent_id, issued_at, expires_at, family_expires_at) VALUES "
                        "(:id, :hash, 'family-1', 'u-1', :parent, :issued, "
                        "'2027-01-01 00:00:00', '2027-01-01 00:00:00')"
                    ),
                    {"id": token_id, "hash": token_id * 8, "parent": parent, "issued": issued},
                )

        AUTH_MIGRATIONS.upgrade(database_url, SESSIONS)

        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT * FROM sessions")).all()
        assert len(rows) == 1
        (row,) = rows
        assert (row.id, row.user_id, row.amr) == ("family-1", "u-1", '["pwd"]')
        assert str(row.created_at).startswith("2026-01-02")
        assert str(row.last_used_at).startswith("2026-01-03")
        assert row.client_ip is None
        AUTH_MIGRATIONS.downgrade(database_url, BEFORE)
        with engine.connect() as connection:
            tables = set(sqlalchemy.inspect(connection).get_table_names())
        assert "sessions" not in tables
        assert "profile_deletions" not in tables
    finally:
        engine.dispose()
