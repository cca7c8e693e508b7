"""The gateway in front of the real auth and profile services (SQLite and MariaDB)."""

from __future__ import annotations

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.fixtures.services_fixtures import bearer, login

PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"


def test_register_login_read_and_update_the_profile(stack_client: FlaskClient) -> None:
    registered = stack_client.post(
        "/v1/auth/register",
        json={"username": "alice", "password": PASSWORD, "display_name": "Alice"},
    )
    assert registered.status_code == 201, registered.get_data(as_text=True)
    logged_in = stack_client.post(
        "/v1/auth/login", json={"username": "alice", "password": PASSWORD}
    )
    assert logged_in.status_code == 200, logged_in.get_data(as_text=True)
    assert logged_in.headers["Cache-Control"] == "no-store"
    headers = {"Authorization": f"Bearer {logged_in.get_json()['access_token']}"}

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


# Shows as "Alice", then a zero-width space and a line separator before "admin".
SPOOFED_NAME = "\u202eecilA\u200b\u2028admin"


def _problem_detail(response: TestResponse, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    detail: str = response.get_json(force=True)["detail"]
    return detail


def test_a_display_name_posing_as_another_is_refused_at_register_and_update(
    stack_client: FlaskClient,
) -> None:
    refused = stack_client.post(
        "/v1/auth/register",
        json={"username": "mallory", "password": PASSWORD, "display_name": SPOOFED_NAME},
    )
    assert _problem_detail(refused, 400).startswith("display_name must be")

    headers = bearer(login(stack_client, "mallory"))
    updated = stack_client.patch(
        "/v1/profile", json={"display_name": SPOOFED_NAME}, headers=headers
    )
    assert _problem_detail(updated, 400).startswith("display_name must be")
    assert stack_client.get("/v1/profile", headers=headers).get_json()["display_name"] == ""


def test_a_username_shorter_than_the_declared_minimum_is_a_400(stack_client: FlaskClient) -> None:
    response = stack_client.post("/v1/auth/register", json={"username": "0", "password": PASSWORD})
    assert _problem_detail(response, 400).startswith("username must be 3 to 64 characters")


def test_a_control_character_in_the_bio_is_a_400_and_newlines_are_kept(
    stack_client: FlaskClient,
) -> None:
    headers = bearer(login(stack_client, "bob"))

    refused = stack_client.patch("/v1/profile", json={"bio": "bell\x07"}, headers=headers)
    assert _problem_detail(refused, 400).startswith("bio must be")
    kept = stack_client.patch("/v1/profile", json={"bio": "one\ntwo"}, headers=headers)
    assert kept.status_code == 200
    assert kept.get_json()["bio"] == "one\ntwo"
