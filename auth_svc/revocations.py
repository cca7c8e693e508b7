"""The revocation log: access tokens no longer honoured, by user, session or signing key,
and roles taken from a user (their earlier tokens keep only the roles the user still has).

The admin and account code writes a revocation with the change that causes it, in
the SAME transaction (pass the SQLAlchemy session in): no change without its
revocation, no revocation without its change. The feed (auth_svc.revocation_feed)
reads the table and pushes new rows to every verifier within a second.

Ids come from the one row of `revocation_sequence`, incremented in the writer's
transaction; its row lock is held until commit, so writers commit in id order and
a reader that has seen id N has seen every committed id below it (no gap fills in
later). This module alone knows the SQL of both tables.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from auth_svc.models import (
    REVOCATION_SEQUENCE,
    refresh_tokens,
    revocation_sequence,
    revocations,
)
from authgate_common.revocation import RevocationSet
from authgate_common.tokens import TokenSettings

log = logging.getLogger(__name__)


class RevocationKind(enum.StrEnum):
    USER = "user"
    SESSION = "session"
    KEY = "key"
    # Not a refusal: the user's earlier tokens are narrowed to the roles in the row.
    ROLES = "roles"


@dataclass(frozen=True)
class RevocationRecord:
    id: int
    kind: RevocationKind
    subject: str
    not_before: datetime
    created_at: datetime
    expires_at: datetime
    # Kind ROLES only: the user's roles right after the change.
    roles: frozenset[str] = frozenset()

    def apply_to(self, revocations: RevocationSet) -> None:
        """Hand this row to a set of revocations (the feed's own, or a verifier's)."""
        revocations.apply(
            self.kind.value,
            self.subject,
            self.not_before,
            self.expires_at,
            roles=self.roles,
            revocation_id=self.id,
        )


def token_lifetime_bound(settings: TokenSettings) -> timedelta:
    """How long after its `iat` any verifier may still accept a token: then a row can go."""
    return timedelta(seconds=settings.max_lifetime_seconds + settings.leeway_seconds)


class RevocationLog:
    """Writes revocations in the caller's transaction; reads them for the feed."""

    def __init__(self, sessions: sessionmaker[Session], *, token_lifetime: timedelta) -> None:
        self._sessions = sessions
        self._lifetime = token_lifetime

    def revoke_user(
        self,
        session: Session,
        user_id: str,
        *,
        reason: str,
        at: datetime,
        end_sessions: bool = True,
    ) -> int:
        """Refuse the user's access tokens issued at or before `at`; the revocation's id.

        With end_sessions (disable, revoke-sessions, password change, deletion) every
        refresh-token family of the user is revoked too, so no refresh works any more;
        False when the caller ended (and counted) them itself, or keeps the sessions (their
        next refresh is honoured). A role removal narrows instead: see revoke_roles.
        Call it last in the transaction: it holds the feed's sequence lock until commit.
        """
        if end_sessions:
            session.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.user_id == user_id, refresh_tokens.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        revocation_id = self._insert(session, RevocationKind.USER, user_id, at)
        log.info(
            "access tokens revoked",
            extra={"user_id": user_id, "reason": reason, "revocation_id": revocation_id},
        )
        return revocation_id

    def revoke_roles(
        self,
        session: Session,
        user_id: str,
        remaining: frozenset[str],
        *,
        reason: str,
        at: datetime,
    ) -> int:
        """Narrow the user's access tokens issued at or before `at` to `remaining` (the
        user's roles after a removal); the revocation's id.

        The tokens keep working for everything else (403 where a removed role is needed,
        not 401), and the sessions live on: a refresh gives a token with the roles as they
        are. Call it last in the transaction, after the roles changed, as revoke_user.
        """
        revocation_id = self._insert(session, RevocationKind.ROLES, user_id, at, roles=remaining)
        log.info(
            "roles revoked from access tokens",
            extra={"user_id": user_id, "reason": reason, "revocation_id": revocation_id},
        )
        return revocation_id

    def revoke_session(
        self, session: Session, user_id: str, session_id: str, *, reason: str, at: datetime
    ) -> int:
        """Refuse the session's (`sid`) access tokens and revoke its refresh-token family."""
        session.execute(
            update(refresh_tokens)
            .where(
                refresh_tokens.c.family_id == session_id,
                refresh_tokens.c.user_id == user_id,
                refresh_tokens.c.revoked_at.is_(None),
            )
            .values(revoked_at=at)
        )
        revocation_id = self._insert(session, RevocationKind.SESSION, session_id, at)
        log.info(
            "session revoked",
            extra={
                "user_id": user_id,
                "session_id": session_id,
                "reason": reason,
                "revocation_id": revocation_id,
            },
        )
        return revocation_id

    def revoke_keys(self, kids: Sequence[str], at: datetime) -> list[int]:
        """Refuse every token signed by these keys (they left the keys folder), in one go."""
        if not kids:
            return []
        with self._sessions.begin() as session:
            ids = [self._insert(session, RevocationKind.KEY, kid, at) for kid in kids]
        log.warning("signing keys revoked", extra={"kids": list(kids), "revocation_ids": ids})
        return ids

    def _insert(
        self,
        session: Session,
        kind: RevocationKind,
        subject: str,
        at: datetime,
        *,
        roles: frozenset[str] | None = None,
    ) -> int:
        if at.tzinfo is None:
            raise ValueError("naive datetime: pass timezone-aware UTC times")
        # The row lock taken here orders concurrent writers (see the module docstring).
        session.execute(
            update(revocation_sequence)
            .where(revocation_sequence.c.name == REVOCATION_SEQUENCE)
            .values(last_id=revocation_sequence.c.last_id + 1)
        )
        revocation_id = int(
            session.execute(
                select(revocation_sequence.c.last_id).where(
                    revocation_sequence.c.name == REVOCATION_SEQUENCE
                )
            ).scalar_one()
        )
        session.execute(
            insert(revocations).values(
                id=revocation_id,
                kind=kind.value,
                subject=subject,
                not_before=at,
                created_at=datetime.now(UTC),
                expires_at=at + self._lifetime,
                roles=None if roles is None else encode_roles(roles),
            )
        )
        return revocation_id

    def last_id(self) -> int:
        """The id of the newest revocation committed (0: none ever)."""
        with self._sessions() as session:
            value = session.execute(
                select(revocation_sequence.c.last_id).where(
                    revocation_sequence.c.name == REVOCATION_SEQUENCE
                )
            ).scalar_one()
        return int(value)

    def live_after(self, after_id: int, now: datetime, *, limit: int) -> list[RevocationRecord]:
        """Unexpired revocations with an id above after_id, oldest first, at most limit."""
        with self._sessions() as session:
            rows = session.execute(
                select(revocations)
                .where(revocations.c.id > after_id, revocations.c.expires_at > now)
                .order_by(revocations.c.id)
                .limit(limit)
            ).all()
        return [_record(row) for row in rows]

    def prune(self, now: datetime) -> int:
        """Delete the rows every token they could refuse has outlived; how many."""
        with self._sessions.begin() as session:
            result = session.execute(delete(revocations).where(revocations.c.expires_at <= now))
        return _rowcount(result)

    def latest_user_not_before(self, user_id: str) -> datetime | None:
        """The latest instant up to which the user's tokens are refused or narrowed."""
        with self._sessions() as session:
            value = session.execute(
                select(func.max(revocations.c.not_before)).where(
                    revocations.c.kind.in_([RevocationKind.USER.value, RevocationKind.ROLES.value]),
                    revocations.c.subject == user_id,
                )
            ).scalar_one_or_none()
        if not isinstance(value, datetime):
            return None
        # func.max loses the column type on some dialects: make it aware UTC again.
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def first_honoured_iat(self, user_id: str, iat: int) -> int:
        """The earliest `iat` (whole seconds) a new token of the user may carry.

        `iat` has whole seconds and a revocation refuses (or, of roles, narrows) tokens with
        `iat <= not_before`, so a token issued in the same second as a revocation of its
        user would be refused or lose a role granted since: it must carry the next second.
        """
        not_before = self.latest_user_not_before(user_id)
        if not_before is None:
            return iat
        return max(iat, math.floor(not_before.timestamp()) + 1)


def encode_roles(roles: frozenset[str]) -> str:
    """The `roles` column: role names sorted, space-separated (a name holds no space)."""
    if any(not role or " " in role for role in roles):
        raise ValueError("a role name is empty or holds a space")
    return " ".join(sorted(roles))


def _record(row: Any) -> RevocationRecord:
    values = row._asdict()
    values["kind"] = RevocationKind(values["kind"])
    values["roles"] = frozenset((values["roles"] or "").split())
    return RevocationRecord(**values)


def _rowcount(result: Any) -> int:
    assert isinstance(result, CursorResult)
    return result.rowcount
