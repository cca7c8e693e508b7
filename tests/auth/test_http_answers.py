"""What the gateway answers for lockout and registration rules, with the real auth service."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from auth_svc.lockout import LockoutPolicy
from authgate_common.tokens import TokenSettings
from tests.auth.conftest import PASSWORD
from tests.fixtures.auth_fixtures import AuthServerFactory
from tests.fixtures.gateway_fixtures import GatewayClientFactory

NO_PROFILE_SERVICE = "127.0.0.1:9"  # these tests never reach it


@pytest.fixture
def client_factory(
    auth_server_factory: AuthServerFactory,
    gateway_client_factory: GatewayClientFactory,
    token_settings: TokenSettings,
) -> GatewayClientFactory:
    """factory(**AuthConfig overrides) -> a gateway in front of a real auth service."""

    def make(**auth_overrides: Any) -> FlaskClient:
        server = auth_server_factory(**auth_overrides)
        return gateway_client_factory(server.target, NO_PROFILE_SERVICE, token_settings)

    return make


def _login(client: FlaskClient, password: str) -> tuple[int, dict[str, Any], str]:
    response = client.post("/v1/auth/login", json={"username": "alice", "password": password})
    body = dict(response.get_json())
    body.pop("request_id", None)  # differs per request by design
    return response.status_code, body, response.headers.get("WWW-Authenticate", "")


def test_a_locked_account_gets_exactly_the_answer_of_a_wrong_password(
    client_factory: GatewayClientFactory,
) -> None:
    client = client_factory(lockout=LockoutPolicy(threshold=2, base_seconds=600))
    client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})

    wrong = _login(client, PASSWORD + "x")
    _login(client, PASSWORD + "y")  # the second failure locks the account
    locked_with_the_right_password = _login(client, PASSWORD)

    assert wrong[0] == 401
    assert locked_with_the_right_password == wrong


def test_switched_off_registration_is_403_with_a_clear_message(
    client_factory: GatewayClientFactory,
) -> None:
    client = client_factory(registration_enabled=False)

    response = client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})

    assert response.status_code == 403
    assert response.content_type == "application/problem+json"
    assert response.get_json()["detail"] == "registration is disabled on this server"


def test_a_common_password_is_400_without_echoing_it(client_factory: GatewayClientFactory) -> None:
    client = client_factory()

    response = client.post(
        "/v1/auth/register", json={"username": "alice", "password": "Qwerty123456"}
    )

    assert response.status_code == 400
    assert "too common" in response.get_json()["detail"]
    assert "Qwerty123456" not in response.get_data(as_text=True)
