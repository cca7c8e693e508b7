"""Storage of users and refresh tokens; the only module that knows SQL. One session per call."""

from __future__ import annotations

import random
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import CursorResult, case, insert, literal, null, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from auth_svc.lockout import LockoutPolicy
from auth_svc.models import LOGIN_REFUSAL_SLOTS, login_refusals, refresh_tokens, users
from authgate_common.db import UtcDateTime
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
    failed_logins: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True)
class LoginClaim:
    """The outcome of claiming a login attempt for a username.

    `user` is set when the attempt was counted and the password may be checked;
    otherwise `locked` tells a locked account from an unknown username.
    """

    user: UserRecord | None
    locked: bool = False


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

    def claim_login_attempt(
        self, username_normalized: str, now: datetime, policy: LockoutPolicy
    ) -> LoginClaim:
        """Count one failed login in advance, unless the account is locked, atomically.

        The conditional UPDATE decides: concurrent attempts serialize on the row,
        each sees the count the previous one left, and once the count reaches the
        threshold the lock it sets refuses every later claim until it runs out.
        So no more passwords are ever checked than the policy allows. A successful
        login takes its failure back with `reset_failed_logins`.
        """
        failures = users.c.failed_logins
        lock_until: Any = case(
            (failures + 1 < policy.threshold, null()),
            *(
                (failures + 1 == count, _utc(now + timedelta(seconds=seconds)))
                for count, seconds in policy.escalation()
            ),
            else_=_utc(now + timedelta(seconds=policy.max_seconds)),
        )
        claim = (
            update(users)
            .where(
                users.c.username_normalized == username_normalized,
                or_(users.c.locked_until.is_(None), users.c.locked_until <= now),
            )
            # locked_until first: MySQL evaluates SET left to right with updated values,
            # SQLite with the old ones; in this order both read the old failed_logins.
            .ordered_values((users.c.locked_until, lock_until), (failures, failures + 1))
        )
        by_name = users.c.username_normalized == username_normalized

        def work(session: Session) -> LoginClaim:
            if _rowcount(session.execute(claim)) == 1:
                return LoginClaim(user=_user(session.execute(select(users).where(by_name)).one()))
            # Locked or unknown: commit a row write all the same, as a counted failure does,
            # so that the durable commit does not tell the cases apart by time.
            session.execute(
                update(login_refusals)
                .where(login_refusals.c.slot == secrets.randbelow(LOGIN_REFUSAL_SLOTS))
                .values(refusals=login_refusals.c.refusals + 1)
            )
            exists = session.execute(select(users.c.id).where(by_name)).first() is not None
            return LoginClaim(user=None, locked=exists)

        return _transaction(self._sessions, work)

    def reset_failed_logins(self, user_id: str) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(failed_logins=0, locked_until=None)
            )

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


def _utc(value: datetime) -> Any:
    return literal(value, UtcDateTime())


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
