"""register -> login -> profile -> update, refresh and logout, through the real gateway."""

from __future__ import annotations

import uuid

import requests

from tests.e2e.forgery import parts
from tests.e2e.shared.conftest import ON_EITHER_SERVER, RunningStack
from tests.gateway.rest_contract import TOKEN_RESPONSE_FIELDS

PASSWORD = "correct horse battery staple"


def new_username() -> str:
    return f"user_{uuid.uuid4().hex[:10]}"


def register_and_login(stack: RunningStack, **extra: str) -> tuple[str, dict[str, object]]:
    username = new_username()
    created = stack.post("/v1/auth/register", {"username": username, "password": PASSWORD, **extra})
    assert created.status_code == 201, created.text
    login = stack.post("/v1/auth/login", {"username": username, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return username, login.json()


def bearer(tokens: dict[str, object]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_register_answers_201_with_the_new_user(running_stack: RunningStack) -> None:
    username = new_username()
    response = running_stack.post("/v1/auth/register", {"username": username, "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"user_id", "username"}
    assert body["username"] == username
    assert uuid.UUID(body["user_id"])


def test_login_answers_a_bearer_token_pair_that_is_not_cached(running_stack: RunningStack) -> None:
    _, tokens = register_and_login(running_stack)
    assert set(tokens) == TOKEN_RESPONSE_FIELDS
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 900
    assert isinstance(tokens["refresh_expires_in"], int)
    assert tokens["refresh_expires_in"] > 900
    login = running_stack.post("/v1/auth/login", {"username": new_username(), "password": PASSWORD})
    assert login.status_code == 401


def test_login_response_carries_cache_control_no_store(running_stack: RunningStack) -> None:
    username = new_username()
    running_stack.post("/v1/auth/register", {"username": username, "password": PASSWORD})
    login = running_stack.post("/v1/auth/login", {"username": username, "password": PASSWORD})
    assert login.headers["Cache-Control"] == "no-store"


@ON_EITHER_SERVER
def test_full_flow_register_login_read_and_update_profile(running_stack: RunningStack) -> None:
    username, tokens = register_and_login(
        running_stack, display_name="Alice A.", email="alice@example.org"
    )
    profile = requests.get(f"{running_stack.url}/v1/profile", headers=bearer(tokens), timeout=10)
    assert profile.status_code == 200, profile.text
    body = profile.json()
    assert set(body) == {
        "user_id",
        "username",
        "display_name",
        "email",
        "bio",
        "created_at",
        "updated_at",
    }
    assert body["username"] == username
    assert body["display_name"] == "Alice A."
    assert body["email"] == "alice@example.org"
    assert body["bio"] == ""

    updated = requests.patch(
        f"{running_stack.url}/v1/profile",
        json={"bio": "likes tea"},
        headers=bearer(tokens),
        timeout=10,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["bio"] == "likes tea"
    assert updated.json()["display_name"] == "Alice A."

    again = requests.get(f"{running_stack.url}/v1/profile", headers=bearer(tokens), timeout=10)
    assert again.json()["bio"] == "likes tea"
    assert again.json()["user_id"] == body["user_id"]


def test_refresh_returns_a_new_pair_and_spends_the_old_refresh_token(
    running_stack: RunningStack,
) -> None:
    _, tokens = register_and_login(running_stack)
    refreshed = running_stack.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    assert refreshed.headers["Cache-Control"] == "no-store"
    profile = requests.get(
        f"{running_stack.url}/v1/profile", headers=bearer(refreshed.json()), timeout=10
    )
    assert profile.status_code == 200

    replay = running_stack.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert replay.headers["Content-Type"].startswith("application/problem+json")


def test_replayed_refresh_token_revokes_the_tokens_issued_from_it(
    running_stack: RunningStack,
) -> None:
    _, tokens = register_and_login(running_stack)
    child = running_stack.post(
        "/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]}
    ).json()
    running_stack.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    stolen_child = running_stack.post("/v1/auth/refresh", {"refresh_token": child["refresh_token"]})
    assert stolen_child.status_code == 401


def test_logout_answers_204_and_revokes_the_refresh_token(running_stack: RunningStack) -> None:
    _, tokens = register_and_login(running_stack)
    logout = running_stack.post("/v1/auth/logout", {"refresh_token": tokens["refresh_token"]})
    assert logout.status_code == 204
    assert logout.content == b""
    refresh = running_stack.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


def test_jwks_is_public_and_lists_the_signing_key(running_stack: RunningStack) -> None:
    _, tokens = register_and_login(running_stack)
    response = requests.get(f"{running_stack.url}/.well-known/jwks.json", timeout=10)
    assert response.status_code == 200
    keys = response.json()["keys"]
    header_kid = parts(str(tokens["access_token"]))[0]["kid"]
    assert header_kid in {key["kid"] for key in keys}
    assert all(key["kty"] == "RSA" and key["alg"] == "RS256" and "d" not in key for key in keys)


def test_client_sent_identity_headers_are_ignored(running_stack: RunningStack) -> None:
    _, victim = register_and_login(running_stack)
    victim_id = requests.get(
        f"{running_stack.url}/v1/profile", headers=bearer(victim), timeout=10
    ).json()["user_id"]
    attacker_name, attacker = register_and_login(running_stack)
    response = requests.get(
        f"{running_stack.url}/v1/profile",
        headers={**bearer(attacker), "X-User-Id": victim_id, "X-Username": "victim"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json()["username"] == attacker_name
    assert response.json()["user_id"] != victim_id


def test_request_id_is_accepted_from_the_client_and_returned(running_stack: RunningStack) -> None:
    response = requests.get(
        f"{running_stack.url}/healthz", headers={"X-Request-ID": "trace-123"}, timeout=10
    )
    assert response.headers["X-Request-ID"] == "trace-123"
    generated = requests.get(f"{running_stack.url}/healthz", timeout=10)
    assert generated.headers["X-Request-ID"]


def test_readyz_reports_ready_while_both_services_serve(running_stack: RunningStack) -> None:
    assert requests.get(f"{running_stack.url}/readyz", timeout=10).status_code == 200
    assert requests.get(f"{running_stack.url}/healthz", timeout=10).status_code == 200
