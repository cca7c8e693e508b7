"""One log line per request and per RPC, tied together by the request id, with no secrets."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from authgate_common.logs import configure_logging
from tests.fixtures.services_fixtures import PASSWORD, Services, login

GATEWAY_LOGGER = "gateway.app"
RPC_LOGGER = "authgate_common.grpc_server"
AUTH = "/authgate.auth.v1.AuthService/"
PROFILE = "/authgate.profile.v1.ProfileService/"


def request_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == GATEWAY_LOGGER
        and r.getMessage() == "request"
        and getattr(r, "request_id", None) == request_id
    ]


def rpc_lines(
    caplog: pytest.LogCaptureFixture, request_id: str, prefix: str
) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == RPC_LOGGER
        and r.getMessage() == "rpc"
        and getattr(r, "request_id", None) == request_id
        and str(getattr(r, "method", "")).startswith(prefix)
    ]


def fields(record: logging.LogRecord, *names: str) -> dict[str, Any]:
    return {name: getattr(record, name, None) for name in names}


def test_a_login_is_one_gateway_line_and_one_auth_line_with_the_same_request_id(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    gateway = services.gateway
    registered = gateway.post("/v1/auth/register", json={"username": "alice", "password": PASSWORD})
    user_id = registered.get_json()["user_id"]
    caplog.set_level(logging.INFO)

    response = gateway.post(
        "/v1/auth/login",
        json={"username": "alice", "password": PASSWORD},
        headers={"X-Request-ID": "trace-login-1"},
    )

    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == "trace-login-1"
    [http] = request_lines(caplog, "trace-login-1")
    assert fields(http, "route", "method", "status") == {
        "route": "/v1/auth/login",
        "method": "POST",
        "status": 200,
    }
    assert isinstance(getattr(http, "latency_ms", None), float)
    [rpc] = rpc_lines(caplog, "trace-login-1", AUTH)
    assert fields(rpc, "method", "code", "user_id") == {
        "method": f"{AUTH}Login",
        "code": "OK",
        "user_id": user_id,
    }
    assert isinstance(getattr(rpc, "latency_ms", None), float)
    assert rpc_lines(caplog, "trace-login-1", PROFILE) == []


def test_a_profile_read_is_one_gateway_line_and_one_profile_line_with_the_user(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = login(services.gateway)
    caplog.set_level(logging.INFO)

    response = services.gateway.get(
        "/v1/profile",
        headers={"Authorization": f"Bearer {tokens['access_token']}", "X-Request-ID": "trace-p"},
    )

    assert response.status_code == 200
    user_id = response.get_json()["user_id"]
    [http] = request_lines(caplog, "trace-p")
    assert fields(http, "route", "status", "user_id") == {
        "route": "/v1/profile",
        "status": 200,
        "user_id": user_id,
    }
    [rpc] = rpc_lines(caplog, "trace-p", PROFILE)
    assert fields(rpc, "method", "code", "user_id") == {
        "method": f"{PROFILE}GetProfile",
        "code": "OK",
        "user_id": user_id,
    }


def test_a_request_without_an_id_gets_one_that_the_services_log_too(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = services.gateway.post(
        "/v1/auth/register", json={"username": "bob", "password": PASSWORD}
    )
    request_id = response.headers["X-Request-ID"]
    assert len(request_id) >= 16
    assert len(request_lines(caplog, request_id)) == 1
    [rpc] = rpc_lines(caplog, request_id, AUTH)
    assert fields(rpc, "code", "user_id") == {
        "code": "OK",
        "user_id": response.get_json()["user_id"],
    }


def test_a_refused_call_is_logged_with_its_code_and_no_user(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = services.gateway.post(
        "/v1/auth/login",
        json={"username": "nobody", "password": PASSWORD},
        headers={"X-Request-ID": "trace-bad-login"},
    )
    assert response.status_code == 401
    [http] = request_lines(caplog, "trace-bad-login")
    assert getattr(http, "status", None) == 401
    [rpc] = rpc_lines(caplog, "trace-bad-login", AUTH)
    assert fields(rpc, "code", "user_id") == {"code": "UNAUTHENTICATED", "user_id": None}


def test_no_log_record_of_a_full_flow_holds_a_password_or_token(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = login(services.gateway)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    services.gateway.get("/v1/profile", headers=bearer)
    services.gateway.patch("/v1/profile", json={"bio": "hi"}, headers=bearer)
    services.gateway.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    services.gateway.post("/v1/auth/login", json={"username": "alice", "password": "wrong" * 4})

    dumped = "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
    assert "rpc" in dumped
    for secret in (PASSWORD, "wrong" * 4, tokens["access_token"], tokens["refresh_token"]):
        assert secret not in dumped


def test_log_lines_are_json_objects_with_the_request_fields(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure_logging("test", "INFO")
    try:
        services.gateway.get("/healthz", headers={"X-Request-ID": "json-line"})
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    [line] = [entry for entry in lines if entry.get("request_id") == "json-line"]
    assert line["message"] == "request"
    assert line["route"] == "/healthz"
    assert line["status"] == 200
    assert line["service"] == "test"
    assert {"time", "level", "latency_ms", "user_id"} <= set(line)
