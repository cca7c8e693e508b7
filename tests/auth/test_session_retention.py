"""Pruning sessions whose refresh-token family expired longer ago than any access token lives.

Each login adds a session row and a refresh token, each refresh another token: without the
pruner the tables grow for good. What it deletes must already be refused (expired), and a
session still inside its lifetime stays, revoked or not.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import Engine

from auth_svc.models import refresh_tokens, sessions
from auth_svc.repository import RefreshTokenRepository
from auth_svc.retention import Pruner
from auth_svc.revocations import token_lifetime_bound
from auth_svc.service import INVALID_REFRESH_TOKEN, AuthService, TokenPair
from authgate_common.db import make_sessions
from authgate_common.errors import Unauthenticated
from authgate_common.tokens import TokenSettings
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock
from tests.fixtures.auth_fixtures import AuthServerFactory
from tests.harness import wait_until

FAMILY_SECONDS = 3600


@pytest.fixture
def service(service_factory: ServiceFactory) -> AuthService:
    """Sessions that live an hour, so that a test can outlive one."""
    return service_factory(refresh_family_max_seconds=FAMILY_SECONDS)


@pytest.fixture
def repository(auth_engine: Engine) -> RefreshTokenRepository:
    return RefreshTokenRepository(make_sessions(auth_engine))


def session_pruner(
    repository: RefreshTokenRepository,
    token_settings: TokenSettings,
    clock: SettableClock,
    interval_seconds: float = 3600,
) -> Pruner:
    """The pruner as auth_svc.server makes it."""
    return Pruner(
        "expired sessions",
        repository.prune_sessions,
        keep=token_lifetime_bound(token_settings),
        clock=clock,
        interval_seconds=interval_seconds,
    )


@pytest.fixture
def pruner(
    repository: RefreshTokenRepository, token_settings: TokenSettings, clock: SettableClock
) -> Pruner:
    return session_pruner(repository, token_settings, clock)


def alices_session(service: AuthService) -> TokenPair:
    service.register("alice", PASSWORD)
    return service.login("alice", PASSWORD)


def outlive_the_session(
    clock: SettableClock, token_settings: TokenSettings, *, by_seconds: float = 1
) -> None:
    """Move past the session's lifetime and an access token's lifetime after it."""
    lifetime = token_lifetime_bound(token_settings).total_seconds()
    clock.advance(FAMILY_SECONDS + lifetime + by_seconds)


def counts(engine: Engine) -> tuple[int, int]:
    """(session rows, refresh-token rows)."""
    with engine.connect() as connection:
        count = sqlalchemy.func.count()
        return (
            connection.execute(sqlalchemy.select(count).select_from(sessions)).scalar_one(),
            connection.execute(sqlalchemy.select(count).select_from(refresh_tokens)).scalar_one(),
        )


def test_a_session_expired_longer_ago_than_a_token_lives_goes_with_all_its_tokens(
    service: AuthService,
    pruner: Pruner,
    auth_engine: Engine,
    clock: SettableClock,
    token_settings: TokenSettings,
) -> None:
    service.refresh(alices_session(service).refresh_token)  # a second token in the family
    assert counts(auth_engine) == (1, 2)
    outlive_the_session(clock, token_settings)

    assert pruner.prune() == 1

    assert counts(auth_engine) == (0, 0)


def test_a_session_within_its_lifetime_stays_even_revoked(
    service: AuthService, pruner: Pruner, auth_engine: Engine, clock: SettableClock
) -> None:
    alices_session(service)
    service.logout(service.login("alice", PASSWORD).refresh_token)
    clock.advance(FAMILY_SECONDS - 1)

    assert pruner.prune() == 0

    assert counts(auth_engine) == (2, 2)


def test_an_expired_session_stays_while_a_token_minted_from_it_may_still_be_accepted(
    service: AuthService,
    pruner: Pruner,
    auth_engine: Engine,
    clock: SettableClock,
    token_settings: TokenSettings,
) -> None:
    pair = alices_session(service)
    outlive_the_session(clock, token_settings, by_seconds=-1)

    assert pruner.prune() == 0

    assert counts(auth_engine) == (1, 1)
    # Already refused as expired: pruning it later changes no answer.
    with pytest.raises(Unauthenticated, match=INVALID_REFRESH_TOKEN):
        service.refresh(pair.refresh_token)


def test_a_pruned_sessions_refresh_token_gets_the_same_refusal_as_an_expired_one(
    service: AuthService, pruner: Pruner, clock: SettableClock, token_settings: TokenSettings
) -> None:
    pair = alices_session(service)
    outlive_the_session(clock, token_settings)
    assert pruner.prune() == 1

    with pytest.raises(Unauthenticated, match=INVALID_REFRESH_TOKEN):
        service.refresh(pair.refresh_token)
    assert service.list_sessions(pair.user_id) == []


def test_only_the_expired_sessions_go(
    service: AuthService, pruner: Pruner, auth_engine: Engine, clock: SettableClock
) -> None:
    alices_session(service)
    clock.advance(FAMILY_SECONDS * 2)
    service.register("bob", PASSWORD)
    bobs = service.login("bob", PASSWORD)
    clock.advance(FAMILY_SECONDS / 2)

    assert pruner.prune() == 1

    assert counts(auth_engine) == (1, 1)
    assert len(service.list_sessions(bobs.user_id)) == 1


def test_pruning_works_through_a_backlog_in_batches(
    service: AuthService,
    repository: RefreshTokenRepository,
    auth_engine: Engine,
    clock: SettableClock,
) -> None:
    alices_session(service)
    for _ in range(4):
        service.login("alice", PASSWORD)
    clock.advance(FAMILY_SECONDS + 1)

    assert repository.prune_sessions(clock(), batch_size=2) == 5

    assert counts(auth_engine) == (0, 0)


def test_the_pruner_thread_prunes_at_start(
    service: AuthService,
    auth_engine: Engine,
    clock: SettableClock,
    token_settings: TokenSettings,
) -> None:
    alices_session(service)
    outlive_the_session(clock, token_settings)
    pruned = threading.Event()

    class Watched(RefreshTokenRepository):
        def prune_sessions(self, expired_before: Any, *, batch_size: int = 1000) -> int:
            deleted = super().prune_sessions(expired_before, batch_size=batch_size)
            pruned.set()
            return deleted

    pruner = session_pruner(Watched(make_sessions(auth_engine)), token_settings, clock)
    pruner.start()
    try:
        assert pruned.wait(10)
    finally:
        pruner.stop()
    assert counts(auth_engine) == (0, 0)


def test_the_auth_service_prunes_expired_sessions_once_started(
    service: AuthService,
    auth_server_factory: AuthServerFactory,
    auth_engine: Engine,
    clock: SettableClock,
    token_settings: TokenSettings,
) -> None:
    alices_session(service)
    outlive_the_session(clock, token_settings)

    auth_server_factory(clock=clock, refresh_family_max_seconds=FAMILY_SECONDS)

    wait_until(lambda: counts(auth_engine) == (0, 0), what="the expired session pruned")
