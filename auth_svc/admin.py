"""Administration of users: list, get, disable, enable, unlock, roles, sessions, audit log.

Knows nothing of gRPC or SQL. Who may call it is decided before (the `required_roles`
option, enforced by the gateway and by auth_svc's interceptor); this module keeps the
rules that hold whoever calls: an admin cannot disable themself or take `admin` from
themself (so an installation cannot lock itself out), unknown users are NotFound, and
every change is audited in its own transaction (see AdminRepository).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from auth_svc import rules
from auth_svc.audit import EventType, NewEvent, Origin
from auth_svc.models import ID_LENGTH
from auth_svc.paging import INVALID_PAGE_TOKEN, decode_page_token, encode_page_token, page_size
from auth_svc.repository import AdminRepository, AuditRepository, StoredEvent, UserView
from authgate_common.errors import InvalidArgument, NotFound

log = logging.getLogger(__name__)

ADMIN_ROLE = "admin"
USER_NOT_FOUND = "no user has this id"
_KNOWN_EVENT_TYPES = frozenset(str(event_type) for event_type in EventType)

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class Administration:
    def __init__(
        self,
        admin: AdminRepository,
        audit: AuditRepository,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self._admin = admin
        self._audit = audit
        self._clock = clock

    def list_users(self, *, username_prefix: str, size: int, page_token: str) -> Page[UserView]:
        limit = page_size(size)
        prefix = rules.normalize_username(username_prefix)
        filters = {"username_prefix": prefix}
        position = decode_page_token(page_token, "users", filters)
        after = None if position is None else _user_cursor(position)
        found = self._admin.list_users(username_prefix=prefix, after=after, limit=limit + 1)
        items, more = found[:limit], len(found) > limit
        token = ""
        if more:
            last = items[-1].user
            token = encode_page_token("users", filters, [last.created_at.isoformat(), last.id])
        return Page(items, token)

    def user(self, user_id: str) -> UserView:
        _check_id(user_id)
        return self._found(self._admin.user(user_id))

    def disable(self, user_id: str, origin: Origin) -> UserView:
        if user_id == origin.actor_id:
            raise InvalidArgument("an administrator cannot disable themself")
        _check_id(user_id)
        event = self._event(EventType.USER_DISABLED, user_id, origin)
        return self._found(self._admin.set_disabled(user_id, True, event))

    def enable(self, user_id: str, origin: Origin) -> UserView:
        _check_id(user_id)
        event = self._event(EventType.USER_ENABLED, user_id, origin)
        return self._found(self._admin.set_disabled(user_id, False, event))

    def unlock(self, user_id: str, origin: Origin) -> UserView:
        _check_id(user_id)
        event = self._event(EventType.USER_UNLOCKED, user_id, origin)
        return self._found(self._admin.unlock(user_id, event))

    def set_roles(self, user_id: str, roles: list[str], origin: Origin) -> UserView:
        wanted = rules.check_roles(roles)
        if user_id == origin.actor_id and ADMIN_ROLE not in wanted:
            raise InvalidArgument("an administrator cannot remove their own admin role")
        _check_id(user_id)
        event = self._event(EventType.ROLES_CHANGED, user_id, origin)
        return self._found(self._admin.change_roles(user_id, lambda _current: wanted, event))

    def revoke_sessions(self, user_id: str, origin: Origin) -> None:
        _check_id(user_id)
        event = self._event(EventType.SESSIONS_REVOKED, user_id, origin)
        if not self._admin.revoke_sessions(user_id, event):
            raise NotFound(USER_NOT_FOUND)

    def grant_role(self, username: str, role: str, origin: Origin) -> UserView:
        """Add one role to the user named username (the bootstrap command)."""
        checked = rules.check_role(role)

        def add(current: frozenset[str]) -> frozenset[str]:
            wanted = current | {checked}
            if len(wanted) > rules.MAX_ROLES_PER_USER:
                raise InvalidArgument(f"a user has at most {rules.MAX_ROLES_PER_USER} roles")
            return wanted

        return self._change_by_username(username, add, origin)

    def revoke_role(self, username: str, role: str, origin: Origin) -> UserView:
        checked = rules.check_role(role)
        return self._change_by_username(username, lambda current: current - {checked}, origin)

    def events(
        self, *, user_id: str, event_type: str, size: int, page_token: str
    ) -> Page[StoredEvent]:
        limit = page_size(size)
        if event_type and event_type not in _KNOWN_EVENT_TYPES:
            raise InvalidArgument("type must be one of " + ", ".join(sorted(_KNOWN_EVENT_TYPES)))
        filters = {"user_id": user_id, "type": event_type}
        position = decode_page_token(page_token, "audit_events", filters)
        before = None if position is None else _event_cursor(position)
        found = self._audit.events(
            user_id=user_id, event_type=event_type, before_id=before, limit=limit + 1
        )
        items, more = found[:limit], len(found) > limit
        token = encode_page_token("audit_events", filters, [items[-1].id]) if more else ""
        return Page(items, token)

    def _change_by_username(
        self, username: str, change: Callable[[frozenset[str]], frozenset[str]], origin: Origin
    ) -> UserView:
        found = self._admin.user_by_username(rules.normalize_username(username))
        if found is None:
            raise NotFound(f"no user is named {username!r}")
        user_id = found.user.id
        return self._found(
            self._admin.change_roles(
                user_id, change, self._event(EventType.ROLES_CHANGED, user_id, origin)
            )
        )

    def _event(self, event_type: EventType, user_id: str, origin: Origin) -> NewEvent:
        return NewEvent(event_type, user_id, origin, self._clock())

    @staticmethod
    def _found(view: UserView | None) -> UserView:
        if view is None:
            raise NotFound(USER_NOT_FOUND)
        return view


def _check_id(user_id: str) -> None:
    """Ids longer than any we issue name no user; refused before reaching storage."""
    if not 0 < len(user_id) <= ID_LENGTH:
        raise NotFound(USER_NOT_FOUND)


def _user_cursor(position: list[object]) -> tuple[datetime, str]:
    try:
        created_text, user_id = position
        if not isinstance(created_text, str) or not isinstance(user_id, str):
            raise ValueError
        created_at = datetime.fromisoformat(created_text)
        if created_at.tzinfo is None:
            raise ValueError
    except ValueError:
        raise InvalidArgument(INVALID_PAGE_TOKEN) from None
    return created_at, user_id


def _event_cursor(position: list[object]) -> int:
    if len(position) != 1 or type(position[0]) is not int:
        raise InvalidArgument(INVALID_PAGE_TOKEN)
    return position[0]
