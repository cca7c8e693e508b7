"""Every bad input of the contract gets its 4xx as problem+json and writes nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import pytest
import requests
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

from tests.e2e import forgery
from tests.e2e.conftest import RunningStack

PASSWORD = "correct horse battery staple"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))

    def __str__(self) -> str:
        return self.name


def raw(value: object) -> bytes:
    return json.dumps(value).encode()


def register_body(**changes: object) -> bytes:
    body: dict[str, object] = {"username": f"u_{uuid.uuid4().hex[:8]}", "password": PASSWORD}
    body.update(changes)
    return raw({k: v for k, v in body.items() if v is not ...})


CASES = [
    Case(
        "register missing password", "POST", "/v1/auth/register", 400, register_body(password=...)
    ),
    Case(
        "register missing username", "POST", "/v1/auth/register", 400, register_body(username=...)
    ),
    Case("register unknown field", "POST", "/v1/auth/register", 400, register_body(is_admin=True)),
    Case(
        "register camelCase alias", "POST", "/v1/auth/register", 400, register_body(displayName="A")
    ),
    Case(
        "register username as number",
        "POST",
        "/v1/auth/register",
        400,
        register_body(username=12345),
    ),
    Case(
        "register password as list", "POST", "/v1/auth/register", 400, register_body(password=["x"])
    ),
    Case("register null username", "POST", "/v1/auth/register", 400, register_body(username=None)),
    Case(
        "register short password", "POST", "/v1/auth/register", 400, register_body(password="short")
    ),
    Case(
        "register password too long",
        "POST",
        "/v1/auth/register",
        400,
        register_body(password="p" * 129),
    ),
    Case(
        "register username too short",
        "POST",
        "/v1/auth/register",
        400,
        register_body(username="ab"),
    ),
    Case(
        "register username bad chars",
        "POST",
        "/v1/auth/register",
        400,
        register_body(username="a b/c"),
    ),
    Case(
        "register username too long",
        "POST",
        "/v1/auth/register",
        400,
        register_body(username="a" * 65),
    ),
    Case("register json array", "POST", "/v1/auth/register", 400, raw([1, 2])),
    Case("register json string", "POST", "/v1/auth/register", 400, raw("hello")),
    Case("register not json", "POST", "/v1/auth/register", 400, b"username=alice&password=x"),
    Case("register empty body", "POST", "/v1/auth/register", 400, b""),
    Case("register invalid utf-8", "POST", "/v1/auth/register", 400, b'{"username": "\xff\xfe"}'),
    Case(
        "register duplicate keys",
        "POST",
        "/v1/auth/register",
        400,
        b'{"username": "dupkey_user", "username": "other_user", "password": "'
        + PASSWORD.encode()
        + b'"}',
    ),
    Case("register NaN", "POST", "/v1/auth/register", 400, b'{"username": NaN, "password": "x"}'),
    Case(
        "register deep nesting",
        "POST",
        "/v1/auth/register",
        400,
        b'{"username": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
    ),
    Case(
        "register text/plain",
        "POST",
        "/v1/auth/register",
        415,
        register_body(),
        {"Content-Type": "text/plain"},
    ),
    Case("register no content type", "POST", "/v1/auth/register", 415, register_body(), {}),
    Case(
        "register form content type",
        "POST",
        "/v1/auth/register",
        415,
        register_body(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    ),
    Case(
        "register oversized body",
        "POST",
        "/v1/auth/register",
        413,
        register_body(display_name="x" * 200_000),
    ),
    Case("login missing password", "POST", "/v1/auth/login", 400, raw({"username": "someone"})),
    Case(
        "login unknown user",
        "POST",
        "/v1/auth/login",
        401,
        raw({"username": "nobody_here", "password": PASSWORD}),
    ),
    Case(
        "refresh garbage token", "POST", "/v1/auth/refresh", 401, raw({"refresh_token": "garbage"})
    ),
    Case("refresh number token", "POST", "/v1/auth/refresh", 400, raw({"refresh_token": 7})),
    Case("logout missing token", "POST", "/v1/auth/logout", 400, raw({})),
    Case("profile without token", "GET", "/v1/profile", 401, None, {}),
    Case("profile basic auth", "GET", "/v1/profile", 401, None, {"Authorization": "Basic YTpi"}),
    Case("profile empty bearer", "GET", "/v1/profile", 401, None, {"Authorization": "Bearer "}),
    Case(
        "profile garbage token",
        "GET",
        "/v1/profile",
        401,
        None,
        {"Authorization": "Bearer not.a.jwt"},
    ),
    Case(
        "profile oversized token",
        "GET",
        "/v1/profile",
        401,
        None,
        {"Authorization": "Bearer " + "a" * 10_000},
    ),
    Case("patch without token", "PATCH", "/v1/profile", 401, raw({"bio": "x"})),
    Case("unknown route", "GET", "/v1/nothing-here", 404, None, {}),
    Case("wrong method", "DELETE", "/v1/auth/login", 405, None, {}),
]


def assert_problem(response: requests.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body.get("title"), str)
    assert body["title"]
    assert "Traceback" not in response.text
    assert "grpc" not in response.text.lower()
    return body


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_request_is_answered_with_its_4xx_and_writes_nothing(
    running_stack: RunningStack, case: Case
) -> None:
    before = running_stack.row_counts()
    response = requests.request(
        case.method,
        f"{running_stack.url}{case.path}",
        data=case.body,
        headers=case.headers,
        timeout=10,
    )
    assert_problem(response, case.status)
    assert running_stack.row_counts() == before


def test_401_carries_a_bearer_challenge(running_stack: RunningStack) -> None:
    missing = requests.get(f"{running_stack.url}/v1/profile", timeout=10)
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    invalid = requests.get(
        f"{running_stack.url}/v1/profile", headers={"Authorization": "Bearer x.y.z"}, timeout=10
    )
    assert 'error="invalid_token"' in invalid.headers["WWW-Authenticate"]


@pytest.fixture
def issued(running_stack: RunningStack) -> tuple[str, str]:
    """A user's access token and the username, registered afresh."""
    username = f"u_{uuid.uuid4().hex[:8]}"
    running_stack.post("/v1/auth/register", {"username": username, "password": PASSWORD})
    login = running_stack.post("/v1/auth/login", {"username": username, "password": PASSWORD})
    return login.json()["access_token"], username


def _jwk_of(running_stack: RunningStack, token: str) -> dict[str, str]:
    kid = forgery.parts(token)[0]["kid"]
    keys = requests.get(f"{running_stack.url}/.well-known/jwks.json", timeout=10).json()["keys"]
    jwk: dict[str, str] = next(key for key in keys if key["kid"] == kid)
    return jwk


FORGERIES: list[tuple[str, Callable[[RunningStack, str], str]]] = [
    ("alg none", lambda _stack, token: forgery.alg_none(token)),
    (
        "hs256 keyed with the public key",
        lambda stack, token: forgery.hs256_with_public_key(
            token, forgery.public_pem_of_jwk(_jwk_of(stack, token))
        ),
    ),
    (
        "tampered subject",
        lambda _stack, token: forgery.tampered_payload(token, sub=str(uuid.uuid4())),
    ),
    (
        "tampered expiry",
        lambda _stack, token: forgery.tampered_payload(token, exp=int(time.time()) + 86400),
    ),
    ("foreign key with our kid", lambda _stack, token: forgery.signed_by_foreign_key(token)),
    ("signature stripped", lambda _stack, token: token.rsplit(".", 1)[0] + "."),
    ("garbage", lambda _stack, _token: "eyJhbGciOi.garbage.garbage"),
]


@pytest.mark.parametrize(("name", "forge"), FORGERIES, ids=[name for name, _ in FORGERIES])
def test_forged_token_is_401(
    running_stack: RunningStack,
    issued: tuple[str, str],
    name: str,
    forge: Callable[[RunningStack, str], str],
) -> None:
    token, _ = issued
    before = running_stack.row_counts()
    response = requests.get(
        f"{running_stack.url}/v1/profile",
        headers={"Authorization": f"Bearer {forge(running_stack, token)}"},
        timeout=10,
    )
    assert_problem(response, 401)
    assert running_stack.row_counts() == before


def test_refresh_token_used_as_access_token_is_401(running_stack: RunningStack) -> None:
    username = f"u_{uuid.uuid4().hex[:8]}"
    running_stack.post("/v1/auth/register", {"username": username, "password": PASSWORD})
    refresh = running_stack.post(
        "/v1/auth/login", {"username": username, "password": PASSWORD}
    ).json()["refresh_token"]
    response = requests.get(
        f"{running_stack.url}/v1/profile",
        headers={"Authorization": f"Bearer {refresh}"},
        timeout=10,
    )
    assert_problem(response, 401)


def test_wrong_password_and_unknown_user_get_the_same_answer(running_stack: RunningStack) -> None:
    username = f"u_{uuid.uuid4().hex[:8]}"
    running_stack.post("/v1/auth/register", {"username": username, "password": PASSWORD})
    wrong = running_stack.post("/v1/auth/login", {"username": username, "password": PASSWORD + "!"})
    unknown = running_stack.post(
        "/v1/auth/login", {"username": username + "x", "password": PASSWORD}
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = {"instance", "request_id"}
    assert {k: v for k, v in wrong.json().items() if k not in strip} == {
        k: v for k, v in unknown.json().items() if k not in strip
    }


def test_username_differing_only_in_case_is_409(running_stack: RunningStack) -> None:
    username = f"Case_{uuid.uuid4().hex[:8]}"
    assert (
        running_stack.post(
            "/v1/auth/register", {"username": username, "password": PASSWORD}
        ).status_code
        == 201
    )
    before = running_stack.row_counts()
    again = running_stack.post(
        "/v1/auth/register", {"username": username.upper(), "password": PASSWORD}
    )
    assert_problem(again, 409)
    assert running_stack.row_counts() == before


@pytest.mark.parametrize(
    "body",
    [
        {"nickname": "x"},
        {"bio": 5},
        {"email": "not-an-address"},
        {"display_name": "x" * 101},
        {"user_id": "someone-else"},
        {"bio": None},
    ],
    ids=["unknown field", "bio number", "bad email", "long name", "output-only field", "null bio"],
)
def test_bad_profile_update_is_400_and_changes_nothing(
    running_stack: RunningStack, issued: tuple[str, str], body: dict[str, object]
) -> None:
    token, _ = issued
    headers = {"Authorization": f"Bearer {token}"}
    original = requests.get(f"{running_stack.url}/v1/profile", headers=headers, timeout=10).json()
    response = requests.patch(
        f"{running_stack.url}/v1/profile", json=body, headers=headers, timeout=10
    )
    assert_problem(response, 400)
    assert (
        requests.get(f"{running_stack.url}/v1/profile", headers=headers, timeout=10).json()
        == original
    )


@pytest.fixture
def profile_stub(running_stack: RunningStack) -> Iterator[profile_pb2_grpc.ProfileServiceStub]:
    with grpc.insecure_channel(running_stack.profile_target) as channel:
        yield profile_pb2_grpc.ProfileServiceStub(channel)


def test_direct_grpc_call_with_spoofed_user_id_is_unauthenticated(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, issued: tuple[str, str]
) -> None:
    token, _ = issued
    with pytest.raises(grpc.RpcError) as error:
        profile_stub.GetProfile(
            profile_pb2.GetProfileRequest(),
            metadata=(("authorization", f"Bearer {token}"), ("x-user-id", str(uuid.uuid4()))),
            timeout=5,
        )
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_direct_grpc_call_without_token_is_unauthenticated(
    profile_stub: profile_pb2_grpc.ProfileServiceStub,
) -> None:
    with pytest.raises(grpc.RpcError) as error:
        profile_stub.GetProfile(
            profile_pb2.GetProfileRequest(), metadata=(("x-user-id", "1"),), timeout=5
        )
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_direct_grpc_call_with_the_token_alone_returns_the_profile(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, issued: tuple[str, str]
) -> None:
    token, username = issued
    profile = profile_stub.GetProfile(
        profile_pb2.GetProfileRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=5
    )
    assert profile.username == username


def test_logs_of_a_full_flow_hold_no_password_or_token(running_stack: RunningStack) -> None:
    username = f"u_{uuid.uuid4().hex[:8]}"
    secret = f"Secret-{uuid.uuid4().hex}"
    running_stack.post("/v1/auth/register", {"username": username, "password": secret})
    tokens = running_stack.post("/v1/auth/login", {"username": username, "password": secret}).json()
    requests.get(
        f"{running_stack.url}/v1/profile",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
        timeout=10,
    )
    running_stack.post("/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    running_stack.post("/v1/auth/login", {"username": username, "password": secret + "-wrong"})
    time.sleep(0.5)  # let the processes flush their log lines
    logs = running_stack.logs()
    assert logs, "expected the processes to log the flow"
    for leaked in (secret, tokens["access_token"], tokens["refresh_token"], "$argon2id$"):
        assert leaked not in logs
