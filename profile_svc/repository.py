"""Storage of profiles: the only module that knows SQL. One session per call."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, RowMapping, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from profile_svc.models import Profile, deleted_users, profiles


class DeletedUser(Exception):
    """The user's account was deleted: their profile is never created again."""


T = TypeVar("T")
# ER_LOCK_DEADLOCK: InnoDB rolled the transaction back and it may be retried.
_MYSQL_DEADLOCK_CODES = frozenset({1213})
_DEADLOCK_RETRIES = 5
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
        primary key and we read the winner's row. A user deleted for good
        (`delete_for_good`) raises DeletedUser, however the two interleave.
        """
        existing = self.find(new.user_id)
        if existing is not None:
            return existing

        def insert_unless_deleted() -> None:
            with self._sessions.begin() as session:
                session.execute(insert(profiles).values(_row(new)))
                # After the insert, and a locking read: a deletion committing meanwhile
                # is seen (or waits for us and then deletes this row), never missed.
                if _is_deleted(session, new.user_id):
                    raise DeletedUser(new.user_id)

        try:
            _retrying_deadlocks(insert_unless_deleted)
        except IntegrityError:
            winner = self.find(new.user_id)
            if winner is not None:
                return winner
            with self._sessions.begin() as session:
                if _is_deleted(session, new.user_id):
                    # The winner's row was there, and a deletion took it since (seen with
                    # eight readers racing one deletion on MariaDB).
                    raise DeletedUser(new.user_id) from None
            raise  # the conflict was not on our key
        return new

    def delete_for_good(self, user_id: str, deleted_at: datetime) -> bool:
        """Delete the profile and remember the user id as deleted, in one transaction;
        whether a profile was there. Idempotent."""

        def remember_and_delete() -> bool:
            with self._sessions.begin() as session:
                if not _is_deleted(session, user_id):
                    session.execute(
                        insert(deleted_users).values(user_id=user_id, deleted_at=deleted_at)
                    )
                result = session.execute(delete(profiles).where(profiles.c.user_id == user_id))
                return bool(getattr(result, "rowcount", 0))

        try:
            return _retrying_deadlocks(remember_and_delete)
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


def _retrying_deadlocks(work: Callable[[], T]) -> T:
    """work(), again if MySQL rolled it back as a deadlock victim (a lazy creation and a
    deletion of one profile lock the same rows in opposite orders); nothing of the failed
    attempt remains."""
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            return work()
        except OperationalError as exc:
            code = getattr(exc.orig, "args", (None,))[0]
            if code not in _MYSQL_DEADLOCK_CODES or attempt == _DEADLOCK_RETRIES - 1:
                raise
            time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")


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
