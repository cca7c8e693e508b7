"""The one notion of "now" every service reads: aware UTC, behind a type tests can replace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

# Called for the current time; tests pass a clock they move by hand.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)
