"""Storage of profiles: the only module that knows SQL. One session per call."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from profile_svc.models import Profile, deleted_users, profiles


class DeletedUser(Exception):
    """The user's account was deleted: their profile is never created again."""


EDITABLE_COLUMNS = frozenset({"display_name", "email", "bio"})
# Built once and reused: no statement construction or cache-key work on the hot read path.
_BY_USER_ID = select(profiles).where(profiles.c.user_id == bindparam("user_id"))


class ProfileRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def find(self, user_id: str) -> Profile | None:
        with self._sessions() as session:
            row = session.execute(_BY_USER_ID, {"user_id": user_id}).first()
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
                # After the insert, and a locking read: a deletion committing meanwhile
                # is seen (or waits for us and then deletes this row), never missed.
                if _is_deleted(session, new.user_id):
                    raise DeletedUser(new.user_id)
        except IntegrityError:
            winner = self.find(new.user_id)
            if winner is None:  # the conflict was not on our key
                raise
            return winner
        return new

    def delete_for_good(self, user_id: str, deleted_at: datetime) -> bool:
        """Delete the profile and remember the user id as deleted, in one transaction;
        whether a profile was there. Idempotent."""
        try:
            with self._sessions.begin() as session:
                if not _is_deleted(session, user_id):
                    session.execute(
                        insert(deleted_users).values(user_id=user_id, deleted_at=deleted_at)
                    )
                result = session.execute(delete(profiles).where(profiles.c.user_id == user_id))
                return bool(getattr(result, "rowcount", 0))
        except IntegrityError:
            # A concurrent call remembered it first; the profile goes all the same.
            with self._sessions.begin() as session:
                session.execute(delete(profiles).where(profiles.c.user_id == user_id))
            return False

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


def _is_deleted(session: Session, user_id: str) -> bool:
    found = session.execute(
        select(deleted_users.c.user_id).where(deleted_users.c.user_id == user_id).with_for_update()
    ).first()
    return found is not None


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
