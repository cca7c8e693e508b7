"""The gateway in front of the real auth and profile services (SQLite and MariaDB)."""

from __future__ import annotations

from flask.testing import FlaskClient

PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"


def test_register_login_read_and_update_the_profile(stack_client: FlaskClient) -> None:
    registered = stack_client.post(
        "/v1/auth/register",
        json={"username": "alice", "password": PASSWORD, "display_name": "Alice"},
    )
    assert registered.status_code == 201, registered.get_data(as_text=True)
    login = stack_client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert login.status_code == 200, login.get_data(as_text=True)
    assert login.headers["Cache-Control"] == "no-store"
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}

    profile = stack_client.get("/v1/profile", headers=headers)
    assert profile.status_code == 200, profile.get_data(as_text=True)
    assert profile.get_json()["user_id"] == registered.get_json()["user_id"]
    assert profile.get_json()["display_name"] == "Alice"

    updated = stack_client.patch("/v1/profile", json={"bio": "hello"}, headers=headers)
    assert updated.status_code == 200, updated.get_data(as_text=True)
    assert updated.get_json()["bio"] == "hello"
    assert updated.get_json()["display_name"] == "Alice"


def test_a_wrong_password_is_401_problem(stack_client: FlaskClient) -> None:
    stack_client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})
    response = stack_client.post(
        "/v1/auth/login", json={"username": "alice", "password": PASSWORD + "x"}
    )
    assert response.status_code == 401
    assert response.content_type == PROBLEM
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="authgate"')


def test_the_jwks_of_the_auth_service_is_served(stack_client: FlaskClient) -> None:
    response = stack_client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.get_json()["keys"][0]["alg"] == "RS256"
