"""Pruning sessions whose refresh-token family expired longer ago than any access token lives.

Each login adds a session row and a refresh token, each refresh another token: without the
pruner the tables grow for good. What it deletes must already be refused (expired), and a
session still inside its lifetime stays, revoked or not.
"""

from __future__ import annotations

from collections.abc import Callable

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


@pytest.fixture
def pruner(
    repository: RefreshTokenRepository, token_settings: TokenSettings, clock: SettableClock
) -> Pruner:
    """The pruner as auth_svc.server makes it (its thread: tests/auth/test_audit.py)."""
    return Pruner(
        "expired sessions",
        repository.prune_sessions,
        keep=token_lifetime_bound(token_settings),
        clock=clock,
    )


def alices_session(service: AuthService) -> TokenPair:
    service.register("alice", PASSWORD)
    return service.login("alice", PASSWORD)


Outlive = Callable[..., None]
Stored = Callable[[], tuple[int, int]]


@pytest.fixture
def outlive(clock: SettableClock, token_settings: TokenSettings) -> Outlive:
    """outlive(by_seconds=1): move past the session's lifetime and an access token's
    lifetime after it."""
    lifetime = token_lifetime_bound(token_settings).total_seconds()

    def advance(by_seconds: float = 1) -> None:
        clock.advance(FAMILY_SECONDS + lifetime + by_seconds)

    return advance


@pytest.fixture
def stored(auth_engine: Engine) -> Stored:
    """stored() -> (session rows, refresh-token rows)."""

    def count() -> tuple[int, int]:
        with auth_engine.connect() as connection:
            rows = sqlalchemy.func.count()
            return (
                connection.execute(sqlalchemy.select(rows).select_from(sessions)).scalar_one(),
                connection.execute(
                    sqlalchemy.select(rows).select_from(refresh_tokens)
                ).scalar_one(),
            )

    return count


def test_a_session_expired_longer_ago_than_a_token_lives_goes_with_all_its_tokens(
    service: AuthService, pruner: Pruner, outlive: Outlive, stored: Stored
) -> None:
    service.refresh(alices_session(service).refresh_token)  # a second token in the family
    assert stored() == (1, 2)
    outlive()

    assert pruner.prune() == 1

    assert stored() == (0, 0)


def test_a_session_within_its_lifetime_stays_even_revoked(
    service: AuthService, pruner: Pruner, stored: Stored, clock: SettableClock
) -> None:
    alices_session(service)
    service.logout(service.login("alice", PASSWORD).refresh_token)
    clock.advance(FAMILY_SECONDS - 1)

    assert pruner.prune() == 0

    assert stored() == (2, 2)


def test_an_expired_session_stays_while_a_token_minted_from_it_may_still_be_accepted(
    service: AuthService, pruner: Pruner, outlive: Outlive, stored: Stored
) -> None:
    pair = alices_session(service)
    outlive(by_seconds=-1)

    assert pruner.prune() == 0

    assert stored() == (1, 1)
    # Already refused as expired: pruning it later changes no answer.
    with pytest.raises(Unauthenticated, match=INVALID_REFRESH_TOKEN):
        service.refresh(pair.refresh_token)


def test_a_pruned_sessions_refresh_token_gets_the_same_refusal_as_an_expired_one(
    service: AuthService, pruner: Pruner, outlive: Outlive
) -> None:
    pair = alices_session(service)
    outlive()
    assert pruner.prune() == 1

    with pytest.raises(Unauthenticated, match=INVALID_REFRESH_TOKEN):
        service.refresh(pair.refresh_token)
    assert service.list_sessions(pair.user_id) == []


def test_only_the_expired_sessions_go(
    service: AuthService, pruner: Pruner, stored: Stored, clock: SettableClock
) -> None:
    alices_session(service)
    clock.advance(FAMILY_SECONDS * 2)
    service.register("bob", PASSWORD)
    bobs = service.login("bob", PASSWORD)
    clock.advance(FAMILY_SECONDS / 2)

    assert pruner.prune() == 1

    assert stored() == (1, 1)
    assert len(service.list_sessions(bobs.user_id)) == 1


def test_pruning_works_through_a_backlog_in_batches(
    service: AuthService,
    repository: RefreshTokenRepository,
    stored: Stored,
    clock: SettableClock,
) -> None:
    alices_session(service)
    for _ in range(4):
        service.login("alice", PASSWORD)
    clock.advance(FAMILY_SECONDS + 1)

    assert repository.prune_sessions(clock(), batch_size=2) == 5

    assert stored() == (0, 0)


def test_the_auth_service_prunes_expired_sessions_once_started(
    service: AuthService,
    auth_server_factory: AuthServerFactory,
    outlive: Outlive,
    stored: Stored,
    clock: SettableClock,
) -> None:
    alices_session(service)
    outlive()

    auth_server_factory(clock=clock, refresh_family_max_seconds=FAMILY_SECONDS)

    wait_until(lambda: stored() == (0, 0), what="the expired session pruned")
