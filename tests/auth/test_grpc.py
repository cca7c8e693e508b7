"""The auth service over real gRPC, in process on an ephemeral port, on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from authgate.auth.v1 import auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from auth_svc.keys import KeyRing
from auth_svc.server import AuthServer
from authgate_common.tokens import TokenSettings
from tests.auth.conftest import PASSWORD, verifier_for

TIMEOUT = 10


def _register(stub: Any, username: str = "alice", password: str = PASSWORD, **extra: str) -> Any:
    return stub.Register(
        auth_pb2.RegisterRequest(username=username, password=password, **extra), timeout=TIMEOUT
    )


def _login(stub: Any, username: str = "alice", password: str = PASSWORD) -> Any:
    return stub.Login(auth_pb2.LoginRequest(username=username, password=password), timeout=TIMEOUT)


def _error(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=TIMEOUT)
    return raised.value


def test_register_answers_user_id_and_username(auth_stub: Any) -> None:
    response = _register(auth_stub, "Alice", email="a@example.com", display_name="Alice")

    assert response.username == "Alice"
    assert len(response.user_id) == 36


def test_login_answers_a_bearer_token_pair_that_verifies(
    auth_stub: Any, auth_config: Any, token_settings: TokenSettings
) -> None:
    user = _register(auth_stub)

    response = _login(auth_stub)

    assert response.token_type == "Bearer"
    assert response.expires_in == 900
    assert response.refresh_expires_in == 2592000
    ring = KeyRing.load(auth_config.keys_dir)
    assert verifier_for(ring, token_settings).verify(response.access_token).user_id == user.user_id


def test_get_jwks_serves_the_public_key(auth_stub: Any, auth_config: Any) -> None:
    response = auth_stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=TIMEOUT)

    [key] = response.keys
    assert key.kid == KeyRing.load(auth_config.keys_dir).signer.kid
    assert (key.kty, key.use, key.alg, key.e) == ("RSA", "sig", "RS256", "AQAB")


def test_duplicate_username_in_other_case_is_already_exists(auth_stub: Any) -> None:
    _register(auth_stub, "alice")

    error = _error(
        auth_stub.Register, auth_pb2.RegisterRequest(username="ALICE", password=PASSWORD)
    )

    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error.details() == "username is already taken"


@pytest.mark.parametrize(
    "request_fields",
    [
        {"username": "al", "password": PASSWORD},
        {"username": "alice", "password": "short"},
        {"username": "alice", "password": "alice-password-1"},
        {"username": "alice", "password": PASSWORD, "email": "nope"},
        {"username": "", "password": ""},
    ],
)
def test_bad_registration_is_invalid_argument_without_the_password(
    auth_stub: Any, request_fields: dict[str, str]
) -> None:
    error = _error(auth_stub.Register, auth_pb2.RegisterRequest(**request_fields))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details
    assert not request_fields["password"] or request_fields["password"] not in details


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong password here"), ("nobody", PASSWORD)]
)
def test_bad_credentials_are_unauthenticated_with_one_message(
    auth_stub: Any, username: str, password: str
) -> None:
    _register(auth_stub)

    error = _error(auth_stub.Login, auth_pb2.LoginRequest(username=username, password=password))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "invalid username or password"


def test_refresh_rotates_and_a_replay_is_unauthenticated(auth_stub: Any) -> None:
    _register(auth_stub)
    first = _login(auth_stub)

    second = auth_stub.Refresh(
        auth_pb2.RefreshRequest(refresh_token=first.refresh_token), timeout=TIMEOUT
    )
    error = _error(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=first.refresh_token))

    assert second.refresh_token != first.refresh_token
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert first.refresh_token not in (error.details() or "")


def test_logout_revokes_and_answers_empty(auth_stub: Any) -> None:
    _register(auth_stub)
    pair = _login(auth_stub)

    auth_stub.Logout(auth_pb2.LogoutRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    error = _error(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=pair.refresh_token))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_empty_refresh_token_is_invalid_argument(auth_stub: Any) -> None:
    error = _error(auth_stub.Refresh, auth_pb2.RefreshRequest())

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_reports_serving(auth_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(auth_channel)

    for service in ("", "authgate.auth.v1.AuthService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_auth_service(auth_channel: grpc.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(auth_channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    [response] = list(reflection.ServerReflectionInfo(iter([request]), timeout=TIMEOUT))

    names = {service.name for service in response.list_services_response.service}
    assert "authgate.auth.v1.AuthService" in names


def test_no_secret_reaches_the_logs(auth_stub: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    _register(auth_stub)
    pair = _login(auth_stub)
    refreshed = auth_stub.Refresh(
        auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT
    )
    _error(auth_stub.Refresh, auth_pb2.RefreshRequest(refresh_token=pair.refresh_token))
    _error(auth_stub.Login, auth_pb2.LoginRequest(username="alice", password="wrong password!"))

    logged = "\n".join(f"{record.getMessage()} {record.__dict__}" for record in caplog.records)
    secrets = [
        PASSWORD,
        "wrong password!",
        pair.access_token,
        pair.refresh_token,
        refreshed.access_token,
        refreshed.refresh_token,
        "$argon2id$",
    ]
    assert caplog.records
    assert not [secret for secret in secrets if secret in logged]


def test_server_binds_an_ephemeral_port_and_stops(auth_server: AuthServer) -> None:
    assert auth_server.port > 0
    assert auth_server.target == f"127.0.0.1:{auth_server.port}"


def test_a_display_name_posing_as_another_is_invalid_argument(auth_stub: Any) -> None:
    # Shows as "Alice", then a zero-width space and a line separator before "admin".
    error = _error(
        auth_stub.Register,
        auth_pb2.RegisterRequest(
            username="mallory", password=PASSWORD, display_name="\u202eecilA\u200b\u2028admin"
        ),
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("display_name must be")


def test_username_rules_declared_in_the_proto_apply_to_direct_calls(auth_stub: Any) -> None:
    error = _error(auth_stub.Register, auth_pb2.RegisterRequest(username="0", password=PASSWORD))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("username must be 3 to 64 characters")
