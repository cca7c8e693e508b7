"""Revocation through the real stack: a gateway with two gunicorn workers refuses a revoked
user's tokens within 2 seconds, with no call to the auth service on the request path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import requests
import sqlalchemy

from auth_svc.revocations import RevocationLog, token_lifetime_bound
from authgate_common.db import make_sessions
from authgate_common.tokens import TokenSettings
from devstack.launcher import StackSettings
from tests.harness import real_stack
from tests.observability.metrics_text import sample

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
TOKENS = TokenSettings(issuer="authgate-revocation", audience="revocation-api")
HANDLED = "grpc_server_handled_total"
WITHIN = 2.0
# How long the loop goes on after the deadline, to show the refusal stays.
AFTERWARDS = 1.5


@dataclass
class RevocationStack:
    settings: StackSettings
    auth_database_url: str

    @property
    def url(self) -> str:
        return self.settings.gateway_url

    def auth_rpcs_answered(self) -> dict[str, float]:
        """The unary RPCs the auth service answered so far, by method (streams are not counted)."""
        text = requests.get(self.settings.metrics_urls()["auth"], timeout=5).text
        return {
            method: sample(text, HANDLED, {"grpc_method": method})
            for method in ("Register", "Login", "Refresh", "Logout", "GetJwks", "Check")
        } | {"all": sample(text, HANDLED)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevocationStack]:
    with real_stack(
        tmp_path_factory.mktemp("revocation"),
        metrics=True,
        gateway_workers=2,
        extra_env={"JWT_ISSUER": TOKENS.issuer, "JWT_AUDIENCE": TOKENS.audience},
    ) as running:
        yield RevocationStack(running.settings, running.auth_database_url)


def _profile_status(url: str, token: str) -> int:
    # A new connection each time, so that both gunicorn workers answer.
    response = requests.get(
        f"{url}/v1/profile",
        headers={"Authorization": f"Bearer {token}", "Connection": "close"},
        timeout=10,
    )
    return response.status_code


def test_a_revoked_user_is_refused_by_every_worker_within_2s_without_asking_auth(
    stack: RevocationStack,
) -> None:
    credentials = {"username": "alice", "password": PASSWORD}
    registered = requests.post(f"{stack.url}/v1/auth/register", json=credentials, timeout=10)
    login = requests.post(f"{stack.url}/v1/auth/login", json=credentials, timeout=10).json()
    token, user_id = login["access_token"], registered.json()["user_id"]
    for _ in range(40):  # both workers have verified it (and fetched the keys) by now
        assert _profile_status(stack.url, token) == 200
    answered_before = stack.auth_rpcs_answered()

    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    enough = threading.Event()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            started = time.monotonic()
            status = _profile_status(stack.url, token)
            with lock:
                results.append((started, status))
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

    before = [status for started, status in results if started < revoked_at]
    after_deadline = [status for started, status in results if started >= revoked_at + WITHIN]
    assert set(before) == {200}
    assert len(after_deadline) >= 5
    assert set(after_deadline) == {401}
    # No call to the auth service per request (nor for the revocation): at most a worker
    # that the warm-up happened not to reach fetches the key set once, on its first request.
    answered_after = stack.auth_rpcs_answered()
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
