"""The auth service's tables: `users`, `refresh_tokens`, `login_refusals` (SQLAlchemy Core).

Column sizes are bounded so that unique indexes fit MySQL's limits; times are
stored as naive UTC with microseconds and read back as timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

metadata = MetaData()

ID_LENGTH = 36  # a UUID in its canonical text form
TOKEN_HASH_LENGTH = 64  # SHA-256 in hex


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out; naive UTC in the database."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))  # keep microseconds
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass timezone-aware UTC times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


users = Table(
    "users",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("username", String(64), nullable=False),
    # Lower-cased username: the unique index makes "Alice" and "alice" one user, race-free.
    Column("username_normalized", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("email", String(254), nullable=True),
    Column("display_name", String(100), nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # Brute-force protection: failed logins in a row, and the end of the current lock.
    Column("failed_logins", Integer, nullable=False, default=0, server_default="0"),
    Column("locked_until", UtcDateTime, nullable=True),
    Index("uq_users_username_normalized", "username_normalized", unique=True),
)

# Refused login claims (locked account or unknown username), counted in a few rows
# picked at random (the migration that creates the table makes the slots). Counting
# them makes every refused login commit one row write, as a counted failure does, so
# that no refusal is faster than another.
LOGIN_REFUSAL_SLOTS = 16
login_refusals = Table(
    "login_refusals",
    metadata,
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("refusals", BigInteger, nullable=False, default=0, server_default="0"),
)


refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("token_hash", String(TOKEN_HASH_LENGTH), nullable=False),
    # Every token rotated from one login shares the family; reuse revokes the family.
    Column("family_id", String(ID_LENGTH), nullable=False),
    Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("parent_id", String(ID_LENGTH), nullable=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("family_expires_at", UtcDateTime, nullable=False),
    Column("spent_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("uq_refresh_tokens_token_hash", "token_hash", unique=True),
    Index("ix_refresh_tokens_family_id", "family_id"),
    Index("ix_refresh_tokens_user_id", "user_id"),
)


# Revocations pushed to the token verifiers (auth_svc.revocations). `id` is the feed's
# cursor: it is taken from revocation_sequence, whose single row is locked until the
# writing transaction commits, so ids become visible in increasing order and a reader
# that has seen id N has seen every committed id below it.
REVOCATION_SUBJECT_LENGTH = 128  # a user or session id (36), or a key id (43 for RFC 7638)
revocations = Table(
    "revocations",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # user, session or key
    Column("subject", String(REVOCATION_SUBJECT_LENGTH), nullable=False),
    Column("not_before", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # not_before plus the longest life a verifier grants a token: then it can be pruned.
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_revocations_kind_subject", "kind", "subject"),
    Index("ix_revocations_expires_at", "expires_at"),
)
REVOCATION_SEQUENCE = "revocations"
revocation_sequence = Table(
    "revocation_sequence",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
)
