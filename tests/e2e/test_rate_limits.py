"""Rate limits in the real processes: gunicorn workers share one count, by default and in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from tests.harness import real_stack

LOGIN_LIMIT = 3
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def limited_gateway(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    """The stack (SQLite) with Login limited per client in Redis, behind one trusted proxy."""
    # A prefix of this run's own on the shared Redis; its keys expire within the minute.
    key_prefix = f"authgate-e2e-{uuid.uuid4().hex}"
    with real_stack(
        tmp_path_factory.mktemp("limited"),
        rate_limits=True,
        gateway_workers=2,  # the count must be shared between them
        extra_env={
            "GATEWAY_RATE_LIMIT_STORAGE_URI": redis_url,
            "GATEWAY_RATE_LIMIT_KEY_PREFIX": key_prefix,
            "GATEWAY_RATE_LIMITS": f"Login={LOGIN_LIMIT}/minute",
            "GATEWAY_TRUSTED_PROXY_COUNT": "1",
        },
    ) as stack:
        yield stack.url


def login_from(gateway: str, client: str) -> requests.Response:
    return requests.post(
        f"{gateway}/v1/auth/login",
        json={"username": "nobody", "password": PASSWORD},
        headers={"X-Forwarded-For": f"6.6.6.6, {client}"},
        timeout=10,
    )


def test_the_limit_holds_across_gunicorn_workers_and_per_forwarded_client(
    limited_gateway: str,
) -> None:
    # A new connection per request: either worker may serve each one.
    statuses = [login_from(limited_gateway, "203.0.113.5").status_code for _ in range(LOGIN_LIMIT)]
    assert statuses == [401] * LOGIN_LIMIT

    refused = login_from(limited_gateway, "203.0.113.5")
    assert refused.status_code == 429
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60

    assert login_from(limited_gateway, "203.0.113.6").status_code == 401


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stack as `make run` starts it: two gunicorn workers, no Redis, the protos' limits."""
    with real_stack(
        tmp_path_factory.mktemp("default-limits"), rate_limits=True, gateway_workers=2
    ) as stack:
        yield stack.url


def test_the_declared_login_limit_is_exact_over_two_workers_without_redis(
    default_gateway: str,
) -> None:
    """Login declares 10/minute: the 11th login from one address is the first 429."""
    # requests opens a new connection per call: gunicorn spreads them over both workers.
    statuses = [
        requests.post(
            f"{default_gateway}/v1/auth/login",
            json={"username": "nobody", "password": PASSWORD},
            timeout=10,
        ).status_code
        for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]
