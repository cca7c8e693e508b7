"""The audit log's vocabulary: event types, where a request came from, one event to append.

Events are appended by the repository in the transaction of the change they record
(see auth_svc.repository); this module holds no storage. An event's detail is a
small JSON object of facts (counts, role names, a session id) and never a password,
token, hash, code or secret: `NewEvent` refuses keys that look like one.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from auth_svc.models import CLIENT_IP_LENGTH, REQUEST_ID_LENGTH, USER_AGENT_LENGTH

# Keys that would name a credential; a detail holding one is a programming error.
_SECRET_KEY = re.compile(r"password|token|hash|secret|code|key", re.IGNORECASE)


class EventType(enum.StrEnum):
    REGISTER = "register"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOCKOUT_ENGAGED = "lockout_engaged"
    REFRESH_REUSE_DETECTED = "refresh_reuse_detected"
    LOGOUT = "logout"
    USER_DISABLED = "user_disabled"
    USER_ENABLED = "user_enabled"
    USER_UNLOCKED = "user_unlocked"
    ROLES_CHANGED = "roles_changed"
    SESSIONS_REVOKED = "sessions_revoked"
    # Recorded by the account features (DESIGN's "Accounts"); declared here with the rest.
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name
    SESSION_REVOKED = "session_revoked"
    MFA_ENABLED = "mfa_enabled"
    MFA_DISABLED = "mfa_disabled"
    ACCOUNT_DELETED = "account_deleted"


@dataclass(frozen=True)
class Origin:
    """Who asked and from where: the actor (an admin; None for the user themself or the
    command line), the client's address and User-Agent as the gateway saw them, and the
    request id. Values are bounded here so that storage never truncates them."""

    actor_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    request_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_ip", _ip_or_none(self.client_ip))
        object.__setattr__(self, "user_agent", _bounded(self.user_agent, USER_AGENT_LENGTH))
        object.__setattr__(self, "request_id", _bounded(self.request_id, REQUEST_ID_LENGTH))

    def acting(self, actor_id: str) -> Origin:
        return replace(self, actor_id=actor_id)


@dataclass(frozen=True)
class NewEvent:
    """An event to append; the repository may add facts it learns in the transaction."""

    type: EventType
    user_id: str | None
    origin: Origin
    created_at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_detail(self.detail)

    def with_detail(self, **facts: Any) -> NewEvent:
        return replace(self, detail={**self.detail, **facts})


def check_detail(detail: Mapping[str, Any]) -> None:
    for key in detail:
        if _SECRET_KEY.search(key):
            raise ValueError(f"audit detail must not hold a credential ({key!r})")


def _bounded(text: str | None, limit: int) -> str | None:
    if not text:
        return None
    return text[:limit]


def _ip_or_none(text: str | None) -> str | None:
    """A bare IP address in canonical form; anything else is not recorded."""
    if not text or len(text) > CLIENT_IP_LENGTH:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# Nothing known about the caller (in-process use); the command line is such a caller.
NO_ORIGIN = Origin()
COMMAND_LINE = NO_ORIGIN
