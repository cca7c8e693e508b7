"""Fixtures of the profile tests: the profile domain on a real database (SQLite and MariaDB)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from authgate_common.db import make_engine, make_sessions
from profile_svc.migrations import PROFILE_MIGRATIONS
from profile_svc.profiles import Profiles
from profile_svc.repository import ProfileRepository
from tests.profile.helpers import SteppingClock


@pytest.fixture
def profile_engine(database_url: str) -> Iterator[Engine]:
    PROFILE_MIGRATIONS.upgrade(database_url)
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def profiles(profile_engine: Engine, clock: SteppingClock) -> Profiles:
    return Profiles(ProfileRepository(make_sessions(profile_engine)), clock=clock)
