"""Storage details the domain relies on, on SQLite and MariaDB."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine

from authgate_common.db import make_sessions
from profile_svc.models import Profile
from profile_svc.repository import ProfileRepository

MOMENT = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _profile(user_id: str, display_name: str = "First") -> Profile:
    return Profile(user_id, "alice", display_name, "", "", MOMENT, MOMENT)


@pytest.fixture
def repository(profile_engine: Engine) -> ProfileRepository:
    return ProfileRepository(make_sessions(profile_engine))


def test_losing_an_insert_race_returns_the_winners_row(
    repository: ProfileRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    winner = repository.get_or_create(_profile("u-1", "Winner"))
    real_find = repository.find
    lookups = iter([None])  # the first lookup happens "before" the winner's insert

    def find_as_if_racing(user_id: str) -> Profile | None:
        return next(lookups, None) or real_find(user_id)

    monkeypatch.setattr(repository, "find", find_as_if_racing)

    assert repository.get_or_create(_profile("u-1", "Loser")) == winner


def test_update_of_a_missing_profile_returns_none(repository: ProfileRepository) -> None:
    assert repository.update("nobody", {"bio": "x"}, MOMENT) is None


def test_update_refuses_columns_that_are_not_editable(repository: ProfileRepository) -> None:
    repository.get_or_create(_profile("u-1"))

    with pytest.raises(ValueError, match="user_id"):
        repository.update("u-1", {"user_id": "u-2"}, MOMENT)


def test_times_in_other_zones_are_stored_as_the_same_instant(
    repository: ProfileRepository,
) -> None:
    elsewhere = MOMENT.astimezone(timezone(timedelta(hours=-5)))
    repository.get_or_create(replace(_profile("u-1"), created_at=elsewhere, updated_at=elsewhere))

    stored = repository.find("u-1")

    assert stored is not None
    assert stored.created_at == MOMENT
    assert stored.created_at.tzinfo == UTC
