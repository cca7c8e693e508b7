"""A killed or frozen service, or a lost database: clean 503/504 answers, then recovery
without restarting the gateway (issue 5, faults 1-3)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.faults.conftest import SHORT_GRPC_TIMEOUT_SECONDS as GRPC_TIMEOUT_SECONDS
from tests.harness import Outcome, RealStack

pytestmark = [pytest.mark.faults, pytest.mark.mysql, pytest.mark.serial]

# Every request of each check goes to one gunicorn worker or the other: enough to reach both.
ATTEMPTS = 6
PROBLEM_JSON = "application/problem+json"


@pytest.fixture(scope="module")
def grpc_timeout_seconds() -> float:
    return GRPC_TIMEOUT_SECONDS


def assert_clean_problem(outcome: Outcome, status: int) -> None:
    assert outcome.status == status, outcome
    assert outcome.content_type.startswith(PROBLEM_JSON), outcome
    body = outcome.json()
    assert body["status"] == status
    assert "access_token" not in body
    assert "refresh_token" not in body


def requests_needing(stack: RealStack, service: str) -> Callable[[], Outcome]:
    """A request that the gateway can only answer by calling `service`."""
    username = stack.register()
    if service == "auth":
        return lambda: stack.login(username)
    token = stack.token(username)
    return lambda: stack.request("GET", "/v1/profile", token=token)


def at_once(sends: list[Callable[[], Outcome]]) -> list[Outcome]:
    """Each request sent in a thread of its own, all at the same time: what each got."""
    with ThreadPoolExecutor(len(sends)) as pool:
        return list(pool.map(lambda send: send(), sends))


def recovery_time(attempt: Callable[[], Outcome], *, within: float) -> float:
    """Seconds until ATTEMPTS requests in a row succeed (every worker has recovered)."""
    started = time.monotonic()
    while True:
        outcomes = [attempt() for _ in range(ATTEMPTS)]
        waited = time.monotonic() - started
        if all(o.status == 200 for o in outcomes):
            return waited
        assert {o.status for o in outcomes} <= {200, 503}, outcomes
        assert waited < within, outcomes
        time.sleep(0.05)


@pytest.mark.parametrize("service", ["auth", "profile"])
def test_killed_service_gives_503_within_2s_and_the_gateway_recovers_after_its_restart(
    healthy_stack: RealStack, service: str
) -> None:
    attempt = requests_needing(healthy_stack, service)
    assert attempt().status == 200

    healthy_stack.kill(service)
    # At once rather than one after another: a read is retried (channels.RETRY_POLICY)
    # before its 503, and each would wait out the retries of the one before.
    for outcome in at_once([attempt] * ATTEMPTS):
        assert_clean_problem(outcome, 503)
        assert outcome.elapsed < 2.0, outcome

    healthy_stack.stack.restart(service)  # same port; the gateway is left alone
    # Each worker's channel redials by itself within about a second (1 s maximum backoff).
    waited = recovery_time(attempt, within=5)
    assert waited < 2.5


@pytest.mark.parametrize("service", ["auth", "profile"])
def test_frozen_service_gives_504_within_the_deadline_and_recovers_on_sigcont(
    healthy_stack: RealStack, service: str
) -> None:
    attempt = requests_needing(healthy_stack, service)
    assert all(attempt().status == 200 for _ in range(ATTEMPTS))  # both workers connected

    healthy_stack.signal(service, signal.SIGSTOP)
    try:
        outcomes = at_once([attempt] * 2)  # each waits out its own deadline
    finally:
        healthy_stack.signal(service, signal.SIGCONT)
    for outcome in outcomes:
        assert_clean_problem(outcome, 504)
        assert GRPC_TIMEOUT_SECONDS * 0.9 <= outcome.elapsed < GRPC_TIMEOUT_SECONDS + 1.0

    waited = recovery_time(attempt, within=5)
    assert waited < 1.5


def test_database_unreachable_gives_503_not_401_and_recovers_without_a_restart(
    healthy_stack: RealStack,
) -> None:
    proxy = healthy_stack.db_proxy
    assert proxy is not None
    username = healthy_stack.register()
    token = healthy_stack.token(username)
    pids = {name: healthy_stack.pid(name) for name in ("auth", "profile", "gateway")}
    newcomer = {"username": "f_newcomer_" + str(int(time.time())), "password": "x" * 16}

    wrong_password = {"username": username, "password": "not the one!"}
    requests_made: list[Callable[[], Outcome]] = [
        *[lambda: healthy_stack.login(username)] * 3,
        *[lambda: healthy_stack.request("GET", "/v1/profile", token=token)] * 3,
        lambda: healthy_stack.request("POST", "/v1/auth/register", body=newcomer),
        # Not "invalid credentials": nothing was checked.
        lambda: healthy_stack.request("POST", "/v1/auth/login", body=wrong_password),
    ]
    proxy.cut()
    try:
        outcomes = at_once(requests_made)  # each waits out the database's connect timeout
    finally:
        proxy.restore()
    for outcome in outcomes:
        assert_clean_problem(outcome, 503)

    login, waited = healthy_stack.wait_until(lambda: healthy_stack.login(username), 200, within=5)
    assert login.status == 200, login
    assert waited < 3.0
    profile = healthy_stack.request("GET", "/v1/profile", token=token)
    assert profile.status == 200, profile
    assert {name: healthy_stack.pid(name) for name in pids} == pids  # nothing was restarted
    assert (
        healthy_stack.scalar(
            healthy_stack.auth_database_url,
            "SELECT COUNT(*) FROM users WHERE username = :u",
            u=newcomer["username"],
        )
        == 0
    )
