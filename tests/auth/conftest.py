"""Helpers of the auth tests: a settable clock, a domain service on the test database."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from auth_svc.config import AuthConfig
from auth_svc.keys import KeyRing
from auth_svc.lockout import LockoutPolicy
from auth_svc.repository import UserRepository
from auth_svc.server import AuthServer, build_service
from auth_svc.service import AuthService, RegisteredUser
from authgate_common.db import make_engine, make_sessions
from authgate_common.jwks import JwksCache
from authgate_common.tokens import TokenSettings, TokenVerifier
from tests.fixtures.auth_fixtures import AuthServerFactory

PASSWORD = "correct horse battery staple"


@dataclass
class SettableClock:
    """A clock the test moves by hand; starts at the real current time."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock()


@pytest.fixture
def auth_engine(auth_config: AuthConfig) -> Iterator[Engine]:
    engine = make_engine(auth_config.database_url)  # migrated by auth_config's fixture
    yield engine
    engine.dispose()


@pytest.fixture
def key_ring(auth_config: AuthConfig) -> KeyRing:
    return KeyRing.load(auth_config.keys_dir)


ServiceFactory = Callable[..., AuthService]


@pytest.fixture
def service_factory(
    auth_config: AuthConfig, auth_engine: Engine, key_ring: KeyRing, clock: SettableClock
) -> ServiceFactory:
    """factory(**AuthConfig overrides) -> an AuthService on the test database and clock."""

    def factory(**overrides: Any) -> AuthService:
        config = dataclasses.replace(auth_config, **overrides)
        return build_service(config, auth_engine, key_ring, clock=clock)

    return factory


@pytest.fixture
def auth_service(service_factory: ServiceFactory) -> AuthService:
    return service_factory()


@pytest.fixture
def users(auth_engine: Engine) -> UserRepository:
    return UserRepository(make_sessions(auth_engine))


@pytest.fixture
def alice(auth_service: AuthService) -> RegisteredUser:
    return auth_service.register(
        "Alice", PASSWORD, email="alice@example.com", display_name="Alice Liddell"
    )


LockoutServerFactory = Callable[[LockoutPolicy], AuthServer]


@pytest.fixture
def lockout_server(
    auth_server_factory: AuthServerFactory, clock: SettableClock
) -> LockoutServerFactory:
    """factory(policy) -> a started in-process auth server on the test database and clock."""

    def factory(policy: LockoutPolicy) -> AuthServer:
        # A burst of parallel logins waits for a hash slot (as with harness.CHEAP_ARGON2_ENV)
        # instead of meeting the 2 s bound meant for floods on a busy machine.
        return auth_server_factory(lockout=policy, hash_queue_timeout_seconds=30.0, clock=clock)

    return factory


def verifier_for(ring: KeyRing, settings: TokenSettings) -> TokenVerifier:
    """A verifier as the gateway builds one, fed from the ring's JWKS instead of gRPC."""
    cache = JwksCache(lambda: ring.jwks("RS256"), allowed_algorithms=settings.algorithms)
    return TokenVerifier(settings, cache)
