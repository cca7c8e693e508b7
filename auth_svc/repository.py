"""Storage of users and refresh tokens; the only module that knows SQL. One session per call."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import CursorResult, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from auth_svc.models import refresh_tokens, users
from authgate_common.errors import AlreadyExists

T = TypeVar("T")

# ER_LOCK_DEADLOCK: InnoDB rolled the transaction back and it may be retried.
_MYSQL_DEADLOCK_CODES = frozenset({1213})
_DEADLOCK_RETRIES = 5


@dataclass(frozen=True)
class UserRecord:
    id: str
    username: str
    username_normalized: str
    password_hash: str
    email: str | None
    display_name: str | None
    disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class RefreshTokenRecord:
    id: str
    token_hash: str
    family_id: str
    user_id: str
    parent_id: str | None
    issued_at: datetime
    expires_at: datetime
    family_expires_at: datetime
    spent_at: datetime | None = None
    revoked_at: datetime | None = None


def _user(row: Any) -> UserRecord:
    return UserRecord(**row._asdict())


def _refresh_token(row: Any) -> RefreshTokenRecord:
    return RefreshTokenRecord(**row._asdict())


class UserRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, user: UserRecord) -> None:
        """Store a new user; a taken username (in any case) raises AlreadyExists."""
        try:
            _transaction(
                self._sessions,
                lambda session: session.execute(insert(users).values(**asdict(user))),
            )
        except IntegrityError:
            # The unique index decides, so two concurrent registrations cannot both win.
            raise AlreadyExists("username is already taken") from None

    def by_username(self, username_normalized: str) -> UserRecord | None:
        with self._sessions() as session:
            row = session.execute(
                select(users).where(users.c.username_normalized == username_normalized)
            ).first()
        return None if row is None else _user(row)

    def by_id(self, user_id: str) -> UserRecord | None:
        with self._sessions() as session:
            row = session.execute(select(users).where(users.c.id == user_id)).first()
        return None if row is None else _user(row)

    def replace_password_hash(
        self, user_id: str, old_hash: str, new_hash: str, now: datetime
    ) -> bool:
        """Swap the hash only if it is still old_hash, so a concurrent change is never undone."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(users)
                .where(users.c.id == user_id, users.c.password_hash == old_hash)
                .values(password_hash=new_hash, updated_at=now)
            )
            return _rowcount(result) == 1

    def set_disabled(self, user_id: str, disabled: bool, now: datetime) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                update(users).where(users.c.id == user_id).values(disabled=disabled, updated_at=now)
            )
            return _rowcount(result) == 1


class RefreshTokenRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, token: RefreshTokenRecord) -> None:
        with self._sessions.begin() as session:
            session.execute(insert(refresh_tokens).values(**asdict(token)))

    def by_hash(self, token_hash: str) -> RefreshTokenRecord | None:
        with self._sessions() as session:
            row = session.execute(
                select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
            ).first()
        return None if row is None else _refresh_token(row)

    def rotate(self, spent_hash: str, child: RefreshTokenRecord, now: datetime) -> bool:
        """Spend the token with spent_hash and store child, in one transaction.

        The conditional UPDATE is the lock: of concurrent callers with the same
        token exactly one sees rowcount 1; the others change nothing.
        """

        def work(session: Session) -> bool:
            result = session.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.token_hash == spent_hash,
                    refresh_tokens.c.spent_at.is_(None),
                    refresh_tokens.c.revoked_at.is_(None),
                    refresh_tokens.c.expires_at > now,
                )
                .values(spent_at=now)
            )
            if _rowcount(result) != 1:
                return False
            session.execute(insert(refresh_tokens).values(**asdict(child)))
            return True

        return _transaction(self._sessions, work)

    def revoke_family(self, family_id: str, now: datetime) -> int:
        """Revoke every token of the family not revoked yet; the number revoked."""

        def work(session: Session) -> int:
            result = session.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.family_id == family_id,
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            return _rowcount(result)

        return _transaction(self._sessions, work)


def _transaction(sessions: sessionmaker[Session], work: Callable[[Session], T]) -> T:
    """Run work in one transaction, again from the start if MySQL chose it as a deadlock victim.

    InnoDB resolves lock cycles (e.g. a rotation and a family revocation touching
    the same rows through different indexes) by rolling one transaction back;
    the documented remedy is to retry it. Nothing of the failed attempt remains.
    """
    for attempt in range(_DEADLOCK_RETRIES):
        try:
            with sessions.begin() as session:
                return work(session)
        except OperationalError as exc:
            if not _is_deadlock(exc) or attempt == _DEADLOCK_RETRIES - 1:
                raise
            time.sleep(random.uniform(0.001, 0.01) * (attempt + 1))  # noqa: S311 - jitter only
    raise AssertionError("unreachable")


def _is_deadlock(exc: OperationalError) -> bool:
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return len(args) > 0 and args[0] in _MYSQL_DEADLOCK_CODES


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount
