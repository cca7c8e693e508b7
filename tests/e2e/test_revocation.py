"""Revocation through the real stack: a gateway with two gunicorn workers refuses a revoked
user's tokens within 2 seconds, with no call to the auth service on the request path.

The admin-API loops: an admin (made with the grant-role command while the stack runs)
disables a user, takes a role away or revokes the sessions over HTTP, while clients loop
requests with the user's earlier token; the answers turn within 2 s and stay so.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
import sqlalchemy
from prometheus_client.parser import text_string_to_metric_families

from auth_svc.revocations import RevocationLog, token_lifetime_bound
from auth_svc.roles import main as roles_main
from authgate_common.config import Env
from authgate_common.db import make_sessions
from authgate_common.tokens import TokenSettings
from tests.harness import RealStack, real_stack, wait_until
from tests.observability.metrics_text import sample

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
TOKENS = TokenSettings(issuer="authgate-revocation", audience="revocation-api")
HANDLED = "grpc_server_handled_total"
WITHIN = 2.0
# How long the loop goes on after the deadline, to show the refusal stays.
AFTERWARDS = 1.5


def _auth_rpcs_answered(stack: RealStack) -> dict[str, float]:
    """The unary RPCs the auth service answered so far, by method (streams are not counted)."""
    text = requests.get(stack.settings.metrics_urls()["auth"], timeout=5).text
    return {
        method: sample(text, HANDLED, {"grpc_method": method})
        for method in ("Register", "Login", "Refresh", "Logout", "GetJwks", "Check")
    } | {"all": sample(text, HANDLED)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    with real_stack(
        tmp_path_factory.mktemp("revocation"),
        metrics=True,
        gateway_workers=2,
        extra_env={"JWT_ISSUER": TOKENS.issuer, "JWT_AUDIENCE": TOKENS.audience},
    ) as running:
        yield running


def _profile_status(url: str, token: str) -> int:
    # A new connection each time, so that both gunicorn workers answer.
    response = requests.get(
        f"{url}/v1/profile",
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=10,
    )
    return response.status_code


def test_a_revoked_user_is_refused_by_every_worker_within_2s_without_asking_auth(
    stack: RealStack,
) -> None:
    credentials = {"username": "alice", "password": PASSWORD}
    registered = requests.post(f"{stack.url}/v1/auth/register", json=credentials, timeout=10)
    login = requests.post(f"{stack.url}/v1/auth/login", json=credentials, timeout=10).json()
    token, user_id = login["access_token"], registered.json()["user_id"]
    for _ in range(40):  # both workers have verified it (and fetched the keys) by now
        assert _profile_status(stack.url, token) == 200
    answered_before = _auth_rpcs_answered(stack)

    # (started, answered, status) of each request.
    results: list[tuple[float, float, int]] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status = _profile_status(stack.url, token)
            with lock:
                results.append((started, time.monotonic(), status))
                if len(results) >= 20:
                    enough.set()

    threads = [threading.Thread(target=loop) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(10)
        engine = sqlalchemy.create_engine(stack.auth_database_url)
        try:
            log = RevocationLog(make_sessions(engine), token_lifetime=token_lifetime_bound(TOKENS))
            revoking_at = time.monotonic()
            with make_sessions(engine).begin() as session:  # as the admin API's transaction
                log.revoke_user(session, user_id, reason="sessions_revoked", at=datetime.now(UTC))
        finally:
            engine.dispose()
        revoked_at = time.monotonic()
        stop.wait(WITHIN + AFTERWARDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)

    # A request under way while the revocation commits may get either answer: "before"
    # is what was answered before it began, "after" what was sent after the deadline.
    before = [status for _, answered, status in results if answered < revoking_at]
    after_deadline = [status for started, _, status in results if started >= revoked_at + WITHIN]
    assert set(before) == {200}
    assert len(after_deadline) >= 5
    assert set(after_deadline) == {401}
    # No call to the auth service per request (nor for the revocation): at most a worker
    # that the warm-up happened not to reach fetches the key set once, on its first request.
    answered_after = _auth_rpcs_answered(stack)
    grown = {method: answered_after[method] - answered_before[method] for method in answered_after}
    assert len(results) >= 50
    assert grown["GetJwks"] <= 1, grown
    assert grown["all"] == grown["GetJwks"], grown

    gateway_metrics = requests.get(f"{stack.url}/metrics", timeout=5).text
    assert sample(gateway_metrics, "authgate_revocation_feed_connected") == 1  # both workers
    assert sample(gateway_metrics, "authgate_revocation_feed_lag_seconds") < 5

    refused = requests.get(
        f"{stack.url}/v1/profile", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the access token has been revoked"
    refresh = requests.post(
        f"{stack.url}/v1/auth/refresh", json={"refresh_token": login["refresh_token"]}, timeout=10
    )
    assert refresh.status_code == 401


# --- the admin API while clients loop ---------------------------------------------------------

PROFILE = "/v1/profile"
ADMIN_ROUTE = "/v1/admin/users"
# Requests per path that must show the new answer before it counts as settled, and how
# long (and how many more requests at least) it must then stay.
SETTLED_RUN = 3
STAY_SECONDS = 1.0
STAY_REQUESTS = 10


@dataclass(frozen=True)
class Answer:
    path: str
    started: float
    finished: float
    status: int


class ClientLoop:
    """Threads that send GET path with one token, round the paths, until stopped."""

    def __init__(self, url: str, token: str, paths: tuple[str, ...], threads: int = 2) -> None:
        self._url, self._token, self._paths = url, token, paths
        self._lock = threading.Lock()
        self._answers: list[Answer] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> ClientLoop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _run(self, offset: int) -> None:
        turn = offset
        while not self._stop.is_set():
            path = self._paths[turn % len(self._paths)]
            turn += 1
            started = time.monotonic()
            response = requests.get(
                f"{self._url}{path}",
                headers={"Authorization": f"Bearer {self._token}", "Connection": "close"},
                timeout=10,
            )
            with self._lock:
                self._answers.append(Answer(path, started, time.monotonic(), response.status_code))

    def answers(self, path: str | None = None) -> list[Answer]:
        with self._lock:
            found = [a for a in self._answers if path is None or a.path == path]
        return sorted(found, key=lambda answer: answer.started)

    def count(self, path: str, since: float) -> int:
        return sum(1 for answer in self.answers(path) if answer.started >= since)

    def settled_at(self, expected: dict[str, int], since: float) -> float | None:
        """When every path's answers (from requests started after since) became the
        expected one for good, as far as seen yet: the start of the first request of the
        trailing run of expected answers; None while a path has too short a run."""
        starts = []
        for path, status in expected.items():
            later = [answer for answer in self.answers(path) if answer.started >= since]
            wrong = [i for i, answer in enumerate(later) if answer.status != status]
            run = later[wrong[-1] + 1 :] if wrong else later
            if len(run) < SETTLED_RUN:
                return None
            starts.append(run[0].started if wrong else since)
        return max(starts)


def _auth_calls(stack: RealStack) -> Counter[str]:
    """The RPCs the auth service has answered so far, by method (a stream counts when it ends)."""
    text = requests.get(stack.settings.metrics_urls()["auth"], timeout=5).text
    calls: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == HANDLED:
                calls[found.labels["grpc_method"]] += int(found.value)
    return calls


def _new_calls(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {
        method: after[method] - before[method] for method in after if after[method] > before[method]
    }


@dataclass
class Accounts:
    stack: RealStack
    admin_token: str

    def register_and_login(self, username: str) -> tuple[str, dict[str, Any]]:
        credentials = {"username": username, "password": PASSWORD}
        registered = requests.post(
            f"{self.stack.url}/v1/auth/register", json=credentials, timeout=10
        )
        assert registered.status_code == 201, registered.text
        return registered.json()["user_id"], self.login(username)

    def login(self, username: str) -> dict[str, Any]:
        credentials = {"username": username, "password": PASSWORD}
        response = requests.post(f"{self.stack.url}/v1/auth/login", json=credentials, timeout=10)
        assert response.status_code == 200, response.text
        pair: dict[str, Any] = response.json()
        return pair

    def grant(self, username: str, role: str) -> None:
        """The bootstrap command on the running stack's database."""
        env = Env({"AUTH_DATABASE_URL": self.stack.auth_database_url})
        assert roles_main(["grant", username, role], env) == 0

    def as_admin(self, method: str, path: str, body: object) -> requests.Response:
        return requests.request(
            method,
            f"{self.stack.url}{path}",
            json=body,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
        )

    def refresh(self, refresh_token: str) -> requests.Response:
        return requests.post(
            f"{self.stack.url}/v1/auth/refresh", json={"refresh_token": refresh_token}, timeout=10
        )

    def status(self, path: str, token: str) -> int:
        response = requests.get(
            f"{self.stack.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        return response.status_code


@pytest.fixture(scope="module")
def accounts(stack: RealStack) -> Accounts:
    made = Accounts(stack, admin_token="")
    made.register_and_login("root")
    made.grant("root", "admin")
    made.admin_token = made.login("root")["access_token"]
    return made


def _warm(accounts: Accounts, token: str, paths: tuple[str, ...]) -> None:
    # Enough new connections that both workers have verified the token (and fetched keys).
    for _ in range(20):
        for path in paths:
            assert accounts.status(path, token) == 200


def _change_while_looping(
    accounts: Accounts,
    token: str,
    expected: dict[str, int],
    change: Callable[[], requests.Response],
    change_status: int,
) -> tuple[ClientLoop, float, dict[str, int]]:
    """Loop the paths of `expected` with token; make the change while they answer 200;
    wait (at most WITHIN from the change's answer) until every path answers as expected,
    then check that it stays so. The loop, when the change was answered, and the auth RPCs
    made meanwhile."""
    paths = tuple(expected)
    _warm(accounts, token, paths)
    calls_before = _auth_calls(accounts.stack)
    with ClientLoop(accounts.stack.url, token, paths) as loop:
        wait_until(
            lambda: all(loop.count(path, 0.0) >= 5 for path in paths), what="the loop running"
        )
        sent_at = time.monotonic()
        changed = change()
        assert changed.status_code == change_status, changed.text
        changed_at = time.monotonic()  # committed, revocation included
        settled_at = wait_until(
            lambda: loop.settled_at(expected, changed_at),
            within=WITHIN + 1.0,
            what=f"every request answered {expected}",
        )
        assert settled_at is not None  # wait_until returns a truthy value
        wait_until(
            lambda: (
                time.monotonic() - settled_at >= STAY_SECONDS
                and all(loop.count(path, settled_at) >= STAY_REQUESTS for path in paths)
            ),
            what="the answers staying",
        )
    calls = _new_calls(calls_before, _auth_calls(accounts.stack))
    assert settled_at - changed_at <= WITHIN
    for path, status in expected.items():
        answers = loop.answers(path)
        assert {a.status for a in answers if a.finished < sent_at} == {200}, path
        # From the settling on, every request (of both workers) got the new answer.
        assert {a.status for a in answers if a.started >= settled_at} == {status}, path
    gateway_metrics = requests.get(f"{accounts.stack.url}/metrics", timeout=5).text
    assert sample(gateway_metrics, "authgate_revocation_feed_connected") == 1  # both workers
    return loop, changed_at, calls


def _assert_no_call_per_request(calls: dict[str, int], admin_rpc: str, **served: int) -> None:
    """Only the admin's change, the RPCs the auth service itself serves (`served`), the
    feed's streams ending and at most one key-set fetch per gateway worker."""
    allowed = {admin_rpc: 1, **served}
    extra = {m: n for m, n in calls.items() if m not in allowed and m != "WatchRevocations"}
    assert extra.pop("GetJwks", 0) <= 2, calls
    assert extra == {}, calls
    assert {m: calls.get(m, 0) for m in allowed} == allowed, calls
    assert calls.get("WatchRevocations", 0) <= 3, calls  # the verifiers' streams, not requests


def _refused_after_admin_action(
    accounts: Accounts, username: str, action: str, action_status: int, admin_rpc: str
) -> tuple[str, dict[str, Any], ClientLoop]:
    """Register username and loop GET /v1/profile with its token while an admin POSTs
    `/v1/admin/users/{id}:{action}`: every worker refuses the token within 2 s without a
    call per request, and the session's refresh is refused. The user id, pair and loop."""
    user_id, pair = accounts.register_and_login(username)

    loop, _, calls = _change_while_looping(
        accounts,
        pair["access_token"],
        {PROFILE: 401},
        lambda: accounts.as_admin("POST", f"/v1/admin/users/{user_id}:{action}", {}),
        action_status,
    )

    _assert_no_call_per_request(calls, admin_rpc)
    assert accounts.refresh(pair["refresh_token"]).status_code == 401
    return user_id, pair, loop


def test_a_user_disabled_by_an_admin_is_refused_everywhere_within_2s_and_back_when_enabled(
    accounts: Accounts,
) -> None:
    user_id, pair, loop = _refused_after_admin_action(
        accounts, "dora", "disable", 200, "DisableUser"
    )

    assert len(loop.answers()) >= 20
    enabled = accounts.as_admin("POST", f"/v1/admin/users/{user_id}:enable", {})
    assert enabled.status_code == 200, enabled.text
    assert accounts.status(PROFILE, pair["access_token"]) == 401  # enabling revives no token
    again = accounts.login("dora")
    assert accounts.status(PROFILE, again["access_token"]) == 200


def test_a_role_taken_away_turns_its_route_403_within_2s_while_the_others_work_on(
    accounts: Accounts,
) -> None:
    user_id, _ = accounts.register_and_login("rita")
    for role in ("admin", "ops"):
        accounts.grant("rita", role)
    pair = accounts.login("rita")
    token = pair["access_token"]

    loop, changed_at, calls = _change_while_looping(
        accounts,
        token,
        {ADMIN_ROUTE: 403, PROFILE: 200},
        lambda: accounts.as_admin("PUT", f"/v1/admin/users/{user_id}/roles", {"roles": ["ops"]}),
        200,
    )

    # The admin route was served by the auth service until the role went; from WITHIN on
    # every gateway worker refused it itself (no call); GET /v1/profile never reached it.
    admin_served = calls.get("ListUsers", 0)
    admin_answers = loop.answers(ADMIN_ROUTE)
    assert admin_served >= sum(1 for a in admin_answers if a.status == 200)
    assert admin_served <= sum(1 for a in admin_answers if a.started < changed_at + WITHIN)
    _assert_no_call_per_request(calls, "SetUserRoles", ListUsers=admin_served)
    refused = requests.get(
        f"{accounts.stack.url}{ADMIN_ROUTE}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["WWW-Authenticate"]
    # The session lives on; its next token has the roles as they are now.
    refreshed = accounts.refresh(pair["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    new_token = refreshed.json()["access_token"]
    assert accounts.status(ADMIN_ROUTE, new_token) == 403
    assert accounts.status(PROFILE, new_token) == 200
    given_back = accounts.as_admin(
        "PUT", f"/v1/admin/users/{user_id}/roles", {"roles": ["ops", "admin"]}
    )
    assert given_back.status_code == 200, given_back.text
    again = accounts.refresh(refreshed.json()["refresh_token"])
    assert again.status_code == 200, again.text
    assert accounts.status(ADMIN_ROUTE, again.json()["access_token"]) == 200


def test_revoke_sessions_by_an_admin_refuses_the_earlier_tokens_within_2s(
    accounts: Accounts,
) -> None:
    _refused_after_admin_action(accounts, "sam", "revokeSessions", 204, "RevokeUserSessions")

    again = accounts.login("sam")
    assert accounts.status(PROFILE, again["access_token"]) == 200
