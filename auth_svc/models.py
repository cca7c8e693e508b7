"""The auth service's tables: users, refresh tokens, login throttles and refusals, roles,
audit events, second factors.

Column sizes are bounded so that unique indexes fit MySQL's limits; times are
stored as naive UTC with microseconds and read back as timezone-aware UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from authgate_common.db import UtcDateTime

metadata = MetaData()


def _owner_column(*, primary_key: bool = False) -> Column[str]:
    """The `user_id` of a row that belongs to a user: it goes when the user is deleted."""
    return Column(
        "user_id",
        String(ID_LENGTH),
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


ID_LENGTH = 36  # a UUID in its canonical text form
TOKEN_HASH_LENGTH = 64  # SHA-256 in hex


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
    # The account-wide lock against distributed attacks (auth_svc.lockout): failed logins
    # from any address since failure_window_start, and the end of the current lock.
    Column("failed_logins", Integer, nullable=False, default=0, server_default="0"),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("failure_window_start", UtcDateTime, nullable=True),
    Index("uq_users_username_normalized", "username_normalized", unique=True),
    # The admin API pages through users in this order (keyset paging).
    Index("ix_users_created_at_id", "created_at", "id"),
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


CLIENT_IP_LENGTH = 45  # the longest textual IPv6 address
# Brute-force protection per account and client address ("": address unknown): failed
# logins in a row, attempts being checked (in_flight, since claimed_at), the lock's end.
login_throttles = Table(
    "login_throttles",
    metadata,
    _owner_column(),
    Column("client", String(CLIENT_IP_LENGTH), nullable=False),
    Column("failures", Integer, nullable=False, default=0, server_default="0"),
    Column("in_flight", Integer, nullable=False, default=0, server_default="0"),
    Column("claimed_at", UtcDateTime, nullable=True),
    Column("locked_until", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("user_id", "client"),
)


refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    Column("token_hash", String(TOKEN_HASH_LENGTH), nullable=False),
    # Every token rotated from one login shares the family; reuse revokes the family.
    Column("family_id", String(ID_LENGTH), nullable=False),
    _owner_column(),
    Column("parent_id", String(ID_LENGTH), nullable=True),
    Column("issued_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("family_expires_at", UtcDateTime, nullable=False),
    Column("spent_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
    Index("uq_refresh_tokens_token_hash", "token_hash", unique=True),
    Index("ix_refresh_tokens_family_id", "family_id"),
    Index("ix_refresh_tokens_user_id", "user_id"),
    # The session pruner looks families up by when they expire.
    Index("ix_refresh_tokens_family_expires_at", "family_expires_at"),
)


ROLE_LENGTH = 64
user_roles = Table(
    "user_roles",
    metadata,
    _owner_column(),
    Column("role", String(ROLE_LENGTH), nullable=False),
    PrimaryKeyConstraint("user_id", "role"),
)

USER_AGENT_LENGTH = 256
REQUEST_ID_LENGTH = 128
EVENT_TYPE_LENGTH = 32
# Append-only, except that retention deletes the oldest rows. user_id and actor_id are
# not foreign keys: an event outlives the user it names.
audit_events = Table(
    "audit_events",
    metadata,
    Column(
        "id",
        BigInteger().with_variant(Integer, "sqlite"),  # SQLite autoincrements INTEGER only
        primary_key=True,
        autoincrement=True,
    ),
    Column("type", String(EVENT_TYPE_LENGTH), nullable=False),
    Column("user_id", String(ID_LENGTH), nullable=True),
    Column("actor_id", String(ID_LENGTH), nullable=True),
    Column("client_ip", String(CLIENT_IP_LENGTH), nullable=True),
    Column("user_agent", String(USER_AGENT_LENGTH), nullable=True),
    Column("request_id", String(REQUEST_ID_LENGTH), nullable=True),
    Column("detail", Text, nullable=False),  # a small JSON object
    Column("created_at", UtcDateTime, nullable=False),
    Index("ix_audit_events_user_id_id", "user_id", "id"),
    Index("ix_audit_events_type_id", "type", "id"),
    Index("ix_audit_events_created_at", "created_at"),
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
    Column("kind", String(16), nullable=False),  # user, session, key or roles
    Column("subject", String(REVOCATION_SUBJECT_LENGTH), nullable=False),
    # Kind `roles` only: the user's roles right after the removal, space-separated (role
    # names hold no spaces), "" for none; earlier tokens are narrowed to them.
    Column("roles", Text, nullable=True),
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


# One row per session (a login and every token refreshed from it: a refresh-token family,
# `id` = the family id = the tokens' `sid`). Whether it is live is the refresh tokens'
# business (an unspent, unrevoked, unexpired token of the family); this row says what the
# owner sees of it.
AMR_LENGTH = 64  # a small JSON array of RFC 8176 method names
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(ID_LENGTH), primary_key=True),
    _owner_column(),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_used_at", UtcDateTime, nullable=False),
    Column("client_ip", String(CLIENT_IP_LENGTH), nullable=True),
    Column("user_agent", String(USER_AGENT_LENGTH), nullable=True),
    Column("amr", String(AMR_LENGTH), nullable=False),
    Index("ix_sessions_user_id", "user_id"),
)


# The outbox of account deletions: a row is written with the deletion and removed once the
# profile service has deleted the profile (auth_svc.profile_outbox). Not a foreign key:
# the user is gone.
profile_deletions = Table(
    "profile_deletions",
    metadata,
    Column("user_id", String(ID_LENGTH), primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    # Due from then; a worker that takes the row moves it on by its lease first.
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Index("ix_profile_deletions_next_attempt_at", "next_attempt_at"),
)


# TOTP second factor (auth_svc.mfa). The secret is AES-GCM ciphertext (base64 of nonce,
# ciphertext and tag, bound to the user id): the database alone does not reveal it.
# confirmed_at NULL: enrolled, not active yet. last_used_step: the RFC 6238 time step of
# the last accepted code; a code is accepted only for a later step (a conditional UPDATE).
mfa_totp = Table(
    "mfa_totp",
    metadata,
    _owner_column(primary_key=True),
    Column("secret_ciphertext", String(255), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime, nullable=True),
    Column("last_used_step", BigInteger, nullable=True),
)

# Single-use recovery codes, as SHA-256 of their normal form (they are random, 50 bits).
mfa_recovery_codes = Table(
    "mfa_recovery_codes",
    metadata,
    _owner_column(),
    Column("code_hash", String(TOKEN_HASH_LENGTH), nullable=False),
    PrimaryKeyConstraint("user_id", "code_hash"),
)

# Logins waiting for their second factor: the SHA-256 of the mfa_token, deleted when used.
mfa_challenges = Table(
    "mfa_challenges",
    metadata,
    Column("token_hash", String(TOKEN_HASH_LENGTH), primary_key=True),
    _owner_column(),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Index("ix_mfa_challenges_user_id", "user_id"),
)
