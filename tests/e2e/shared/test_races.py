"""Races through the whole stack, on real threads: a refresh token is spent exactly once,
and a burst of wrong passwords is counted exactly, no more checked than the lockout allows."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
import sqlalchemy

from tests.e2e.shared.conftest import RunningStack

PASSWORD = "correct horse battery staple"
LOCKOUT_THRESHOLD = 5  # auth_svc's default AUTH_LOCKOUT_THRESHOLD, which the e2e stack keeps


def _registered(stack: RunningStack) -> str:
    username = f"race_{uuid.uuid4().hex[:10]}"
    assert stack.post("/v1/auth/register", {"username": username, "password": PASSWORD}).ok
    return username


def _parallel(count: int, send: Callable[[], requests.Response]) -> list[requests.Response]:
    start = threading.Barrier(count)

    def attempt(_: int) -> requests.Response:
        start.wait()
        return send()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(attempt, range(count)))


def test_twenty_parallel_refreshes_of_one_token_give_exactly_one_200(
    running_stack: RunningStack,
) -> None:
    username = _registered(running_stack)
    login = running_stack.post("/v1/auth/login", {"username": username, "password": PASSWORD})
    token = login.json()["refresh_token"]

    answers = _parallel(
        20, lambda: running_stack.post("/v1/auth/refresh", {"refresh_token": token})
    )

    assert Counter(a.status_code for a in answers) == {200: 1, 401: 19}


def test_fifty_parallel_wrong_passwords_are_counted_exactly_and_lock_the_account(
    running_stack: RunningStack,
) -> None:
    username = _registered(running_stack)

    answers = _parallel(
        50,
        lambda: running_stack.post(
            "/v1/auth/login", {"username": username, "password": PASSWORD + "-wrong"}
        ),
    )

    assert Counter(a.status_code for a in answers) == {401: 50}
    with running_stack.engine(running_stack.auth_database_url).connect() as connection:
        failed, locked_until = connection.execute(
            sqlalchemy.text(
                "SELECT t.failures, t.locked_until FROM login_throttles t"
                " JOIN users u ON u.id = t.user_id WHERE u.username_normalized = :name"
            ),
            {"name": username.lower()},
        ).one()
    # Every guess past the threshold was refused as locked before its password was checked.
    assert failed == LOCKOUT_THRESHOLD
    assert locked_until is not None
    right = running_stack.post("/v1/auth/login", {"username": username, "password": PASSWORD})
    assert right.status_code == 401
    assert right.json()["detail"] == answers[0].json()["detail"]
