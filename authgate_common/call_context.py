"""Fields that the log line of the call being handled should carry, such as the user id.

The outermost interceptor opens a scope per RPC and logs its fields when the call
ends; code deeper in the same call (an authenticating interceptor, a servicer)
adds what only it knows. A ContextVar keeps calls on different worker threads
apart, and outside a scope noting is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Process-wide like a logger: it holds no configuration, only the current call's fields.
_fields: ContextVar[dict[str, str] | None] = ContextVar("authgate_call_fields", default=None)


@contextmanager
def call_scope() -> Iterator[None]:
    """A fresh set of fields for one call, read (noted_user) before the scope ends."""
    token = _fields.set({})
    try:
        yield
    finally:
        _fields.reset(token)


def note_user(user_id: str) -> None:
    """Record who the current call acts for (a user id, never a name or a secret)."""
    fields = _fields.get()
    if fields is not None and user_id:
        fields["user_id"] = user_id


def noted_user() -> str | None:
    """The user id noted for the current call, if any."""
    fields = _fields.get()
    return None if fields is None else fields.get("user_id")
