"""Storage of profiles: the only module that knows SQL. One session per call."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, RowMapping, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from profile_svc.models import Profile, profiles

EDITABLE_COLUMNS = frozenset({"display_name", "email", "bio"})
# Built once and reused: no statement construction or cache-key work on the hot read path.
_BY_USER_ID = select(profiles).where(profiles.c.user_id == bindparam("user_id"))


class ProfileRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        if not isinstance(bind, Engine):
            raise TypeError("the sessions must be bound to an engine")
        self._engine = bind

    def find(self, user_id: str) -> Profile | None:
        # A plain connection, not an ORM Session: the read of every GetProfile, and the
        # Session's own bookkeeping would cost about as much as the query (bench.ab).
        with self._engine.connect() as connection:
            row = connection.execute(_BY_USER_ID, {"user_id": user_id}).first()
        return None if row is None else _profile(row._mapping)

    def get_or_create(self, new: Profile) -> Profile:
        """The stored profile of new.user_id, inserting `new` if there is none.

        Race-safe: when a concurrent call inserts first, our insert fails on the
        primary key and we read the winner's row.
        """
        existing = self.find(new.user_id)
        if existing is not None:
            return existing
        try:
            with self._sessions.begin() as session:
                session.execute(insert(profiles).values(_row(new)))
        except IntegrityError:
            winner = self.find(new.user_id)
            if winner is None:  # the conflict was not on our key
                raise
            return winner
        return new

    def update(
        self, user_id: str, changes: Mapping[str, str], updated_at: datetime
    ) -> Profile | None:
        """Set the given editable columns and updated_at; None when there is no such profile."""
        unknown = set(changes) - EDITABLE_COLUMNS
        if unknown:
            raise ValueError(f"not editable: {sorted(unknown)}")
        with self._sessions.begin() as session:
            session.execute(
                update(profiles)
                .where(profiles.c.user_id == user_id)
                .values(**changes, updated_at=updated_at)
            )
            row = session.execute(_BY_USER_ID, {"user_id": user_id}).first()
        return None if row is None else _profile(row._mapping)


def _row(profile: Profile) -> dict[str, Any]:
    return {
        "user_id": profile.user_id,
        "username": profile.username,
        "display_name": profile.display_name,
        "email": profile.email,
        "bio": profile.bio,
        "created_at": profile.created_at,
        "updated_at": profile.updated_at,
    }


def _profile(row: RowMapping) -> Profile:
    return Profile(
        user_id=row["user_id"],
        username=row["username"],
        display_name=row["display_name"],
        email=row["email"],
        bio=row["bio"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
