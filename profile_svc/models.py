"""The `profiles` and `deleted_users` tables and the profile record the domain works with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, MetaData, String, Table

from authgate_common.db import UtcDateTime

USER_ID_MAX = 64
USERNAME_MAX = 64
DISPLAY_NAME_MAX = 100
EMAIL_MAX = 254
BIO_MAX = 1000

metadata = MetaData()

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("username", String(USERNAME_MAX), nullable=False),
    Column("display_name", String(DISPLAY_NAME_MAX), nullable=False),
    Column("email", String(EMAIL_MAX), nullable=False),
    Column("bio", String(BIO_MAX), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# User ids whose account was deleted: their profile is gone and is never created again
# (ids are never reused, so a row is kept for good; it holds no personal data).
deleted_users = Table(
    "deleted_users",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("deleted_at", UtcDateTime, nullable=False),
)


@dataclass(frozen=True)
class Profile:
    """A user's profile; times are timezone-aware UTC."""

    user_id: str
    username: str
    display_name: str
    email: str
    bio: str
    created_at: datetime
    updated_at: datetime
