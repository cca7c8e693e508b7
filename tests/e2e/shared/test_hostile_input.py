"""Every bad input of the contract gets its 4xx as problem+json and writes nothing.

Hostile tokens come in three kinds: forgeries of a token we issued (FORGERIES), tokens
signed by the stack's real key that break exactly one rule (SIGNED_TOKENS: the signature
is fine, so the rule itself must refuse them), and tokens whose headers point at other
keys (KEY_HEADER_TOKENS: jku, x5u, jwk, hostile kids).
"""

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
from tests.e2e.shared.conftest import ON_EITHER_SERVER, RunningStack
from tests.token_factory import TokenFactory, new_rsa_key

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


def register_case(
    name: str, body: bytes, *, status: int = 400, headers: dict[str, str] | None = None
) -> Case:
    """A POST /v1/auth/register that must be refused; its id is "register <name>"."""
    headers = dict(JSON) if headers is None else headers
    return Case(f"register {name}", "POST", "/v1/auth/register", status, body, headers)


CASES = [
    register_case("missing password", register_body(password=...)),
    register_case("missing username", register_body(username=...)),
    register_case("unknown field", register_body(is_admin=True)),
    register_case("camelCase alias", register_body(displayName="A")),
    register_case("username as number", register_body(username=12345)),
    register_case("password as list", register_body(password=["x"])),
    register_case("null username", register_body(username=None)),
    register_case("short password", register_body(password="short")),
    register_case("password too long", register_body(password="p" * 129)),
    register_case("username too short", register_body(username="ab")),
    register_case("username bad chars", register_body(username="a b/c")),
    register_case("username too long", register_body(username="a" * 65)),
    register_case("json array", raw([1, 2])),
    register_case("json string", raw("hello")),
    register_case("not json", b"username=alice&password=x"),
    register_case("empty body", b""),
    register_case("invalid utf-8", b'{"username": "\xff\xfe"}'),
    register_case(
        "duplicate keys",
        b'{"username": "dupkey_user", "username": "other_user", "password": "'
        + PASSWORD.encode()
        + b'"}',
    ),
    register_case("NaN", b'{"username": NaN, "password": "x"}'),
    register_case("deep nesting", b'{"username": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"),
    register_case(
        "text/plain", register_body(), status=415, headers={"Content-Type": "text/plain"}
    ),
    register_case("no content type", register_body(), status=415, headers={}),
    register_case(
        "form content type",
        register_body(),
        status=415,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    register_case("oversized body", register_body(display_name="x" * 200_000), status=413),
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
    last = uuid.uuid4().hex
    running_stack.post(
        "/v1/auth/login",
        {"username": username, "password": secret + "-wrong"},
        headers={"X-Request-ID": last},
    )
    # The last request's lines: the gateway and auth_svc have logged the whole flow.
    for name, message in (("gateway", "request"), ("auth", "rpc")):
        running_stack.wait_for_lines_of(name, last, message)
    logs = running_stack.logs()
    assert logs, "expected the processes to log the flow"
    for leaked in (secret, tokens["access_token"], tokens["refresh_token"], "$argon2id$"):
        assert leaked not in logs


# --- tokens signed by the stack's own key, each breaking one rule ------------------------------

EVIL = "https://evil.example"
# (ours: the stack's real key and kid, foreign: a key we never published) -> token
TokenMaker = Callable[[TokenFactory, TokenFactory], str]


@dataclass(frozen=True)
class TokenCase:
    name: str
    make: TokenMaker
    # What the 401's detail must say: the rule that refused the token, not another one.
    refusal: str

    def __str__(self) -> str:
        return self.name


def someone() -> str:
    return str(uuid.uuid4())


def now() -> int:
    return int(time.time())


def signed(**claims: object) -> TokenMaker:
    """Real key and kid; the claims differ from a valid token's by `claims` (None drops one)."""
    return lambda ours, _foreign: ours.mint(someone(), "mallory", **claims)


def signed_header(**header: object) -> TokenMaker:
    """Real key and valid claims; the header differs by `header` (None drops a field)."""
    return lambda ours, _foreign: ours.mint_with_header(header, sub=someone())


def foreign_signed(**header: object) -> TokenMaker:
    """Signed by a key we never published; our kid unless `header` names another."""
    return lambda ours, foreign: ours.mint_with_header(header, sub=someone(), key=foreign.key)


def foreign_kid_signed(**header: object) -> TokenMaker:
    """Signed by a foreign key and naming that key's own kid."""
    return lambda ours, foreign: ours.mint_with_header(
        {"kid": foreign.kid, **header}, sub=someone(), key=foreign.key
    )


NOT_ACCESS = "the token is not an access token"
NO_KID = "the access token has no usable key id"
MALFORMED = "the access token is malformed"
UNKNOWN_KEY = "the access token is signed by an unknown key"
BAD_SIGNATURE = "the access token's signature is invalid"
NOT_YET = "the access token is not valid yet"
OTHER_AUDIENCE = "the access token is for another audience"

SIGNED_TOKENS = [
    TokenCase("typ JWT instead of at+jwt", signed_header(typ="JWT"), NOT_ACCESS),
    TokenCase("typ missing", signed_header(typ=None), NOT_ACCESS),
    TokenCase("kid missing", signed_header(kid=None), NO_KID),
    TokenCase(
        "alg RS512 not accepted",
        signed_header(alg="RS512"),
        "the access token's algorithm is not accepted",
    ),
    TokenCase(
        "lifetime over the maximum",
        lambda ours, _: ours.mint(someone(), "m", exp=now() + 7200),
        "the access token's lifetime is too long",
    ),
    *(
        TokenCase(f"missing {claim}", signed(**{claim: None}), f"has no {claim} claim")
        for claim in ("jti", "iat", "sub", "exp", "iss", "aud")
    ),
    TokenCase("empty sub", signed(sub=""), "the access token's subject is invalid"),
    TokenCase("numeric sub", signed(sub=12345), MALFORMED),
    TokenCase(
        "expired beyond the leeway",
        lambda ours, _: ours.mint(someone(), "m", iat=now() - 900, exp=now() - 60),
        "the access token has expired",
    ),
    TokenCase("not valid before", signed(nbf=now() + 600), NOT_YET),
    TokenCase(
        "issued in the future",
        lambda ours, _: ours.mint(someone(), "m", iat=now() + 600, exp=now() + 900),
        NOT_YET,
    ),
    TokenCase("another audience", signed(aud="someone-else"), OTHER_AUDIENCE),
    TokenCase("audience list without ours", signed(aud=["a", "b"]), OTHER_AUDIENCE),
    TokenCase("another issuer", signed(iss=EVIL), "the access token has an unknown issuer"),
    TokenCase("padded to 10 KB", signed(padding="x" * 10_240), "the access token is too large"),
]

KEY_HEADER_TOKENS = [
    TokenCase("jku to a foreign JWKS", foreign_kid_signed(jku=f"{EVIL}/jwks.json"), UNKNOWN_KEY),
    TokenCase(
        "jku to a foreign JWKS with our kid", foreign_signed(jku=f"{EVIL}/jwks.json"), BAD_SIGNATURE
    ),
    TokenCase("x5u to a foreign certificate", foreign_kid_signed(x5u=f"{EVIL}/c.pem"), UNKNOWN_KEY),
    TokenCase("x5u with our kid", foreign_signed(x5u=f"{EVIL}/c.pem"), BAD_SIGNATURE),
    TokenCase(
        "embedded jwk of the signing key",
        lambda ours, foreign: ours.mint_with_header(
            {"kid": foreign.kid, "jwk": foreign.jwk()}, sub=someone(), key=foreign.key
        ),
        UNKNOWN_KEY,
    ),
    TokenCase(
        "embedded jwk with our kid",
        lambda ours, foreign: ours.mint_with_header(
            {"jwk": foreign.jwk()}, sub=someone(), key=foreign.key
        ),
        BAD_SIGNATURE,
    ),
    # Signed by our real key: only a kid used as a path, URL or query could make these pass.
    TokenCase("kid path traversal", signed_header(kid="../../../../etc/passwd"), UNKNOWN_KEY),
    TokenCase("kid naming the key file", signed_header(kid="../keys/e2e.pem"), UNKNOWN_KEY),
    TokenCase("kid url", signed_header(kid=f"{EVIL}/key.pem"), UNKNOWN_KEY),
    TokenCase("kid sql injection", signed_header(kid="' OR '1'='1"), UNKNOWN_KEY),
    TokenCase("kid too long", signed_header(kid="k" * 500), NO_KID),
    TokenCase("kid not a string", signed_header(kid=1234), MALFORMED),
]


@pytest.fixture(scope="module")
def stack_key(running_stack: RunningStack) -> TokenFactory:
    """Mints tokens signed by the stack's own signing key (a file the test put in its
    AUTH_KEYS_DIR), with the kid the auth service gives that key."""
    return TokenFactory(running_stack.token_settings, key=running_stack.signing_key)


@pytest.fixture(scope="module")
def foreign_key(running_stack: RunningStack) -> TokenFactory:
    return TokenFactory(running_stack.token_settings, key=new_rsa_key())


def test_a_token_minted_with_the_stack_key_is_accepted(
    running_stack: RunningStack, stack_key: TokenFactory, issued: tuple[str, str]
) -> None:
    """The control of the tables below: the same key and claims, nothing broken, pass."""
    token, username = issued
    user_id = forgery.parts(token)[1]["sub"]
    jwks = requests.get(f"{running_stack.url}/.well-known/jwks.json", timeout=10).json()
    assert stack_key.kid in {key["kid"] for key in jwks["keys"]}
    response = requests.get(
        f"{running_stack.url}/v1/profile",
        headers={"Authorization": f"Bearer {stack_key.mint(user_id, username)}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["username"] == username


@pytest.mark.parametrize("case", [*SIGNED_TOKENS, *KEY_HEADER_TOKENS], ids=str)
def test_a_hostile_token_is_401_for_its_own_reason_and_writes_nothing(
    running_stack: RunningStack, stack_key: TokenFactory, foreign_key: TokenFactory, case: TokenCase
) -> None:
    token = case.make(stack_key, foreign_key)
    before = running_stack.row_counts()
    response = requests.get(
        f"{running_stack.url}/v1/profile", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    body = assert_problem(response, 401)
    assert case.refusal in str(body["detail"])
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert running_stack.row_counts() == before


def test_an_access_token_presented_as_a_refresh_token_is_401(
    running_stack: RunningStack, issued: tuple[str, str]
) -> None:
    token, _ = issued
    before = running_stack.row_counts()
    response = running_stack.post("/v1/auth/refresh", {"refresh_token": token})
    assert_problem(response, 401)
    assert running_stack.row_counts() == before


# --- oversized Authorization headers: refused by the app or by the server, never a 5xx ---------


@ON_EITHER_SERVER
@pytest.mark.parametrize(
    ("size", "status"),
    [(10 * 1024, 401), (16 * 1024 - 64, 401), (40 * 1024, 431)],
    ids=["10 KB: 401 from the gateway", "16 KB: fits, 401", "40 KB: 431 from the server"],
)
def test_an_oversized_authorization_header_is_refused(
    running_stack: RunningStack, size: int, status: int
) -> None:
    before = running_stack.row_counts()
    value = "Bearer " + "A" * (size - len("Bearer "))
    response = requests.get(
        f"{running_stack.url}/v1/profile", headers={"Authorization": value}, timeout=10
    )
    assert response.status_code == status, response.text[:200]
    if status == 401:
        assert_problem(response, 401)
    assert "A" * 64 not in response.text
    assert running_stack.row_counts() == before
