"""The `profiles` table and the profile record the domain works with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table
from sqlalchemy.dialects import mysql

USER_ID_MAX = 64
USERNAME_MAX = 64
DISPLAY_NAME_MAX = 100
EMAIL_MAX = 254
BIO_MAX = 1000

# MySQL's DATETIME keeps whole seconds unless asked for microseconds.
_Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql")

metadata = MetaData()

profiles = Table(
    "profiles",
    metadata,
    Column("user_id", String(USER_ID_MAX), primary_key=True),
    Column("username", String(USERNAME_MAX), nullable=False),
    Column("display_name", String(DISPLAY_NAME_MAX), nullable=False),
    Column("email", String(EMAIL_MAX), nullable=False),
    Column("bio", String(BIO_MAX), nullable=False),
    # Naive UTC in the database (neither SQLite nor MySQL DATETIME keep a zone).
    Column("created_at", _Timestamp, nullable=False),
    Column("updated_at", _Timestamp, nullable=False),
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
