"""Per-client-IP rate limits at the gateway: 429 problem+json with Retry-After.

The first test runs against the real auth and profile services (SQLite and MariaDB);
the others against the fake upstreams, which record what reached them.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from gateway.rate_limiter import RateLimiter
from gateway.rate_limits import RateLimitSettings, parse_rate_limit
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.gateway.fake_upstreams import FakeUpstreams

PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"
CLIENT_A = "198.51.100.1"
CLIENT_B = "198.51.100.2"
LOGIN = "/v1/auth/login"
LOGIN_RPC = "Login"


def from_address(address: str, **headers: str) -> dict[str, Any]:
    """Test-client keywords for a request whose TCP peer is `address`."""
    return {"environ_base": {"REMOTE_ADDR": address}, "headers": headers}


def login(client: FlaskClient, address: str, **headers: str) -> TestResponse:
    return client.post(
        LOGIN, json={"username": "alice", "password": PASSWORD}, **from_address(address, **headers)
    )


def assert_rate_limited(response: TestResponse) -> int:
    assert response.status_code == 429, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == 429
    assert body["title"] == "Too Many Requests"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert f"{retry_after} seconds" in body["detail"]
    return retry_after


# --- against the real services ---------------------------------------------------------------


def test_the_login_past_the_limit_is_429_while_another_address_still_logs_in(
    stack_client: FlaskClient,
) -> None:
    registered = stack_client.post(
        "/v1/auth/register",
        json={"username": "alice", "password": PASSWORD},
        **from_address("203.0.113.99"),
    )
    assert registered.status_code == 201, registered.get_data(as_text=True)
    for attempt in range(10):
        allowed = login(stack_client, CLIENT_A)
        assert allowed.status_code == 200, (attempt, allowed.get_data(as_text=True))

    assert_rate_limited(login(stack_client, CLIENT_A))
    assert login(stack_client, CLIENT_B).status_code == 200


# --- against the fake upstreams ---------------------------------------------------------------


LimitedClient = Callable[..., FlaskClient]


@pytest.fixture
def limited_client(fakes_client_factory: GatewayClientFactory) -> LimitedClient:
    """limited_client(login_limit=None, **config) -> a gateway in front of the fakes;
    login_limit overrides Login's limit, in memory."""

    def make(*, login_limit: str | None = None, **config: Any) -> FlaskClient:
        if login_limit is not None:
            config["rate_limits"] = RateLimitSettings(overrides=(("Login", login_limit),))
        return fakes_client_factory(**config)

    return make


def logins_received(fakes: FakeUpstreams) -> int:
    return sum(1 for call in fakes.auth_calls.calls if call.method == LOGIN_RPC)


@pytest.fixture
def register_alice(fakes: FakeUpstreams, client: FlaskClient) -> None:
    client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})


@pytest.mark.usefixtures("register_alice")
def test_a_refused_request_never_reaches_the_upstream(
    fakes: FakeUpstreams,
    limited_client: LimitedClient,
) -> None:
    client = limited_client(login_limit="2/minute")
    assert [login(client, CLIENT_A).status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(login(client, CLIENT_A))
    assert logins_received(fakes) == 2


def test_a_spoofed_forwarded_for_does_not_escape_the_limit_without_trusted_proxies(
    limited_client: LimitedClient,
) -> None:
    client = limited_client(login_limit="2/minute")
    statuses = [
        login(client, CLIENT_A, **{"X-Forwarded-For": f"203.0.113.{n}"}).status_code
        for n in range(3)
    ]
    assert 429 not in statuses[:2]
    assert statuses[2] == 429


def test_behind_one_trusted_proxy_each_forwarded_client_has_its_own_limit(
    limited_client: LimitedClient,
) -> None:
    client = limited_client(login_limit="1/minute", trusted_proxy_count=1)
    proxy = "10.0.0.1"
    assert login(client, proxy, **{"X-Forwarded-For": "203.0.113.1"}).status_code != 429
    assert_rate_limited(login(client, proxy, **{"X-Forwarded-For": "203.0.113.1"}))
    # Prepending another address changes nothing: the proxy's entry is the last one.
    assert_rate_limited(login(client, proxy, **{"X-Forwarded-For": "6.6.6.6, 203.0.113.1"}))
    assert login(client, proxy, **{"X-Forwarded-For": "203.0.113.2"}).status_code != 429


def test_a_malformed_forwarded_for_behind_a_trusted_proxy_counts_against_the_proxy(
    limited_client: LimitedClient,
) -> None:
    client = limited_client(login_limit="1/minute", trusted_proxy_count=1)
    assert login(client, "10.0.0.1", **{"X-Forwarded-For": "garbage"}).status_code != 429
    assert_rate_limited(login(client, "10.0.0.1", **{"X-Forwarded-For": "more garbage"}))
    assert_rate_limited(login(client, "10.0.0.1"))


def test_each_rpc_counts_separately(limited_client: LimitedClient) -> None:
    client = limited_client(login_limit="1/minute")
    login(client, CLIENT_A)
    assert_rate_limited(login(client, CLIENT_A))
    registered = client.post(
        "/v1/auth/register",
        json={"username": "bob", "password": PASSWORD},
        **from_address(CLIENT_A),
    )
    assert registered.status_code == 201


def test_invalid_requests_count_against_the_limit(limited_client: LimitedClient) -> None:
    client = limited_client(login_limit="2/minute")
    for _ in range(2):
        bad = client.post(LOGIN, data=b"not json", **from_address(CLIENT_A))
        assert bad.status_code == 415
    assert_rate_limited(login(client, CLIENT_A))


@pytest.mark.parametrize(
    ("path", "body", "limit"),
    [
        ("/v1/auth/register", {"username": "carol", "password": PASSWORD}, 10),
        ("/v1/auth/refresh", {"refresh_token": "whatever"}, 30),
    ],
    ids=["register", "refresh"],
)
def test_register_and_refresh_are_limited_by_their_proto_option(
    client: FlaskClient, path: str, body: dict[str, str], limit: int
) -> None:
    statuses = {
        client.post(path, json=body, **from_address(CLIENT_A)).status_code for _ in range(limit)
    }
    assert 429 not in statuses
    assert_rate_limited(client.post(path, json=body, **from_address(CLIENT_A)))


def test_routes_without_a_limit_are_never_429(client: FlaskClient) -> None:
    statuses = {
        client.get("/.well-known/jwks.json", **from_address(CLIENT_A)).status_code
        for _ in range(40)
    }
    assert statuses == {200}


def test_rate_limits_can_be_switched_off(limited_client: LimitedClient) -> None:
    client = limited_client(rate_limits=RateLimitSettings(enabled=False))
    assert 429 not in {login(client, CLIENT_A).status_code for _ in range(15)}


def test_an_override_can_switch_one_rpc_off(limited_client: LimitedClient) -> None:
    client = limited_client(login_limit="off")
    assert 429 not in {login(client, CLIENT_A).status_code for _ in range(15)}


# --- the Redis storage ------------------------------------------------------------------------


def redis_settings(redis_url: str, key_prefix: str, login_limit: str) -> RateLimitSettings:
    return RateLimitSettings(
        storage_uri=redis_url, key_prefix=key_prefix, overrides=(("Login", login_limit),)
    )


def test_two_gateway_instances_share_the_limit_through_redis(
    limited_client: LimitedClient,
    redis_url: str,
    rate_limit_key_prefix: str,
) -> None:
    settings = redis_settings(redis_url, rate_limit_key_prefix, "2/minute")
    first = limited_client(rate_limits=settings)
    second = limited_client(rate_limits=settings)

    assert login(first, CLIENT_A).status_code != 429
    assert login(second, CLIENT_A).status_code != 429
    assert_rate_limited(login(first, CLIENT_A))
    assert_rate_limited(login(second, CLIENT_A))
    assert login(second, CLIENT_B).status_code != 429


def test_deployments_with_different_key_prefixes_count_separately(
    limited_client: LimitedClient,
    redis_url: str,
    rate_limit_key_prefix: str,
) -> None:
    blue = redis_settings(redis_url, rate_limit_key_prefix, "1/minute")
    green = redis_settings(redis_url, f"{rate_limit_key_prefix}-green", "1/minute")
    blue_client = limited_client(rate_limits=blue)
    green_client = limited_client(rate_limits=green)
    login(blue_client, CLIENT_A)
    assert_rate_limited(login(blue_client, CLIENT_A))
    assert login(green_client, CLIENT_A).status_code != 429


# --- storage failures: fail open, never a 5xx -------------------------------------------------


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port held by this test where nothing listens: connections are refused."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a frozen Redis."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.mark.usefixtures("register_alice")
@pytest.mark.parametrize("port_fixture", ["refusing_port", "silent_port"])
def test_an_unusable_storage_fails_open_with_one_warning(
    limited_client: LimitedClient,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    port_fixture: str,
) -> None:
    port: int = request.getfixturevalue(port_fixture)
    settings = RateLimitSettings(
        storage_uri=f"redis://127.0.0.1:{port}/0", overrides=(("Login", "1/minute"),)
    )
    client = limited_client(rate_limits=settings)
    with caplog.at_level(logging.WARNING, logger="gateway.rate_limiter"):
        statuses = [login(client, CLIENT_A).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    warnings = [r for r in caplog.records if r.name == "gateway.rate_limiter"]
    assert len(warnings) == 1
    assert str(port) not in warnings[0].getMessage()


@pytest.mark.usefixtures("register_alice")
def test_failing_open_is_counted_in_a_metric(
    limited_client: LimitedClient,
    refusing_port: int,
) -> None:
    settings = RateLimitSettings(
        storage_uri=f"redis://127.0.0.1:{refusing_port}/0", overrides=(("Login", "1/minute"),)
    )
    client = limited_client(rate_limits=settings)
    assert [login(client, CLIENT_A).status_code for _ in range(2)] == [200, 200]
    metrics = client.get("/metrics").get_data(as_text=True)
    # One failure, then the backoff: requests are served unlimited without retrying.
    assert "authgate_gateway_rate_limit_storage_failures_total 1.0" in metrics


def test_after_the_backoff_the_storage_is_tried_again(
    refusing_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    now = [100.0]
    limiter = RateLimiter(
        f"redis://127.0.0.1:{refusing_port}/0",
        key_prefix="unused",
        outage_backoff_seconds=5.0,
        monotonic=lambda: now[0],
    )
    items = parse_rate_limit("1/minute")
    with caplog.at_level(logging.WARNING, logger="gateway.rate_limiter"):
        assert limiter.hit(items, "rpc", CLIENT_A) is None
        now[0] += 4.9
        assert limiter.hit(items, "rpc", CLIENT_A) is None
        assert len(caplog.records) == 1
        now[0] += 0.2
        assert limiter.hit(items, "rpc", CLIENT_A) is None
        assert len(caplog.records) == 2


def test_the_memory_limiter_answers_the_seconds_until_a_slot_frees() -> None:
    limiter = RateLimiter("memory://", key_prefix="unused")
    items = parse_rate_limit("1/hour")
    assert limiter.hit(items, "rpc", CLIENT_A) is None
    retry_after = limiter.hit(items, "rpc", CLIENT_A)
    assert retry_after is not None
    assert 3590 <= retry_after <= 3600
