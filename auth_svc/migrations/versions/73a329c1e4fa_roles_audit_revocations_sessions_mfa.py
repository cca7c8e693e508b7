"""roles, audit, revocations, sessions, login throttles and TOTP

- user_roles holds each user's role names; audit_events the append-only audit log
  (pruned by age); users gets an index for paging in registration order.
- revocations holds what the auth service pushes to the token verifiers (users,
  sessions and signing keys no longer honoured; a revocation of kind `roles` carries
  the user's roles right after the change); revocation_sequence has the one row whose
  lock orders the ids of concurrent writers.
- sessions describes each session (refresh-token family) for its owner: when and from
  where it began, when it was last refreshed, how the user authenticated. Families that
  exist already get a row from their tokens (address and User-Agent unknown).
  profile_deletions is the outbox of account deletions the profile service has yet to
  take.
- login_throttles holds the lockout per account and client address; users gets
  failure_window_start for the account-wide lock (failed_logins and locked_until now
  count failures from every address). mfa_totp (encrypted secrets), mfa_recovery_codes
  (hashed) and mfa_challenges (hashed mfa_tokens) hold the second factor.

Revision ID: 73a329c1e4fa
Revises: 7385b57386e8
Create Date: 2026-12-01 08:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "73a329c1e4fa"
down_revision: str | Sequence[str] | None = "7385b57386e8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# auth_svc.models.REVOCATION_SEQUENCE when this was written (revisions never import models).
REVOCATION_SEQUENCE = "revocations"


def _utc_datetime() -> sa.DateTime:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")


def _user_id(*, nullable: bool = False) -> sa.Column[str]:
    return sa.Column("user_id", sa.String(length=36), nullable=nullable)


def _owned_by_user() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE")


def upgrade() -> None:
    _create_roles_and_audit()
    _create_revocations()
    _create_sessions_and_profile_deletions()
    _create_login_throttles_and_totp()


def _create_roles_and_audit() -> None:
    op.create_index("ix_users_created_at_id", "users", ["created_at", "id"])
    op.create_table(
        "user_roles",
        _user_id(),
        sa.Column("role", sa.String(length=64), nullable=False),
        _owned_by_user(),
        sa.PrimaryKeyConstraint("user_id", "role"),
    )
    op.create_table(
        "audit_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("type", sa.String(length=32), nullable=False),
        _user_id(nullable=True),
        sa.Column("actor_id", sa.String(length=36), nullable=True),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_events_user_id_id", "audit_events", ["user_id", "id"])
    op.create_index("ix_audit_events_type_id", "audit_events", ["type", "id"])
    op.create_index("ix_audit_events_created_at", "audit_events", ["created_at"])


def _create_revocations() -> None:
    sequence = op.create_table(
        "revocation_sequence",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(sequence, [{"name": REVOCATION_SEQUENCE, "last_id": 0}])
    op.create_table(
        "revocations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column("not_before", _utc_datetime(), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("expires_at", _utc_datetime(), nullable=False),
        sa.Column("roles", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_revocations_expires_at", "revocations", ["expires_at"])
    op.create_index("ix_revocations_kind_subject", "revocations", ["kind", "subject"])


def _create_sessions_and_profile_deletions() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        _user_id(),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("last_used_at", _utc_datetime(), nullable=False),
        sa.Column("client_ip", sa.String(length=45), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.Column("amr", sa.String(length=64), nullable=False),
        _owned_by_user(),
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
        _user_id(),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", _utc_datetime(), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_index(
        "ix_profile_deletions_next_attempt_at", "profile_deletions", ["next_attempt_at"]
    )


def _create_login_throttles_and_totp() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("failure_window_start", _utc_datetime(), nullable=True))
    # The per-account counts of before were one address's as much as any: start afresh.
    op.execute(sa.text("UPDATE users SET failed_logins = 0, locked_until = NULL"))
    op.create_table(
        "login_throttles",
        _user_id(),
        sa.Column("client", sa.String(length=45), nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("in_flight", sa.Integer(), server_default="0", nullable=False),
        sa.Column("claimed_at", _utc_datetime(), nullable=True),
        sa.Column("locked_until", _utc_datetime(), nullable=True),
        _owned_by_user(),
        sa.PrimaryKeyConstraint("user_id", "client"),
    )
    op.create_table(
        "mfa_totp",
        _user_id(),
        sa.Column("secret_ciphertext", sa.String(length=255), nullable=False),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("confirmed_at", _utc_datetime(), nullable=True),
        sa.Column("last_used_step", sa.BigInteger(), nullable=True),
        _owned_by_user(),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "mfa_recovery_codes",
        _user_id(),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        _owned_by_user(),
        sa.PrimaryKeyConstraint("user_id", "code_hash"),
    )
    op.create_table(
        "mfa_challenges",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        _user_id(),
        sa.Column("created_at", _utc_datetime(), nullable=False),
        sa.Column("expires_at", _utc_datetime(), nullable=False),
        _owned_by_user(),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index("ix_mfa_challenges_user_id", "mfa_challenges", ["user_id"])


def downgrade() -> None:
    # Each table's indexes go with it (MySQL refuses to drop an index a foreign key needs).
    for table in (
        "mfa_challenges",
        "mfa_recovery_codes",
        "mfa_totp",
        "login_throttles",
        "profile_deletions",
        "sessions",
        "revocations",
        "revocation_sequence",
        "audit_events",
        "user_roles",
    ):
        op.drop_table(table)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("failure_window_start")
    op.drop_index("ix_users_created_at_id", table_name="users")
