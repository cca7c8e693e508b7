"""The gateway is not ready, and refuses tokens as unavailable, without a revocation feed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from authgate_common.grpc_server import RunningServer, ServerSettings, start_server
from authgate_common.settings import RevocationSettings
from authgate_common.tokens import TokenSettings
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.gateway.fake_upstreams import FakeUpstreams


@pytest.fixture
def auth_without_feed() -> Iterator[RunningServer]:
    """An auth upstream that is SERVING but has no RevocationService (e.g. an old version)."""
    server = start_server(
        ServerSettings(host="127.0.0.1", port=0, max_workers=4),
        register=lambda _server: None,
        service_names=[],
    )
    yield server
    server.stop(0)


def test_without_a_feed_readyz_is_503_and_tokens_are_503(
    auth_without_feed: RunningServer,
    fakes: FakeUpstreams,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> None:
    client = gateway_client_factory(
        f"127.0.0.1:{auth_without_feed.port}",
        fakes.profile_target,
        token_settings,
        revocation=RevocationSettings(initial_sync_seconds=0.5),
    )

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "revocation feed" in ready.get_json()["detail"]
    token = fakes.minter.mint("user-1")
    response = client.get("/v1/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503


def test_with_the_feed_readyz_is_200(
    fakes: FakeUpstreams,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> None:
    client = gateway_client_factory(fakes.auth_target, fakes.profile_target, token_settings)

    assert client.get("/readyz").status_code == 200
