"""The gateway is not ready, and refuses tokens as unavailable, without a revocation feed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask.testing import FlaskClient

from authgate_common.grpc_server import RunningServer, ServerSettings, start_server
from authgate_common.revocation import RevocationSet
from authgate_common.settings import RevocationSettings
from authgate_common.tokens import TokenSettings
from gateway.app import EXTENSION
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.gateway.fake_upstreams import (
    FakeRevocationService,
    FakeUpstreams,
    Recorder,
    TokenMinter,
    start_fake_auth,
    start_fake_profile,
)
from tests.harness import wait_until
from tests.observability.metrics_text import sample
from tests.revocation.helpers import ManualClock


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
        fakes.profile.target,
        token_settings,
        revocation=RevocationSettings(initial_sync_seconds=0.5),
    )

    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "revocation feed" in ready.get_json()["detail"]
    token = fakes.minter.mint("user-1")
    response = client.get("/v1/profile", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503


def test_with_the_feed_readyz_is_200(client: FlaskClient) -> None:
    assert client.get("/readyz").status_code == 200


@dataclass(frozen=True)
class OwnUpstreams:
    """Fake upstreams of the test's own, whose revocation feed it can silence."""

    minter: TokenMinter
    feed: FakeRevocationService
    auth_target: str
    profile_target: str


@pytest.fixture
def own_upstreams(token_settings: TokenSettings) -> Iterator[OwnUpstreams]:
    minter = TokenMinter(token_settings)
    feed = FakeRevocationService([minter.kid])
    auth, _ = start_fake_auth(minter, Recorder(), feed)
    profile, _ = start_fake_profile(Recorder())
    yield OwnUpstreams(minter, feed, f"127.0.0.1:{auth.port}", f"127.0.0.1:{profile.port}")
    auth.stop(0)
    profile.stop(0)


def test_a_feed_that_went_silent_is_trusted_up_to_the_bound_then_readyz_and_tokens_503(
    own_upstreams: OwnUpstreams,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> None:
    # The auth service stays SERVING; only its feed is silent (e.g. its database is away).
    bound = RevocationSettings(max_staleness_seconds=30.0)
    feed = own_upstreams.feed
    client = gateway_client_factory(
        own_upstreams.auth_target,
        own_upstreams.profile_target,
        token_settings,
        revocation=bound,
    )
    subscriber = client.application.extensions[EXTENSION]["revocations"]
    clock = ManualClock()
    subscriber.revocations = RevocationSet(bound, clock=clock)  # before its first use
    token = {"Authorization": f"Bearer {own_upstreams.minter.mint('user-1')}"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/profile", headers=token).status_code == 200
    assert _gauge(client, "connected") == 1
    feed.silent.set()

    clock.now += 29.0  # within the bound: nothing changes for clients
    wait_until(lambda: _gauge(client, "lag_seconds") >= 29.0, what="the lag reported")
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/profile", headers=token).status_code == 200

    clock.now += 2.0  # past it: not ready, and every token refused as unavailable
    wait_until(lambda: _gauge(client, "lag_seconds") > 30.0, what="the lag past the bound")
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert "revocation feed" in ready.get_json()["detail"]
    refused = client.get("/v1/profile", headers=token)
    assert refused.status_code == 503
    assert refused.headers["Content-Type"] == "application/problem+json"

    feed.silent.clear()  # back: ready again, tokens accepted
    wait_until(lambda: client.get("/readyz").status_code == 200, what="ready again")
    assert client.get("/v1/profile", headers=token).status_code == 200
    assert _gauge(client, "lag_seconds") < 30.0


@pytest.mark.serial
def test_a_silent_stream_is_dropped_and_opened_again_before_the_bound(
    own_upstreams: OwnUpstreams,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> None:
    client = gateway_client_factory(
        own_upstreams.auth_target,
        own_upstreams.profile_target,
        token_settings,
        revocation=RevocationSettings(max_staleness_seconds=4.0),
    )
    feed = own_upstreams.feed
    assert client.get("/readyz").status_code == 200
    assert feed.streams == 1
    feed.silent.set()

    # Silent for half the bound (2 s): a new stream, maybe to a replica that works.
    wait_until(lambda: feed.streams >= 2, within=4.0, what="a new stream")
    feed.silent.clear()
    wait_until(lambda: _gauge(client, "connected") == 1, what="connected again")
    assert client.get("/readyz").status_code == 200


def _gauge(client: FlaskClient, name: str) -> float:
    text = client.get("/metrics").get_data(as_text=True)
    return sample(text, f"authgate_revocation_feed_{name}")
