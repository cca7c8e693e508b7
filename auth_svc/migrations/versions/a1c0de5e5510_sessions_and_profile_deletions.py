"""sessions and profile deletions

`sessions` describes each session (refresh-token family) for its owner: when and from
where it began, when it was last refreshed, how the user authenticated. Families that
exist already get a row from their tokens (address and User-Agent unknown).
`profile_deletions` is the outbox of account deletions the profile service has yet to
take.

Revision ID: a1c0de5e5510
Revises: c3c0de5e5530
Create Date: 2026-12-01 09:55:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "a1c0de5e5510"
down_revision: str | Sequence[str] | None = "c3c0de5e5530"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc_datetime() -> sa.DateTime:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("last_used_at", _utc_datetime(), nullable=False),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("amr", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    # Every login so far was by password.
    op.execute(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, amr) "
        "SELECT family_id, MIN(user_id), MIN(issued_at), MAX(issued_at), '[\"pwd\"]' "
        "FROM refresh_tokens GROUP BY family_id"
    )
    op.create_table(
        "profile_deletions",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_index(
        "ix_profile_deletions_next_attempt_at", "profile_deletions", ["next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("profile_deletions")  # its index goes with it
    op.drop_table("sessions")
