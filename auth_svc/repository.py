"""Storage of users, roles, refresh tokens and audit events; the only module that knows SQL.

One transaction per call. A method that makes a change the audit log records takes the
event (auth_svc.audit.NewEvent) and appends it in that same transaction, so there is
never an event without its change nor a change without its event.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    CursorResult,
    Row,
    Select,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from auth_svc.audit import EventType, NewEvent, Origin
from auth_svc.lockout import IN_FLIGHT_EXPIRY_SECONDS, LockoutPolicy
from auth_svc.models import (
    LOGIN_REFUSAL_SLOTS,
    audit_events,
    login_refusals,
    login_throttles,
    mfa_challenges,
    mfa_recovery_codes,
    mfa_totp,
    profile_deletions,
    refresh_tokens,
    sessions,
    user_roles,
    users,
)
from auth_svc.revocations import RevocationLog
from authgate_common.db import UtcDateTime
from authgate_common.errors import AlreadyExists

T = TypeVar("T")

# ER_LOCK_DEADLOCK: InnoDB rolled the transaction back and it may be retried.
_MYSQL_DEADLOCK_CODES = frozenset({1213})
_DEADLOCK_RETRIES = 5


# Rows a pruning transaction deletes at most (auth_svc.retention).
PRUNE_BATCH_SIZE = 1000


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
    # The account-wide lock (auth_svc.lockout): failures from any address in the window.
    failed_logins: int = 0
    locked_until: datetime | None = None
    failure_window_start: datetime | None = None


@dataclass(frozen=True)
class ThrottleState:
    """The lockout of one account for one client address."""

    failures: int = 0
    in_flight: int = 0
    locked_until: datetime | None = None


@dataclass(frozen=True)
class LoginClaim:
    """The outcome of claiming a login attempt for a username.

    `user` is set when the attempt was admitted and the password may be checked;
    otherwise `locked` tells a locked account from an unknown username, and `busy`
    says that attempts in flight must settle before this one may be admitted.
    """

    user: UserRecord | None
    locked: bool = False
    busy: bool = False
    # The throttle's row (the client address, "" when unknown) and its state once claimed.
    client: str = ""
    throttle: ThrottleState = field(default_factory=ThrottleState)
    # The user a refused or busy claim was for, if there is one.
    user_id: str | None = None


# The scopes of lockout_engaged: one address on one account, or the whole account.
LOCK_SCOPE_CLIENT = "client"
LOCK_SCOPE_ACCOUNT = "account"
_IN_FLIGHT_EXPIRY = timedelta(seconds=IN_FLIGHT_EXPIRY_SECONDS)
# How long a claim waits for the attempts in flight to settle before it is refused.
_CLAIM_WAIT_SECONDS = 10.0


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


@dataclass(frozen=True)
class SessionRecord:
    """What the owner sees of a session (a refresh-token family; `id` is its `sid`)."""

    id: str
    user_id: str
    created_at: datetime
    last_used_at: datetime
    client_ip: str | None
    user_agent: str | None
    amr: tuple[str, ...]


@dataclass(frozen=True)
class UserView:
    """A user with their roles, as the admin API shows them."""

    user: UserRecord
    roles: frozenset[str] = field(default_factory=frozenset)
    mfa_enabled: bool = False
    # The end of the latest lock, account-wide or of any one address (None: never locked).
    locked_until: datetime | None = None


@dataclass(frozen=True)
class StoredEvent:
    id: int
    type: str
    user_id: str | None
    actor_id: str | None
    client_ip: str | None
    user_agent: str | None
    request_id: str | None
    detail: dict[str, Any]
    created_at: datetime


def _user(row: Any) -> UserRecord:
    return UserRecord(**row._asdict())


def _refresh_token(row: Any) -> RefreshTokenRecord:
    return RefreshTokenRecord(**row._asdict())


class UserRepository:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def add(self, user: UserRecord, event: NewEvent | None = None) -> None:
        """Store a new user; a taken username (in any case) raises AlreadyExists."""

        def work(session: Session) -> None:
            session.execute(insert(users).values(**asdict(user)))
            if event is not None:
                append_event(session, event)

        try:
            _transaction(self._sessions, work)
        except IntegrityError:
            # The unique index decides, so two concurrent registrations cannot both win.
            raise AlreadyExists("username is already taken") from None

    def by_username(self, username_normalized: str) -> UserRecord | None:
        query = select(users).where(users.c.username_normalized == username_normalized)
        return _first(self._sessions, query, _user)

    def by_id(self, user_id: str) -> UserRecord | None:
        return _first(self._sessions, select(users).where(users.c.id == user_id), _user)

    def roles_of(self, user_id: str) -> frozenset[str]:
        with self._sessions() as session:
            return _roles_of(session, user_id)

    def claim_login_attempt(
        self,
        username_normalized: str,
        now: datetime,
        policy: LockoutPolicy,
        origin: Origin | None = None,
    ) -> LoginClaim:
        """Reserve the check of one password of the user for the origin's address, atomically.

        The attempt is counted in flight on the (account, address) throttle by a conditional
        UPDATE, which admits it only while no lock holds and the failures plus attempts in
        flight leave room (LockoutPolicy.admits). Concurrent attempts serialize on the
        row, so no more passwords are ever checked than the policy allows; and since an
        attempt in flight is not a failure yet, concurrent right passwords never lock.
        Every claim is settled by `fail_login_attempt`, `complete_login` or
        `release_login_attempt`. A claim that finds no room but no lock either is `busy`:
        the caller waits for the attempts in flight to settle and claims again.

        A refused claim is audited by `record_refusal`, once its dummy check is paid.
        """
        return self._settled_claim(
            users.c.username_normalized == username_normalized, now, policy, origin
        )

    def claim_attempt_of(
        self, user_id: str, now: datetime, policy: LockoutPolicy, origin: Origin | None = None
    ) -> LoginClaim:
        """claim_login_attempt for a known user id: a second-factor code is throttled alike."""
        return self._settled_claim(users.c.id == user_id, now, policy, origin)

    def _settled_claim(
        self, which: Any, now: datetime, policy: LockoutPolicy, origin: Origin | None
    ) -> LoginClaim:
        """A claim admitted or refused, after waiting (briefly) for the attempts in flight."""
        deadline = time.monotonic() + _CLAIM_WAIT_SECONDS
        pause = 0.002
        while True:
            claim = _transaction(
                self._sessions, lambda session: self._claim(session, which, now, policy, origin)
            )
            if not claim.busy:
                return claim
            if time.monotonic() >= deadline:
                # Attempts in flight for this long: refuse as a lock would, audited alike.
                return self._refuse(claim.user_id)
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _refuse(self, user_id: str | None) -> LoginClaim:
        return _transaction(self._sessions, lambda session: _refused(session, user_id))

    def record_refusal(self, claim: LoginClaim, now: datetime, origin: Origin) -> None:
        """Audit a refused claim as login_failed, after its (dummy) password check.

        In a transaction of its own, with a row write, as a failed check settles in one:
        refused and failed logins then commit the same number of times and take as long.
        """

        def work(session: Session) -> None:
            _refused(session, claim.user_id, writes=_FAILURE_STATEMENTS - 1)  # + the event
            reason = "unknown_user" if claim.user_id is None else "locked"
            append_event(
                session,
                NewEvent(EventType.LOGIN_FAILED, claim.user_id, origin, now, {"reason": reason}),
            )

        _transaction(self._sessions, work)

    def _claim(
        self,
        session: Session,
        which: Any,
        now: datetime,
        policy: LockoutPolicy,
        origin: Origin | None,
    ) -> LoginClaim:
        found = session.execute(select(users.c.id, users.c.locked_until).where(which)).first()
        if found is None or (found.locked_until is not None and found.locked_until > now):
            # After one read: as many statements as an admitted claim's.
            return _refused(
                session, None if found is None else found.id, writes=_CLAIM_STATEMENTS - 1
            )
        user_id: str = found.id
        client = _client_of(origin)
        _ensure_throttle(session, user_id, client)
        throttle = _throttle_row(user_id, client)
        in_flight = case(
            (
                login_throttles.c.claimed_at > _utc(now - _IN_FLIGHT_EXPIRY),
                login_throttles.c.in_flight,
            ),
            else_=0,
        )
        claimed = session.execute(
            update(login_throttles)
            .where(
                throttle,
                or_(
                    login_throttles.c.locked_until.is_(None), login_throttles.c.locked_until <= now
                ),
                or_(in_flight == 0, login_throttles.c.failures + in_flight < policy.threshold),
            )
            # in_flight first: MySQL evaluates SET left to right with updated values,
            # SQLite with the old ones; in this order both read the old claimed_at.
            .ordered_values(
                (login_throttles.c.in_flight, in_flight + 1), (login_throttles.c.claimed_at, now)
            )
        )
        state = _throttle(session, user_id, client)
        if _rowcount(claimed) == 1:
            user = _user(session.execute(select(users).where(users.c.id == user_id)).one())
            return LoginClaim(user=user, client=client, throttle=state)
        if state.locked_until is not None and state.locked_until > now:
            return _refused(session, user_id)
        return LoginClaim(user=None, busy=True, user_id=user_id)

    def fail_login_attempt(
        self,
        claim: LoginClaim,
        now: datetime,
        policy: LockoutPolicy,
        origin: Origin | None = None,
        *,
        reason: str = "invalid_credentials",
    ) -> str | None:
        """The claimed attempt failed: count it for its address and for the account, lock
        per the policy, audit login_failed (and lockout_engaged, with its scope), in one
        transaction. The scope of a lock this failure engaged ("client", "account"), if any.
        """
        assert claim.user is not None
        user_id, client = claim.user.id, claim.client

        def work(session: Session) -> str | None:
            # (scope, failures, until) of each lock this failure engaged.
            locks: list[tuple[str, int, datetime]] = []
            # The account's row first, then its throttle row: the order in which a claim
            # takes them (its upsert of the throttle row share-locks the user's row through
            # the foreign key). Taken the other way round, each waited for the other and
            # InnoDB rolled one back, so often under a burst that the retries ran out.
            _lock_user(session, user_id)
            # The UPDATE locks the row: what is read next is ours until commit.
            session.execute(
                update(login_throttles)
                .where(_throttle_row(user_id, client))
                .values(
                    failures=login_throttles.c.failures + 1,
                    in_flight=_released(login_throttles.c.in_flight),
                )
            )
            state = _throttle(session, user_id, client)
            lock_seconds = policy.lock_seconds(state.failures)
            if lock_seconds:
                locked_until = now + timedelta(seconds=lock_seconds)
                session.execute(
                    update(login_throttles)
                    .where(_throttle_row(user_id, client))
                    .values(locked_until=locked_until)
                )
                locks.append((LOCK_SCOPE_CLIENT, state.failures, locked_until))
            account_lock = _count_account_failure(session, user_id, now, policy)
            if account_lock is not None:
                locks.append((LOCK_SCOPE_ACCOUNT, *account_lock))
            if origin is not None:
                append_event(
                    session,
                    NewEvent(EventType.LOGIN_FAILED, user_id, origin, now, {"reason": reason}),
                )
                for scope, failures, until in locks:
                    detail = {
                        "scope": scope,
                        "failed_logins": failures,
                        "locked_until": until.isoformat(),
                    }
                    append_event(
                        session, NewEvent(EventType.LOCKOUT_ENGAGED, user_id, origin, now, detail)
                    )
            return locks[-1][0] if locks else None

        return _transaction(self._sessions, work)

    def release_login_attempt(self, claim: LoginClaim) -> None:
        """The claimed attempt ended neither failed nor complete (a password right, a second
        factor still due): it leaves the in-flight count, and the failures stay."""
        assert claim.user is not None
        with self._sessions.begin() as session:
            session.execute(
                update(login_throttles)
                .where(_throttle_row(claim.user.id, claim.client))
                .values(in_flight=_released(login_throttles.c.in_flight))
            )

    def throttle_of(self, user_id: str, client_ip: str | None = None) -> ThrottleState:
        """The lockout state of the user for one client address (None: address unknown)."""
        with self._sessions() as session:
            return _throttle(session, user_id, client_ip or "")

    def reset_failed_logins(self, user_id: str) -> None:
        with self._sessions.begin() as session:
            _reset_lockout(session, user_id)

    def complete_login(
        self,
        claim: LoginClaim,
        session_token: RefreshTokenRecord,
        event: NewEvent,
        *,
        session_record: SessionRecord,
        then: Callable[[Session], None] | None = None,
    ) -> None:
        """A login succeeded: in one transaction reset the failures of its address (the
        account-wide count stays: it measures an attack on the account, not this client),
        store the new session and its first refresh token, append the event (login_succeeded),
        then run `then` (the rest of a password change), if any."""
        assert claim.user is not None
        user_id = claim.user.id

        def work(session: Session) -> None:
            session.execute(
                update(login_throttles)
                .where(_throttle_row(user_id, claim.client))
                .values(
                    failures=0,
                    locked_until=None,
                    in_flight=_released(login_throttles.c.in_flight),
                )
            )
            session.execute(insert(refresh_tokens).values(**asdict(session_token)))
            session.execute(insert(sessions).values(**_session_row(session_record)))
            append_event(session, event)
            if then is not None:
                then(session)

        _transaction(self._sessions, work)

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
    def __init__(
        self, sessions: sessionmaker[Session], revocations: RevocationLog | None = None
    ) -> None:
        self._sessions = sessions
        # When given, revoking a family also refuses its access tokens (by `sid`) through
        # the feed, in the same transaction.
        self._revocations = revocations

    def amr_of(self, session_id: str) -> tuple[str, ...]:
        """How the session's login authenticated (RFC 8176): its refreshed tokens keep it."""
        with self._sessions() as session:
            value = session.execute(select(sessions.c.amr).where(sessions.c.id == session_id))
            found = value.scalar()
        return ("pwd",) if found is None else tuple(json.loads(found))

    def add(self, token: RefreshTokenRecord) -> None:
        with self._sessions.begin() as session:
            session.execute(insert(refresh_tokens).values(**asdict(token)))

    def by_hash(self, token_hash: str) -> RefreshTokenRecord | None:
        query = select(refresh_tokens).where(refresh_tokens.c.token_hash == token_hash)
        return _first(self._sessions, query, _refresh_token)

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
            session.execute(
                update(sessions).where(sessions.c.id == child.family_id).values(last_used_at=now)
            )
            return True

        return _transaction(self._sessions, work)

    def revoke_family(self, family_id: str, now: datetime, event: NewEvent | None = None) -> int:
        """Revoke every token of the family not revoked yet; the number revoked.

        The event is appended only when this call revoked something, so that concurrent
        revocations of one family record it once.
        """

        def work(session: Session) -> int:
            result = session.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.family_id == family_id,
                    refresh_tokens.c.revoked_at.is_(None),
                )
                .values(revoked_at=now)
            )
            revoked = _rowcount(result)
            if event is not None and revoked:
                append_event(session, event)
            if self._revocations is not None and revoked:
                user_id = session.execute(
                    select(refresh_tokens.c.user_id)
                    .where(refresh_tokens.c.family_id == family_id)
                    .limit(1)
                ).scalar_one()
                self._revocations.revoke_session(
                    session,
                    user_id,
                    family_id,
                    reason="family revoked" if event is None else event.type.value,
                    at=now,
                )
            return revoked

        return _transaction(self._sessions, work)

    def prune_sessions(
        self, expired_before: datetime, *, batch_size: int = PRUNE_BATCH_SIZE
    ) -> int:
        """Delete the sessions whose refresh-token family expired before expired_before:
        their tokens and their session row, a batch of sessions per transaction; how many.

        Such a token is refused however it is presented (expired), so its row only grows
        the table; a family still within its lifetime stays, revoked or not (a spent token
        presented again must still be seen as reuse).
        """

        def batch(session: Session) -> int:
            family_ids = _first_values(
                session,
                refresh_tokens.c.family_id,
                refresh_tokens.c.family_expires_at < expired_before,
                batch_size,
            )
            if not family_ids:
                return 0
            session.execute(
                delete(refresh_tokens).where(refresh_tokens.c.family_id.in_(family_ids))
            )
            session.execute(delete(sessions).where(sessions.c.id.in_(family_ids)))
            return len(family_ids)

        return _in_batches(self._sessions, batch, batch_size)


UserCursor = tuple[datetime, str]


class AdminRepository:
    """What administrators read and change: users with roles, sessions, the audit log.

    Every change starts with an UPDATE of the user's row. That is the lock (InnoDB row
    lock; SQLite's write lock, taken at the first write), so concurrent changes of one
    user run one after the other and each reads the state the previous one left.
    """

    def __init__(self, sessions: sessionmaker[Session], revocations: RevocationLog) -> None:
        self._sessions = sessions
        # Access tokens issued before a change that takes something away are refused (or,
        # for a removed role, narrowed) through the feed; written last in the transaction.
        self._revocations = revocations

    def _refuse_earlier_tokens(self, session: Session, user_id: str, event: NewEvent) -> None:
        """The user's access tokens issued until the event are refused through the feed (the
        sessions, when the change ends them, are ended by the caller: it counts them)."""
        self._revocations.revoke_user(
            session,
            user_id,
            reason=event.type.value,
            at=event.created_at,
            end_sessions=False,
        )

    def user(self, user_id: str) -> UserView | None:
        with self._sessions() as session:
            return _user_view(session, user_id)

    def user_by_username(self, username_normalized: str) -> UserView | None:
        with self._sessions() as session:
            user_id = session.execute(
                select(users.c.id).where(users.c.username_normalized == username_normalized)
            ).scalar()
            return None if user_id is None else _user_view(session, user_id)

    def list_users(
        self, *, username_prefix: str, after: UserCursor | None, limit: int
    ) -> list[UserView]:
        """Users in (created_at, id) order after the cursor: keyset paging, so users
        registering meanwhile never shift a page and none is skipped or repeated."""
        query = select(users).order_by(users.c.created_at, users.c.id).limit(limit)
        if username_prefix:
            query = query.where(
                users.c.username_normalized.startswith(username_prefix, autoescape=True)
            )
        if after is not None:
            created_at, user_id = after
            query = query.where(
                or_(
                    users.c.created_at > created_at,
                    and_(users.c.created_at == created_at, users.c.id > user_id),
                )
            )
        with self._sessions() as session:
            records = [_user(row) for row in session.execute(query)]
            ids = [record.id for record in records]
            roles = _roles_of_many(session, ids)
            with_mfa = _mfa_enabled_of_many(session, ids)
            locks = _latest_locks(session, records)
        return [
            UserView(
                record,
                roles.get(record.id, frozenset()),
                record.id in with_mfa,
                locks.get(record.id),
            )
            for record in records
        ]

    def set_disabled(self, user_id: str, disabled: bool, event: NewEvent) -> UserView | None:
        """Disable (revoking every session) or enable; the event only when the flag changed."""

        def work(session: Session) -> UserView | None:
            before = _locked_user(session, user_id, event.created_at)
            if before is None:
                return None
            if before.disabled != disabled:
                session.execute(
                    update(users).where(users.c.id == user_id).values(disabled=disabled)
                )
                facts: dict[str, Any] = {}
                if disabled:
                    facts["sessions_revoked"] = _revoke_sessions(session, user_id, event.created_at)
                append_event(session, event.with_detail(**facts))
                if disabled:
                    self._refuse_earlier_tokens(session, user_id, event)
            return _user_view(session, user_id)

        return _transaction(self._sessions, work)

    def unlock(self, user_id: str, event: NewEvent) -> UserView | None:
        def work(session: Session) -> UserView | None:
            before = _locked_user(session, user_id, event.created_at)
            if before is None:
                return None
            lock_ended = _latest_locks(session, [before]).get(user_id)
            failures = session.execute(
                select(func.max(login_throttles.c.failures)).where(
                    login_throttles.c.user_id == user_id
                )
            ).scalar()
            _reset_lockout(session, user_id)
            append_event(
                session,
                event.with_detail(
                    # The most failures counted: from one address, or on the whole account.
                    failed_logins=max(before.failed_logins, failures or 0),
                    was_locked=lock_ended is not None and lock_ended > event.created_at,
                ),
            )
            return _user_view(session, user_id)

        return _transaction(self._sessions, work)

    def change_roles(
        self,
        user_id: str,
        change: Callable[[frozenset[str]], frozenset[str]],
        event: NewEvent,
    ) -> UserView | None:
        """Replace the user's roles with change(current roles), atomically; the event
        (with the roles added and removed) only when the set changed. `change` may raise
        a domain error, which rolls everything back."""

        def work(session: Session) -> UserView | None:
            if _locked_user(session, user_id, event.created_at) is None:
                return None
            current = _roles_of(session, user_id)
            wanted = change(current)
            added, removed = sorted(wanted - current), sorted(current - wanted)
            if removed:
                session.execute(
                    delete(user_roles).where(
                        user_roles.c.user_id == user_id, user_roles.c.role.in_(removed)
                    )
                )
            if added:
                session.execute(
                    insert(user_roles), [{"user_id": user_id, "role": role} for role in added]
                )
            if added or removed:
                append_event(session, event.with_detail(added=added, removed=removed))
            if removed:
                # Earlier tokens keep only the roles left (a removed role's routes answer
                # 403, the rest work on); a refresh (the sessions live on) gives a token with
                # the roles as they are now. An addition needs nothing: until a refresh the
                # earlier tokens just lack the new role.
                self._revocations.revoke_roles(
                    session, user_id, wanted, reason=event.type.value, at=event.created_at
                )
            return _user_view(session, user_id)

        return _transaction(self._sessions, work)

    def revoke_sessions(self, user_id: str, event: NewEvent) -> bool:
        """Revoke every refresh-token family of the user; False if there is no such user."""

        def work(session: Session) -> bool:
            if _locked_user(session, user_id, event.created_at) is None:
                return False
            revoked = _revoke_sessions(session, user_id, event.created_at)
            append_event(session, event.with_detail(sessions_revoked=revoked))
            self._refuse_earlier_tokens(session, user_id, event)
            return True

        return _transaction(self._sessions, work)


class AuditRepository:
    """Reading and pruning the audit log (appending happens in the changes' transactions)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def events(
        self, *, user_id: str, event_type: str, before_id: int | None, limit: int
    ) -> list[StoredEvent]:
        """Newest first, optionally of one user and/or one type, with ids below before_id."""
        query = select(audit_events).order_by(audit_events.c.id.desc()).limit(limit)
        if user_id:
            query = query.where(audit_events.c.user_id == user_id)
        if event_type:
            query = query.where(audit_events.c.type == event_type)
        if before_id is not None:
            query = query.where(audit_events.c.id < before_id)
        with self._sessions() as session:
            return [_stored_event(row) for row in session.execute(query)]

    def prune(self, older_than: datetime, *, batch_size: int = PRUNE_BATCH_SIZE) -> int:
        """Delete events created before older_than, a batch per transaction; how many."""

        def batch(session: Session) -> int:
            ids = _first_values(
                session, audit_events.c.id, audit_events.c.created_at < older_than, batch_size
            )
            if not ids:
                return 0
            return _rowcount(
                session.execute(delete(audit_events).where(audit_events.c.id.in_(ids)))
            )

        return _in_batches(self._sessions, batch, batch_size)


class AccountRepository:
    """What a user changes of their own account: sessions, password, the account itself.

    Every change revokes the access tokens it takes away through the feed, last in its
    transaction (see auth_svc.revocations).
    """

    def __init__(self, sessions: sessionmaker[Session], revocations: RevocationLog) -> None:
        self._sessions = sessions
        self._revocations = revocations

    def live_sessions(self, user_id: str, now: datetime) -> list[SessionRecord]:
        """The user's sessions with a usable refresh token, newest first."""
        query = (
            select(sessions)
            .where(
                sessions.c.user_id == user_id,
                sessions.c.id.in_(
                    select(refresh_tokens.c.family_id).where(_usable_token(user_id, now))
                ),
            )
            .order_by(sessions.c.created_at.desc(), sessions.c.id)
        )
        with self._sessions() as session:
            return [_session_record(row) for row in session.execute(query)]

    def revoke_session(self, user_id: str, session_id: str, event: NewEvent) -> bool:
        """End one of the user's sessions; False when the user has no such live session."""
        now = event.created_at

        def work(session: Session) -> bool:
            ended = session.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.family_id == session_id,
                    _usable_token(user_id, now),
                )
                .values(revoked_at=now)
            )
            if _rowcount(ended) == 0:
                return False
            append_event(session, event.with_detail(session_id=session_id))
            self._revocations.revoke_session(
                session, user_id, session_id, reason=event.type.value, at=now
            )
            return True

        return _transaction(self._sessions, work)

    def revoke_other_sessions(self, user_id: str, keep_session_id: str, event: NewEvent) -> int:
        """End every session of the user's but keep_session_id; how many were live."""
        now = event.created_at

        def work(session: Session) -> int:
            others = sorted(
                session.execute(
                    select(refresh_tokens.c.family_id)
                    .distinct()
                    .where(
                        refresh_tokens.c.user_id == user_id,
                        refresh_tokens.c.revoked_at.is_(None),
                        refresh_tokens.c.family_id != keep_session_id,
                    )
                ).scalars()
            )
            append_event(session, event.with_detail(sessions_revoked=len(others)))
            for family_id in others:  # each revoke_session also ends the family's tokens
                self._revocations.revoke_session(
                    session, user_id, family_id, reason=event.type.value, at=now
                )
            return len(others)

        return _transaction(self._sessions, work)

    def password_change(
        self, user_id: str, old_hash: str, new_hash: str, keep_session_id: str, now: datetime
    ) -> Callable[[Session], None]:
        """The password change's part of the transaction that also starts the new session
        (UserRepository.complete_login's `then`): swap the hash if it is still old_hash
        (else PasswordChangedMeanwhile rolls everything back), end every other session,
        and refuse every access token issued until now."""

        def work(session: Session) -> None:
            swapped = session.execute(
                update(users)
                .where(users.c.id == user_id, users.c.password_hash == old_hash)
                .values(password_hash=new_hash, updated_at=now)
            )
            if _rowcount(swapped) != 1:
                raise PasswordChangedMeanwhile
            session.execute(
                update(refresh_tokens)
                .where(
                    refresh_tokens.c.user_id == user_id,
                    refresh_tokens.c.revoked_at.is_(None),
                    refresh_tokens.c.family_id != keep_session_id,
                )
                .values(revoked_at=now)
            )
            # Every earlier token of the user, the caller's old one too; the new session's
            # tokens are issued after this commits, with a later `iat`.
            self._revocations.revoke_user(
                session, user_id, reason="password_changed", at=now, end_sessions=False
            )

        return work

    def delete_user(self, claim: LoginClaim, event: NewEvent) -> bool:
        """Delete the claimed user with their sessions, tokens and roles, strip their audit
        events to the user id, queue their profile's deletion (the outbox) and refuse their
        access tokens, in one transaction; False if the user was gone already."""
        assert claim.user is not None
        user_id = claim.user.id
        now = event.created_at

        def work(session: Session) -> bool:
            # The claim's attempt in flight goes with the user (login_throttles cascade).
            ended = session.execute(
                select(func.count(refresh_tokens.c.family_id.distinct())).where(
                    refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None)
                )
            ).scalar_one()
            for table in (refresh_tokens, sessions, user_roles):
                session.execute(delete(table).where(table.c.user_id == user_id))
            if _rowcount(session.execute(delete(users).where(users.c.id == user_id))) != 1:
                return False
            session.execute(
                insert(profile_deletions).values(
                    user_id=user_id, created_at=now, attempts=0, next_attempt_at=now
                )
            )
            # The user's events stay, naming them by id only: where they were is personal
            # data that goes with the account.
            session.execute(
                update(audit_events)
                .where(audit_events.c.user_id == user_id)
                .values(client_ip=None, user_agent=None)
            )
            append_event(session, event.with_detail(sessions_revoked=int(ended)))
            self._revocations.revoke_user(
                session, user_id, reason=event.type.value, at=now, end_sessions=False
            )
            return True

        return _transaction(self._sessions, work)


@dataclass(frozen=True)
class DueDeletion:
    user_id: str
    attempts: int


class ProfileDeletionOutbox:
    """The profile deletions the profile service has yet to take (written by
    AccountRepository.delete_user with the deletion)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def take_due(self, now: datetime, *, lease: timedelta, limit: int) -> list[DueDeletion]:
        """Rows due by now, each moved on by the lease first, so that another replica's
        worker does not take it at the same time (if this one dies, it is due again)."""
        taken: list[DueDeletion] = []
        with self._sessions() as session:
            rows = session.execute(
                select(
                    profile_deletions.c.user_id,
                    profile_deletions.c.attempts,
                    profile_deletions.c.next_attempt_at,
                )
                .where(profile_deletions.c.next_attempt_at <= now)
                .order_by(profile_deletions.c.next_attempt_at)
                .limit(limit)
            ).all()
        for user_id, attempts, due_at in rows:
            with self._sessions.begin() as session:
                moved = session.execute(
                    update(profile_deletions)
                    .where(
                        profile_deletions.c.user_id == user_id,
                        profile_deletions.c.next_attempt_at == due_at,
                    )
                    .values(next_attempt_at=now + lease)
                )
            if _rowcount(moved) == 1:
                taken.append(DueDeletion(user_id, attempts))
        return taken

    def done(self, user_id: str) -> None:
        with self._sessions.begin() as session:
            session.execute(delete(profile_deletions).where(profile_deletions.c.user_id == user_id))

    def retry_at(self, user_id: str, attempts: int, at: datetime) -> None:
        with self._sessions.begin() as session:
            session.execute(
                update(profile_deletions)
                .where(profile_deletions.c.user_id == user_id)
                .values(attempts=attempts, next_attempt_at=at)
            )

    def pending(self) -> int:
        with self._sessions() as session:
            return int(
                session.execute(select(func.count()).select_from(profile_deletions)).scalar_one()
            )


class PasswordChangedMeanwhile(Exception):
    """The password hash changed between its check and its replacement."""


def _usable_token(user_id: str, now: datetime) -> Any:
    return and_(
        refresh_tokens.c.user_id == user_id,
        refresh_tokens.c.revoked_at.is_(None),
        refresh_tokens.c.spent_at.is_(None),
        refresh_tokens.c.expires_at > now,
    )


def _session_row(record: SessionRecord) -> dict[str, Any]:
    row = asdict(record)
    row["amr"] = json.dumps(list(record.amr), separators=(",", ":"))
    return row


def _session_record(row: Any) -> SessionRecord:
    values = row._asdict()
    values["amr"] = tuple(json.loads(values["amr"]))
    return SessionRecord(**values)


def append_event(session: Session, event: NewEvent) -> int:
    """Append event in session's transaction; its id."""
    origin = event.origin
    result = session.execute(
        insert(audit_events).values(
            type=str(event.type),
            user_id=event.user_id,
            actor_id=origin.actor_id,
            client_ip=origin.client_ip,
            user_agent=origin.user_agent,
            request_id=origin.request_id,
            detail=json.dumps(dict(event.detail), separators=(",", ":"), sort_keys=True),
            created_at=event.created_at,
        )
    )
    assert isinstance(result, CursorResult)
    primary_key = result.inserted_primary_key
    assert primary_key is not None
    event_id: int = primary_key[0]
    return event_id


def _stored_event(row: Any) -> StoredEvent:
    values = row._asdict()
    values["detail"] = json.loads(values["detail"])
    return StoredEvent(**values)


def _locked_user(session: Session, user_id: str, now: datetime) -> UserRecord | None:
    """The user's row after locking it with a write (see AdminRepository); None if absent."""
    locking = update(users).where(users.c.id == user_id).values(updated_at=now)
    if _rowcount(session.execute(locking)) != 1:
        return None
    return _user(session.execute(select(users).where(users.c.id == user_id)).one())


def _user_view(session: Session, user_id: str) -> UserView | None:
    row = session.execute(select(users).where(users.c.id == user_id)).first()
    if row is None:
        return None
    user = _user(row)
    return UserView(
        user,
        _roles_of(session, user_id),
        _mfa_enabled(session, user_id),
        _latest_locks(session, [user]).get(user_id),
    )


def _roles_of(session: Session, user_id: str) -> frozenset[str]:
    return frozenset(
        session.execute(select(user_roles.c.role).where(user_roles.c.user_id == user_id)).scalars()
    )


def _roles_of_many(session: Session, user_ids: Sequence[str]) -> dict[str, frozenset[str]]:
    if not user_ids:
        return {}
    found: dict[str, set[str]] = {}
    rows = session.execute(
        select(user_roles.c.user_id, user_roles.c.role).where(user_roles.c.user_id.in_(user_ids))
    )
    for user_id, role in rows:
        found.setdefault(user_id, set()).add(role)
    return {user_id: frozenset(roles) for user_id, roles in found.items()}


def _revoke_sessions(session: Session, user_id: str, now: datetime) -> int:
    """Revoke every live refresh token of the user; how many sessions (families) that ended."""
    live = and_(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
    sessions = session.execute(
        select(func.count(refresh_tokens.c.family_id.distinct())).where(live)
    ).scalar_one()
    session.execute(update(refresh_tokens).where(live).values(revoked_at=now))
    return int(sessions)


# The statements of an admitted claim's transaction (the user, the throttle's upsert, its
# conditional update, two reads) and of a failed check's settlement (tests/auth/
# test_refusal_work.py counts them): a refused claim and its audit run as many, so that
# the round trips to the database, like the commits, do not tell an unknown or locked
# account from a wrong password (on MariaDB the seven missing ones took about 7 ms).
_CLAIM_STATEMENTS = 5
_FAILURE_STATEMENTS = 6


def _refused(session: Session, user_id: str | None, *, writes: int = 1) -> LoginClaim:
    """A claim refused (locked, or no such user): commit row writes all the same, as an
    admitted one does, so that the durable commit does not tell the cases apart by time.
    All to one slot: a transaction that took two rows' locks could deadlock another."""
    slot = secrets.randbelow(LOGIN_REFUSAL_SLOTS)
    for _ in range(writes):
        session.execute(
            update(login_refusals)
            .where(login_refusals.c.slot == slot)
            .values(refusals=login_refusals.c.refusals + 1)
        )
    return LoginClaim(user=None, locked=user_id is not None, user_id=user_id)


def _client_of(origin: Origin | None) -> str:
    return "" if origin is None or origin.client_ip is None else origin.client_ip


def _throttle_row(user_id: str, client: str) -> Any:
    return and_(login_throttles.c.user_id == user_id, login_throttles.c.client == client)


def _throttle(session: Session, user_id: str, client: str) -> ThrottleState:
    row = session.execute(
        select(
            login_throttles.c.failures, login_throttles.c.in_flight, login_throttles.c.locked_until
        ).where(_throttle_row(user_id, client))
    ).first()
    return ThrottleState() if row is None else ThrottleState(*row)


def _ensure_throttle(session: Session, user_id: str, client: str) -> None:
    """Create the (account, address) row if missing, taking its write lock either way.

    An upsert rather than INSERT IGNORE: on MySQL the latter takes a shared lock on an
    existing row, and two claims upgrading theirs to write the row would deadlock.
    """
    values = {"user_id": user_id, "client": client, "failures": 0, "in_flight": 0}
    if session.get_bind().dialect.name == "mysql":
        statement: Any = (
            mysql_insert(login_throttles)
            .values(**values)
            .on_duplicate_key_update(in_flight=login_throttles.c.in_flight)
        )
    else:
        statement = (
            sqlite_insert(login_throttles)
            .values(**values)
            .on_conflict_do_update(
                index_elements=["user_id", "client"],
                set_={"in_flight": login_throttles.c.in_flight},
            )
        )
    session.execute(statement)


def _released(in_flight: Any) -> Any:
    """One attempt fewer in flight, never below zero (an expired one may have been reset)."""
    return case((in_flight > 0, in_flight - 1), else_=0)


def _lock_user(session: Session, user_id: str) -> None:
    """Lock the user's row until commit (MySQL; SQLite holds one write lock for all)."""
    session.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())


def _count_account_failure(
    session: Session, user_id: str, now: datetime, policy: LockoutPolicy
) -> tuple[int, datetime] | None:
    """Count a failure on the account, from any address; the lock's facts if it engaged."""
    window = timedelta(seconds=policy.account_window_seconds)
    # A locking read: the latest row, ours until commit (a plain read would see this
    # transaction's snapshot under InnoDB's REPEATABLE READ and lose concurrent counts;
    # SQLite has no FOR UPDATE but holds its one write lock since the first write).
    user = _user(
        session.execute(select(users).where(users.c.id == user_id).with_for_update()).one()
    )
    started = user.failure_window_start
    if started is None or started <= now - window:
        failures, started = 1, now
    else:
        failures = user.failed_logins + 1
    locked_until = None
    if failures >= policy.account_threshold:
        # Locked now; counting starts afresh when the lock ends.
        locked_until = now + timedelta(seconds=policy.account_lock_seconds)
        changes: dict[str, Any] = {
            "failed_logins": 0,
            "failure_window_start": None,
            "locked_until": locked_until,
        }
    else:
        changes = {"failed_logins": failures, "failure_window_start": started}
    session.execute(update(users).where(users.c.id == user_id).values(**changes))
    if locked_until is None:
        return None
    return failures, locked_until


def _reset_lockout(session: Session, user_id: str) -> None:
    """No failures and no lock, for the account and every address."""
    session.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(failed_logins=0, locked_until=None, failure_window_start=None)
    )
    session.execute(delete(login_throttles).where(login_throttles.c.user_id == user_id))


def _utc(value: datetime) -> Any:
    return literal(value, UtcDateTime())


def _first(
    sessions: sessionmaker[Session], query: Select[Any], record: Callable[[Row[Any]], T]
) -> T | None:
    """The first row of query as a record; None when there is none."""
    with sessions() as session:
        row = session.execute(query).first()
    return None if row is None else record(row)


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


def _first_values(session: Session, column: Any, condition: Any, limit: int) -> Sequence[Any]:
    """The first `limit` distinct values of `column` in the rows meeting `condition`, in order."""
    query = select(column).where(condition).distinct().order_by(column).limit(limit)
    return session.execute(query).scalars().all()


def _in_batches(
    sessions: sessionmaker[Session], batch: Callable[[Session], int], batch_size: int
) -> int:
    """Run `batch` (deletes at most batch_size rows, says how many) a transaction at a time
    until one deletes fewer: a large backlog never holds long locks. The total deleted."""
    total = 0
    while True:
        deleted = _transaction(sessions, batch)
        total += deleted
        if deleted < batch_size:
            return total


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount


@dataclass(frozen=True)
class TotpRecord:
    user_id: str
    secret_ciphertext: str
    created_at: datetime
    confirmed_at: datetime | None
    last_used_step: int | None


class MfaRepository:
    """TOTP enrolments, recovery codes and logins waiting for their second factor.

    Each code is spent by one conditional statement (UPDATE of the last used step that
    only moves forward; DELETE of a recovery code), so of concurrent uses one wins.
    """

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def totp_of(self, user_id: str) -> TotpRecord | None:
        query = select(mfa_totp).where(mfa_totp.c.user_id == user_id)
        return _first(self._sessions, query, lambda row: TotpRecord(**row._asdict()))

    def enabled(self, user_id: str) -> bool:
        with self._sessions() as session:
            return _mfa_enabled(session, user_id)

    def enroll(self, user_id: str, secret_ciphertext: str, now: datetime) -> bool:
        """Store a new, unconfirmed secret in place of any unconfirmed one; False (nothing
        changed) when a second factor is on, or the user is gone."""

        def work(session: Session) -> bool:
            if _locked_user(session, user_id, now) is None or _mfa_enabled(session, user_id):
                return False
            session.execute(delete(mfa_totp).where(mfa_totp.c.user_id == user_id))
            session.execute(
                insert(mfa_totp).values(
                    user_id=user_id, secret_ciphertext=secret_ciphertext, created_at=now
                )
            )
            return True

        return _transaction(self._sessions, work)

    def confirm(
        self,
        user_id: str,
        secret_ciphertext: str,
        step: int,
        recovery_code_hashes: Sequence[str],
        event: NewEvent,
    ) -> bool:
        """Turn on the enrolment of this very secret, spending the code's step, with new
        recovery codes and the event; False when it is no longer the pending one."""

        def work(session: Session) -> bool:
            confirmed = session.execute(
                update(mfa_totp)
                .where(
                    mfa_totp.c.user_id == user_id,
                    mfa_totp.c.confirmed_at.is_(None),
                    mfa_totp.c.secret_ciphertext == secret_ciphertext,
                )
                .values(confirmed_at=event.created_at, last_used_step=step)
            )
            if _rowcount(confirmed) != 1:
                return False
            session.execute(
                delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id)
            )
            session.execute(
                insert(mfa_recovery_codes),
                [{"user_id": user_id, "code_hash": code} for code in recovery_code_hashes],
            )
            append_event(session, event)
            return True

        return _transaction(self._sessions, work)

    def spend_step(self, user_id: str, step: int) -> bool:
        """Accept a code of this time step: only if no code of it (or a later one) was."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(mfa_totp)
                .where(
                    mfa_totp.c.user_id == user_id,
                    mfa_totp.c.confirmed_at.is_not(None),
                    or_(mfa_totp.c.last_used_step.is_(None), mfa_totp.c.last_used_step < step),
                )
                .values(last_used_step=step)
            )
            return _rowcount(result) == 1

    def spend_recovery_code(self, user_id: str, code_hash: str) -> bool:
        with self._sessions.begin() as session:
            result = session.execute(
                delete(mfa_recovery_codes).where(
                    mfa_recovery_codes.c.user_id == user_id,
                    mfa_recovery_codes.c.code_hash == code_hash,
                )
            )
            return _rowcount(result) == 1

    def recovery_codes_left(self, user_id: str) -> int:
        with self._sessions() as session:
            return int(
                session.execute(
                    select(func.count()).where(mfa_recovery_codes.c.user_id == user_id)
                ).scalar_one()
            )

    def disable(self, user_id: str, event: NewEvent) -> bool:
        """Remove the second factor, its recovery codes and pending logins; the event only
        when one was on."""

        def work(session: Session) -> bool:
            if _locked_user(session, user_id, event.created_at) is None:
                return False
            removed = session.execute(
                delete(mfa_totp).where(
                    mfa_totp.c.user_id == user_id, mfa_totp.c.confirmed_at.is_not(None)
                )
            )
            if _rowcount(removed) != 1:
                return False
            session.execute(
                delete(mfa_recovery_codes).where(mfa_recovery_codes.c.user_id == user_id)
            )
            session.execute(delete(mfa_challenges).where(mfa_challenges.c.user_id == user_id))
            append_event(session, event)
            return True

        return _transaction(self._sessions, work)

    def add_challenge(
        self, token_hash: str, user_id: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a pending second-factor login; the user's expired ones go at the same time."""

        def work(session: Session) -> None:
            session.execute(
                delete(mfa_challenges).where(
                    mfa_challenges.c.user_id == user_id, mfa_challenges.c.expires_at <= now
                )
            )
            session.execute(
                insert(mfa_challenges).values(
                    token_hash=token_hash, user_id=user_id, created_at=now, expires_at=expires_at
                )
            )

        _transaction(self._sessions, work)

    def challenged_user(self, token_hash: str, now: datetime) -> str | None:
        """The user of a pending, unexpired challenge."""
        with self._sessions() as session:
            user_id: str | None = session.execute(
                select(mfa_challenges.c.user_id).where(
                    mfa_challenges.c.token_hash == token_hash, mfa_challenges.c.expires_at > now
                )
            ).scalar()
        return user_id

    def spend_challenge(self, token_hash: str, now: datetime) -> bool:
        """Use a challenge up: once only, and only before it expires."""
        with self._sessions.begin() as session:
            result = session.execute(
                delete(mfa_challenges).where(
                    mfa_challenges.c.token_hash == token_hash, mfa_challenges.c.expires_at > now
                )
            )
            return _rowcount(result) == 1


def _mfa_enabled(session: Session, user_id: str) -> bool:
    return (
        session.execute(
            select(mfa_totp.c.user_id).where(
                mfa_totp.c.user_id == user_id, mfa_totp.c.confirmed_at.is_not(None)
            )
        ).first()
        is not None
    )


def _mfa_enabled_of_many(session: Session, user_ids: Sequence[str]) -> frozenset[str]:
    if not user_ids:
        return frozenset()
    return frozenset(
        session.execute(
            select(mfa_totp.c.user_id).where(
                mfa_totp.c.user_id.in_(user_ids), mfa_totp.c.confirmed_at.is_not(None)
            )
        ).scalars()
    )


def _latest_locks(session: Session, records: Sequence[UserRecord]) -> dict[str, datetime]:
    """Per user, the end of the latest lock: account-wide or of any one address."""
    latest = {record.id: record.locked_until for record in records if record.locked_until}
    if records:
        rows = session.execute(
            select(login_throttles.c.user_id, func.max(login_throttles.c.locked_until))
            .where(login_throttles.c.user_id.in_([record.id for record in records]))
            .group_by(login_throttles.c.user_id)
        )
        for user_id, until in rows:
            # max() keeps the column's type: read back as aware UTC like the column.
            if until is not None and (latest.get(user_id) is None or until > latest[user_id]):
                latest[user_id] = until
    return {user_id: until for user_id, until in latest.items() if until is not None}
