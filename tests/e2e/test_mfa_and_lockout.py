"""Through the gateway: the lockout spares the owner, a distributed attack locks the account
(audited), password rules compare the normal form, and the TOTP second factor end to end."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pyotp
import pytest
import requests
import sqlalchemy

from tests.harness import RealStack, real_stack

PASSWORD = "correct horse battery staple"
LOCKOUT_THRESHOLD = 5  # auth_svc's default AUTH_LOCKOUT_THRESHOLD
ACCOUNT_THRESHOLD = 8
OWNER_IP = "198.51.100.20"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealStack]:
    server = request.getfixturevalue("mysql_server_url") if request.param == "mysql" else None
    with real_stack(
        tmp_path_factory.mktemp("mfa-stack"),
        mysql_server_url=server,
        # The test is the one proxy in front: X-Forwarded-For names the client.
        extra_env={
            "GATEWAY_TRUSTED_PROXY_COUNT": "1",
            "AUTH_ACCOUNT_LOCK_THRESHOLD": str(ACCOUNT_THRESHOLD),
        },
    ) as running:
        yield running


def _post(
    stack: RealStack, path: str, body: object, *, ip: str = OWNER_IP, token: str | None = None
) -> requests.Response:
    headers = {"X-Forwarded-For": ip}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return stack.post(path, body, headers=headers)


def _registered(stack: RealStack) -> str:
    username = f"u_{uuid.uuid4().hex[:10]}"
    assert _post(stack, "/v1/auth/register", {"username": username, "password": PASSWORD}).ok
    return username


def _login(
    stack: RealStack, username: str, password: str = PASSWORD, **kwargs: Any
) -> requests.Response:
    return _post(stack, "/v1/auth/login", {"username": username, "password": password}, **kwargs)


def _rows(stack: RealStack, sql: str, **params: object) -> list[Any]:
    with stack.engine(stack.auth_database_url).connect() as connection:
        return list(connection.execute(sqlalchemy.text(sql), params))


def test_the_owner_gets_in_from_another_address_while_the_attacking_address_is_refused(
    stack: RealStack,
) -> None:
    username = _registered(stack)
    for _ in range(LOCKOUT_THRESHOLD + 3):
        assert _login(stack, username, "wrong password!!", ip="203.0.113.7").status_code == 401

    assert _login(stack, username, ip="203.0.113.7").status_code == 401  # locked there
    assert _login(stack, username, ip=OWNER_IP).status_code == 200


def test_failures_from_many_addresses_lock_the_account_and_are_audited(stack: RealStack) -> None:
    username = _registered(stack)
    for n in range(ACCOUNT_THRESHOLD):
        attacker = f"203.0.113.{100 + n}"
        assert _login(stack, username, "wrong password!!", ip=attacker).status_code == 401

    assert _login(stack, username, ip=OWNER_IP).status_code == 401
    [(detail, client_ip)] = _rows(
        stack,
        "SELECT e.detail, e.client_ip FROM audit_events e JOIN users u ON u.id = e.user_id"
        " WHERE u.username_normalized = :name AND e.type = 'lockout_engaged'",
        name=username.lower(),
    )
    assert '"scope":"account"' in detail
    assert client_ip == f"203.0.113.{100 + ACCOUNT_THRESHOLD - 1}"


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "password1234 ",
        " password1234",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14",
    ],
)
def test_common_password_variants_are_refused_at_registration(
    stack: RealStack, password: str
) -> None:
    username = f"u_{uuid.uuid4().hex[:10]}"
    answer = _post(stack, "/v1/auth/register", {"username": username, "password": password})
    assert answer.status_code == 400
    assert "too common" in answer.json()["detail"]
    assert _rows(stack, "SELECT id FROM users WHERE username_normalized = :n", n=username) == []


def _step_code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def _with_mfa(stack: RealStack) -> tuple[str, str, list[str]]:
    """A user with TOTP on: (username, secret, recovery codes); the current step is spent."""
    username = _registered(stack)
    token = _login(stack, username).json()["access_token"]
    enrolled = _post(stack, "/v1/account/mfa/totp:enroll", {}, token=token)
    assert enrolled.status_code == 200, enrolled.text
    secret = enrolled.json()["secret"]
    assert enrolled.json()["otpauth_uri"].startswith("otpauth://totp/")
    assert username in enrolled.json()["otpauth_uri"]
    confirmed = _post(
        stack, "/v1/account/mfa/totp:confirm", {"code": _step_code(secret)}, token=token
    )
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    return username, secret, codes


def test_the_whole_mfa_flow_with_replays_refused(stack: RealStack) -> None:
    username, secret, recovery = _with_mfa(stack)

    first = _login(stack, username)
    assert first.status_code == 200
    assert set(first.json()) == {"mfa_required", "mfa_token", "expires_in"}
    assert first.json()["mfa_required"] is True
    code = _step_code(secret, 1)  # the next step: the confirming code spent this one
    done = _post(
        stack, "/v1/auth/login/mfa", {"mfa_token": first.json()["mfa_token"], "code": code}
    )
    assert done.status_code == 200, done.text
    claims = jwt.decode(done.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp"]
    # The mfa_token is spent, and so is the code.
    again = _post(
        stack, "/v1/auth/login/mfa", {"mfa_token": first.json()["mfa_token"], "code": code}
    )
    assert again.status_code == 401
    second = _login(stack, username).json()["mfa_token"]
    assert (
        _post(stack, "/v1/auth/login/mfa", {"mfa_token": second, "code": code}).status_code == 401
    )

    third = _login(stack, username).json()["mfa_token"]
    used = _post(stack, "/v1/auth/login/mfa", {"mfa_token": third, "code": recovery[0]})
    assert used.status_code == 200
    fourth = _login(stack, username).json()["mfa_token"]
    assert (
        _post(stack, "/v1/auth/login/mfa", {"mfa_token": fourth, "code": recovery[0]}).status_code
        == 401
    )

    token = used.json()["access_token"]
    disabled = _post(stack, "/v1/account/mfa/totp:disable", {"code": recovery[1]}, token=token)
    assert disabled.status_code == 204
    assert "access_token" in _login(stack, username).json()


def test_with_mfa_on_deleting_the_account_over_http_needs_a_code(stack: RealStack) -> None:
    username, secret, recovery = _with_mfa(stack)
    first = _login(stack, username).json()["mfa_token"]
    session = _post(stack, "/v1/auth/login/mfa", {"mfa_token": first, "code": recovery[0]})
    token = session.json()["access_token"]
    exists = "SELECT id FROM users WHERE username_normalized = :n"

    missing = _post(stack, "/v1/account:delete", {"password": PASSWORD}, token=token)
    assert missing.status_code == 400
    assert "code is required" in missing.json()["detail"]
    wrong = _post(
        stack, "/v1/account:delete", {"password": PASSWORD, "code": "000000"}, token=token
    )
    assert wrong.status_code == 401
    assert len(_rows(stack, exists, n=username)) == 1

    deleted = _post(
        stack,
        "/v1/account:delete",
        {"password": PASSWORD, "code": _step_code(secret, 1)},
        token=token,
    )
    assert deleted.status_code == 204, deleted.text
    assert _rows(stack, exists, n=username) == []


def test_the_mfa_routes_need_an_access_token(stack: RealStack) -> None:
    for path, body in (
        ("/v1/account/mfa/totp:enroll", {}),
        ("/v1/account/mfa/totp:confirm", {"code": "123456"}),
        ("/v1/account/mfa/totp:disable", {"code": "123456"}),
    ):
        assert _post(stack, path, body).status_code == 401


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/account/mfa/totp:enroll", {"extra": 1}),
        ("/v1/account/mfa/totp:confirm", {}),
        ("/v1/account/mfa/totp:confirm", {"code": 123456}),
        ("/v1/account/mfa/totp:confirm", {"code": "12345"}),
        ("/v1/account/mfa/totp:confirm", {"code": "123456", "extra": "x"}),
        ("/v1/account/mfa/totp:disable", {}),
        ("/v1/account/mfa/totp:disable", {"code": ["123456"]}),
        ("/v1/account/mfa/totp:disable", {"code": "123456", "extra": "x"}),
    ],
)
def test_bad_input_on_the_mfa_routes_is_400_and_writes_nothing(
    stack: RealStack, path: str, body: dict[str, object]
) -> None:
    username = _registered(stack)
    token = _login(stack, username).json()["access_token"]
    answer = _post(stack, path, body, token=token)
    assert answer.status_code == 400, answer.text
    assert (
        _rows(
            stack,
            "SELECT t.user_id FROM mfa_totp t JOIN users u ON u.id = t.user_id"
            " WHERE u.username_normalized = :n",
            n=username.lower(),
        )
        == []
    )


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"mfa_token": "x"},
        {"code": "123456"},
        {"mfa_token": 5, "code": "123456"},
        {"mfa_token": "x", "code": "123456", "extra": 1},
        {"mfa_token": "x", "code": "12"},
    ],
)
def test_bad_input_on_login_mfa_is_400(stack: RealStack, body: dict[str, object]) -> None:
    assert _post(stack, "/v1/auth/login/mfa", body).status_code == 400


def test_an_unknown_mfa_token_is_401(stack: RealStack) -> None:
    answer = _post(stack, "/v1/auth/login/mfa", {"mfa_token": "not-a-token", "code": "123456"})
    assert answer.status_code == 401
