"""The gateway app end to end against real gRPC servers (fakes of the upstreams) on port 0."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import grpc
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from authgate_common.tokens import TokenSettings
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.gateway.fake_upstreams import FakeUpstreams, Recorder, start_fake_profile
from tests.gateway.rest_contract import TOKEN_RESPONSE_FIELDS

PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery"


def assert_problem(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.content_type == PROBLEM
    body: dict[str, Any] = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"] == "about:blank"
    assert body["request_id"] == response.headers["X-Request-ID"]
    assert "Traceback" not in response.get_data(as_text=True)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def abort_with(code: grpc.StatusCode, details: str) -> Any:
    def behaviour(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, details)

    return behaviour


# --- the contract's happy path --------------------------------------------------------------


def test_register_answers_201_with_the_new_user(client: FlaskClient) -> None:
    response = client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 201
    assert response.content_type == "application/json"
    assert response.get_json()["username"] == "alice"
    assert set(response.get_json()) == {"user_id", "username"}


def test_login_answers_tokens_that_must_not_be_cached(client: FlaskClient) -> None:
    client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})
    response = client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == TOKEN_RESPONSE_FIELDS
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900


def test_jwks_is_served_from_its_annotation_without_a_token(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.get_json()["keys"][0]["kid"] == fakes.minter.kid


def test_logout_answers_204_without_a_body(client: FlaskClient) -> None:
    response = client.post("/v1/auth/logout", json={"refresh_token": "r"})
    assert response.status_code == 204
    assert response.get_data() == b""
    assert "Content-Type" not in response.headers


def test_profile_round_trip_with_a_token(client: FlaskClient, fakes: FakeUpstreams) -> None:
    token = fakes.minter.mint("user-1", "alice")
    assert client.get("/v1/profile", headers=bearer(token)).get_json()["bio"] == ""
    response = client.patch("/v1/profile", json={"bio": "hi"}, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["bio"] == "hi"
    assert response.headers["Cache-Control"] == "no-store"


def test_json_content_type_with_utf8_charset_is_accepted(client: FlaskClient) -> None:
    response = client.post(
        "/v1/auth/register",
        data=b'{"username": "alice", "password": "correct horse battery"}',
        content_type="application/json; charset=UTF-8",
    )
    assert response.status_code == 201


def test_every_kind_of_answer_forbids_content_sniffing(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = {
        "success": client.post("/v1/auth/register", json={"username": "bob", "password": PASSWORD}),
        "problem": client.get("/v1/profile"),
        "unmatched": client.get("/no/such/route"),
        "health": client.get("/healthz"),
        "openapi": client.get("/openapi.json"),
    }
    upstreams = client.application.extensions["authgate"]["upstreams"]
    monkeypatch.setattr(upstreams, "call", lambda *args, **kwargs: 1 / 0)
    answers["internal error"] = client.post(
        "/v1/auth/login", json={"username": "a", "password": PASSWORD}
    )
    assert answers["internal error"].status_code == 500
    assert {
        kind: response.headers.get("X-Content-Type-Options") for kind, response in answers.items()
    } == dict.fromkeys(answers, "nosniff")


# --- default deny and identity --------------------------------------------------------------


def test_a_protected_route_without_a_token_is_401_with_a_challenge(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    response = client.get("/v1/profile")
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'
    assert fakes.profile_calls.calls == []


def test_an_invalid_token_is_401_invalid_token(client: FlaskClient, fakes: FakeUpstreams) -> None:
    expired = fakes.minter.mint("u", exp=int(time.time()) - 3600)
    response = client.get("/v1/profile", headers=bearer(expired))
    assert_problem(response, 401)
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert fakes.profile_calls.calls == []


def test_an_oversized_authorization_header_is_401(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/profile", headers=bearer("a" * 100_000)), 401)


def test_the_token_is_checked_before_the_body(client: FlaskClient) -> None:
    response = client.patch("/v1/profile", data=b"not json", content_type="text/plain")
    assert_problem(response, 401)


def test_identity_metadata_comes_from_the_verified_token(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    token = fakes.minter.mint("user-1", "alice")
    client.get("/v1/profile", headers=bearer(token))
    sent = fakes.profile_calls.last("GetProfile").metadata
    assert sent["x-user-id"] == "user-1"
    assert sent["x-username"] == "alice"
    assert sent["authorization"] == f"Bearer {token}"


def test_client_sent_identity_headers_are_not_forwarded(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    token = fakes.minter.mint("user-1", "alice")
    forged = {"X-User-Id": "admin", "X-Username": "root", "X-Custom": "1"}
    response = client.get("/v1/profile", headers={**bearer(token), **forged})
    assert response.get_json()["user_id"] == "user-1"
    sent = fakes.profile_calls.last("GetProfile").metadata
    assert (sent["x-user-id"], sent["x-username"]) == ("user-1", "alice")
    assert "x-custom" not in sent


def test_public_routes_forward_no_identity_even_when_the_client_sends_some(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    headers = {**bearer(fakes.minter.mint("user-1")), "X-User-Id": "admin"}
    client.post(
        "/v1/auth/register", json={"username": "alice", "password": PASSWORD}, headers=headers
    )
    sent = fakes.auth_calls.last("Register").metadata
    assert not {"authorization", "x-user-id", "x-username"} & set(sent)


def test_non_ascii_usernames_travel_percent_encoded(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    response = client.get("/v1/profile", headers=bearer(fakes.minter.mint("user-1", "jürgen")))
    assert response.status_code == 200
    assert fakes.profile_calls.last("GetProfile").metadata["x-username"] == "j%C3%BCrgen"


def test_an_upstream_unauthenticated_on_a_protected_route_is_401_invalid_token(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    fakes.profile_calls.overrides["GetProfile"] = abort_with(
        grpc.StatusCode.UNAUTHENTICATED, "the token is revoked"
    )
    response = client.get("/v1/profile", headers=bearer(fakes.minter.mint("u")))
    assert assert_problem(response, 401)["detail"] == "the token is revoked"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_a_wrong_password_is_401_with_a_bare_challenge(client: FlaskClient) -> None:
    response = client.post("/v1/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert assert_problem(response, 401)["detail"] == "invalid username or password"
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="authgate"'


def test_keys_that_cannot_be_fetched_are_503(
    gateway_client_factory: GatewayClientFactory,
    token_settings: TokenSettings,
    fakes: FakeUpstreams,
) -> None:
    client = gateway_client_factory("127.0.0.1:1", fakes.profile.target, token_settings)
    assert_problem(client.get("/v1/profile", headers=bearer(fakes.minter.mint("u"))), 503)


# --- request ids ----------------------------------------------------------------------------


def test_a_well_formed_client_request_id_is_returned_and_forwarded(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    response = client.get("/.well-known/jwks.json", headers={"X-Request-ID": "abc-123.X_y"})
    assert response.headers["X-Request-ID"] == "abc-123.X_y"
    assert fakes.auth_calls.last("GetJwks").metadata["x-request-id"] == "abc-123.X_y"


@pytest.mark.parametrize("offered", ["has space", "a" * 129, "a/b", "ü", ""])
def test_a_malformed_client_request_id_is_replaced(
    client: FlaskClient, fakes: FakeUpstreams, offered: str
) -> None:
    response = client.get("/.well-known/jwks.json", headers={"X-Request-ID": offered})
    generated = response.headers["X-Request-ID"]
    assert generated != offered
    assert fakes.auth_calls.last("GetJwks").metadata["x-request-id"] == generated


def test_a_request_id_is_made_when_none_is_sent(client: FlaskClient, fakes: FakeUpstreams) -> None:
    response = client.get("/.well-known/jwks.json")
    assert len(response.headers["X-Request-ID"]) == 32
    assert (
        fakes.auth_calls.last("GetJwks").metadata["x-request-id"]
        == response.headers["X-Request-ID"]
    )


# --- upstream failures ----------------------------------------------------------------------


def test_every_call_carries_the_configured_deadline(
    fakes_client_factory: GatewayClientFactory,
    fakes: FakeUpstreams,
) -> None:
    client = fakes_client_factory(grpc_timeout_seconds=2.0)
    client.get("/.well-known/jwks.json")
    remaining = fakes.auth_calls.last("GetJwks").time_remaining
    assert remaining is not None
    assert 1.0 < remaining <= 2.1  # the server's clock reading is not exact


@pytest.mark.serial
def test_a_slow_upstream_is_504_within_the_deadline(
    fakes_client_factory: GatewayClientFactory,
    fakes: FakeUpstreams,
) -> None:
    def slow(request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(1.0)
        context.abort(grpc.StatusCode.INTERNAL, "too late")

    fakes.profile_calls.overrides["GetProfile"] = slow
    client = fakes_client_factory(grpc_timeout_seconds=0.3)
    started = time.monotonic()
    response = client.get("/v1/profile", headers=bearer(fakes.minter.mint("u")))
    assert_problem(response, 504)
    assert time.monotonic() - started < 1.0


def test_a_stopped_upstream_is_503(
    gateway_client_factory: GatewayClientFactory,
    token_settings: TokenSettings,
    fakes: FakeUpstreams,
) -> None:
    server, _ = start_fake_profile(Recorder())
    target = f"127.0.0.1:{server.port}"
    server.stop(0)
    client = gateway_client_factory(fakes.auth.target, target, token_settings)
    body = assert_problem(client.get("/v1/profile", headers=bearer(fakes.minter.mint("u"))), 503)
    assert body["detail"] == "the service is temporarily unavailable, try again later"


def test_server_error_details_are_hidden(client: FlaskClient, fakes: FakeUpstreams) -> None:
    fakes.auth_calls.overrides["Login"] = abort_with(
        grpc.StatusCode.INTERNAL, "OperationalError: SELECT * FROM users at /srv/auth.py:3"
    )
    response = client.post("/v1/auth/login", json={"username": "a", "password": PASSWORD})
    body = assert_problem(response, 500)
    assert body["detail"] == "the request could not be completed because of an internal error"
    assert "SELECT" not in response.get_data(as_text=True)


def test_client_error_details_are_shown(client: FlaskClient) -> None:
    client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})
    response = client.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})
    assert assert_problem(response, 409)["detail"] == "that username is taken"


def test_rate_limited_upstream_is_429_with_retry_after(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    def limited(request: Any, context: grpc.ServicerContext) -> Any:
        context.set_trailing_metadata((("retry-after", "7"),))
        context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many attempts")

    fakes.auth_calls.overrides["Login"] = limited
    response = client.post("/v1/auth/login", json={"username": "a", "password": PASSWORD})
    assert assert_problem(response, 429)["detail"] == "too many attempts"
    assert response.headers["Retry-After"] == "7"


def test_an_unexpected_error_is_a_generic_500(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstreams = client.application.extensions["authgate"]["upstreams"]

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(upstreams, "call", explode)
    response = client.post("/v1/auth/login", json={"username": "a", "password": PASSWORD})
    body = assert_problem(response, 500)
    assert "secret" not in response.get_data(as_text=True)
    assert body["detail"] == "the request could not be completed because of an internal error"


# --- bad requests ---------------------------------------------------------------------------


def test_an_invalid_body_is_400_naming_the_field(client: FlaskClient, fakes: FakeUpstreams) -> None:
    response = client.post("/v1/auth/register", json={"username": "alice", "password": 12})
    assert assert_problem(response, 400)["detail"] == "field 'password' must be a string"
    assert fakes.auth_calls.calls == []


def test_a_body_that_is_not_json_is_400(client: FlaskClient) -> None:
    response = client.post("/v1/auth/login", data=b"username=a", content_type="application/json")
    assert_problem(response, 400)


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/json; charset=latin-1", "application/x-www-form-urlencoded"],
)
def test_a_body_that_is_not_declared_json_is_415(
    client: FlaskClient, content_type: str | None
) -> None:
    response = client.post(
        "/v1/auth/login", data=b'{"username":"a","password":"b"}', content_type=content_type
    )
    assert_problem(response, 415)


def test_a_body_over_the_limit_is_413(
    fakes_client_factory: GatewayClientFactory,
    fakes: FakeUpstreams,
) -> None:
    client = fakes_client_factory(max_body_bytes=100)
    response = client.post("/v1/auth/login", json={"username": "a", "password": "p" * 200})
    assert assert_problem(response, 413)["detail"] == "the request body is larger than 100 bytes"
    assert fakes.auth_calls.calls == []


def test_a_chunked_body_over_the_limit_is_413(
    fakes_client_factory: GatewayClientFactory,
    fakes: FakeUpstreams,
) -> None:
    client = fakes_client_factory(max_body_bytes=100)
    body = json.dumps({"username": "a", "password": "p" * 200}).encode()
    response = client.post(
        "/v1/auth/login",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        # What gunicorn sets when it decodes a chunked body itself.
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert_problem(response, 413)
    assert fakes.auth_calls.calls == []


def test_a_body_of_exactly_the_limit_is_read(
    fakes_client_factory: GatewayClientFactory,
) -> None:
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    client = fakes_client_factory(max_body_bytes=len(body))
    response = client.post("/v1/auth/register", data=body, content_type="application/json")
    assert response.status_code == 201


def test_an_unknown_path_is_404_problem(client: FlaskClient) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)


def test_a_wrong_method_is_405_problem_with_allow(client: FlaskClient) -> None:
    response = client.delete("/v1/profile")
    assert_problem(response, 405)
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "PATCH"}


def test_a_body_on_a_get_is_ignored(client: FlaskClient, fakes: FakeUpstreams) -> None:
    response = client.get("/v1/profile", data=b"{nonsense", headers=bearer(fakes.minter.mint("u")))
    assert response.status_code == 200


def test_unknown_query_parameters_are_400(client: FlaskClient, fakes: FakeUpstreams) -> None:
    response = client.get("/v1/profile?user_id=other", headers=bearer(fakes.minter.mint("u")))
    assert assert_problem(response, 400)["detail"] == "unknown query parameter 'user_id'"


def test_every_response_says_no_store(client: FlaskClient, fakes: FakeUpstreams) -> None:
    token = fakes.minter.mint("u")
    for response in (
        client.get("/v1/profile", headers=bearer(token)),
        client.get("/v1/profile"),
        client.get("/nowhere"),
        client.post("/v1/auth/logout", json={"refresh_token": "r"}),
    ):
        assert response.headers["Cache-Control"] == "no-store"


# --- health ---------------------------------------------------------------------------------


def test_healthz_is_200(client: FlaskClient) -> None:
    assert client.get("/healthz").status_code == 200


def test_readyz_is_200_when_both_upstreams_serve(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["upstreams"] == {"auth": "SERVING", "profile": "SERVING"}


def test_readyz_is_503_naming_an_upstream_that_is_not_serving(
    client: FlaskClient, fakes: FakeUpstreams
) -> None:
    fakes.profile.set_serving(False)
    body = assert_problem(client.get("/readyz"), 503)
    assert body["upstreams"] == {"auth": "SERVING", "profile": "NOT_SERVING"}
    assert "profile" in body["detail"]


def test_readyz_is_503_when_an_upstream_is_unreachable(
    gateway_client_factory: GatewayClientFactory,
    token_settings: TokenSettings,
    fakes: FakeUpstreams,
) -> None:
    client = gateway_client_factory("127.0.0.1:1", fakes.profile.target, token_settings)
    body = assert_problem(client.get("/readyz"), 503)
    assert body["upstreams"]["auth"] == "UNREACHABLE"
