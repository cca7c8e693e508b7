"""Gateway tests run against fake upstreams on real gRPC servers (port 0)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from auth_svc.server import AuthServer
from authgate_common.tokens import TokenSettings
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.fixtures.profile_fixtures import ProfileServerFactory
from tests.gateway.fake_upstreams import FakeUpstreams, start_fake_upstreams


@pytest.fixture(scope="session")
def session_fakes(token_settings: TokenSettings) -> Iterator[FakeUpstreams]:
    fakes = start_fake_upstreams(token_settings)
    yield fakes
    fakes.stop()


@pytest.fixture
def fakes(session_fakes: FakeUpstreams) -> FakeUpstreams:
    """The fake upstreams, emptied and with default behaviour for this test."""
    session_fakes.reset()
    return session_fakes


@pytest.fixture
def fakes_client_factory(
    fakes: FakeUpstreams,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> GatewayClientFactory:
    """factory(**GatewayConfig overrides) -> a gateway in front of the fakes."""

    def make(**config: Any) -> FlaskClient:
        return gateway_client_factory(
            fakes.auth.target, fakes.profile.target, token_settings, **config
        )

    return make


@pytest.fixture
def client(fakes_client_factory: GatewayClientFactory) -> FlaskClient:
    """A gateway in front of the fakes."""
    return fakes_client_factory()


@pytest.fixture
def stack_client(
    auth_server: AuthServer,
    profile_server_factory: ProfileServerFactory,
    database_url: str,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> FlaskClient:
    """The gateway in front of the real auth and profile services, on `database_url`.

    Its rate limits are the ones the protos declare (Login: 10/minute), counted in memory.
    """
    profile = profile_server_factory(database_url, auth_target=auth_server.target)
    return gateway_client_factory(auth_server.target, f"127.0.0.1:{profile.port}", token_settings)
