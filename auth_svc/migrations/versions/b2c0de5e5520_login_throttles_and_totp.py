"""login throttles per account and address, TOTP second factor

login_throttles holds the lockout per account and client address; users gets
failure_window_start for the account-wide lock (failed_logins and locked_until
now count failures from every address). mfa_totp (encrypted secrets),
mfa_recovery_codes (hashed) and mfa_challenges (hashed mfa_tokens) hold the
second factor.

Revision ID: b2c0de5e5520
Revises: a1c0de5e5510
Create Date: 2026-12-01 10:15:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "b2c0de5e5520"
down_revision: str | Sequence[str] | None = "a1c0de5e5510"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(
        name, sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=nullable
    )


def _user_id() -> sa.Column[object]:
    return sa.Column("user_id", sa.String(length=36), nullable=False)


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(_time("failure_window_start", nullable=True))
    # The per-account counts of before were one address's as much as any: start afresh.
    op.execute(sa.text("UPDATE users SET failed_logins = 0, locked_until = NULL"))
    op.create_table(
        "login_throttles",
        _user_id(),
        sa.Column("client", sa.String(length=45), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("in_flight", sa.Integer(), server_default="0", nullable=False),
        _time("claimed_at", nullable=True),
        _time("locked_until", nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "client"),
    )
    op.create_table(
        "mfa_totp",
        _user_id(),
        sa.Column("secret_ciphertext", sa.String(length=255), nullable=False),
        _time("created_at", nullable=False),
        _time("confirmed_at", nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "mfa_recovery_codes",
        _user_id(),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "code_hash"),
    )
    op.create_table(
        "mfa_challenges",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _user_id(),
        _time("created_at", nullable=False),
        _time("expires_at", nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("mfa_challenges", schema=None) as batch_op:
        batch_op.create_index("ix_mfa_challenges_user_id", ["user_id"], unique=False)


def downgrade() -> None:
    # Its index goes with it (MySQL refuses to drop an index a foreign key needs).
    op.drop_table("mfa_challenges")
    op.drop_table("mfa_recovery_codes")
    op.drop_table("mfa_totp")
    op.drop_table("login_throttles")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("failure_window_start")
