"""Helpers of the profile tests: identities, a stepping clock, the stored rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy
from sqlalchemy import Engine

from authgate_common.tokens import Identity
from profile_svc.models import profiles as profiles_table


def make_identity(
    *,
    user_id: str | None = None,
    username: str = "alice",
    email: str = "alice@example.com",
    display_name: str = "Alice Example",
) -> Identity:
    return Identity(
        user_id=user_id or str(uuid.uuid4()),
        username=username,
        email=email,
        display_name=display_name,
        token_id=uuid.uuid4().hex,
        expires_at=2_000_000_000,
    )


@dataclass
class SteppingClock:
    """A clock that moves one second per reading, so updates get distinct times."""

    now: datetime = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def profile_rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        result = connection.execute(sqlalchemy.select(profiles_table))
        return [dict(row._mapping) for row in result]
