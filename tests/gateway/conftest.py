"""Gateway tests run against fake upstreams on real gRPC servers (port 0)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from authgate_common.tokens import TokenSettings
from tests.fixtures.gateway_fixtures import GatewayClientFactory
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
def client(
    fakes: FakeUpstreams,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> FlaskClient:
    """A gateway in front of the fakes."""
    return gateway_client_factory(fakes.auth_target, fakes.profile_target, token_settings)
