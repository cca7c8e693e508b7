"""A login flood meets the bound on concurrent argon2 hashes (issue 5.9): logins beyond it
get 429 with Retry-After (or wait), the auth service's memory stays bounded, and profile
reads keep being served meanwhile."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.harness import PASSWORD, RealStack, real_stack

pytestmark = [pytest.mark.load, pytest.mark.serial]

HASH_MEMORY_KIB = 32 * 1024
FLOOD_THREADS = 24  # more than the gateway's 2 workers x 8 threads: every thread busy
FLOOD_SECONDS = 2.0
READERS = 2
BASELINE_RSS_BYTES = 160 * 1024 * 1024  # the auth process before any hash (about 100 MB)


@pytest.fixture(scope="module")
def flood_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealStack]:
    env = {
        "AUTH_ARGON2_TIME_COST": "2",  # with 32 MiB, above OWASP's minimum
        "AUTH_ARGON2_MEMORY_KIB": str(HASH_MEMORY_KIB),
        "AUTH_ARGON2_PARALLELISM": "1",
        "AUTH_MAX_CONCURRENT_HASHES": "1",
        "AUTH_HASH_QUEUE_TIMEOUT_SECONDS": "0.05",
    }
    with real_stack(
        tmp_path_factory.mktemp("flood"), mysql_server_url=None, extra_env=env
    ) as stack:
        yield stack


def peak_rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_login_flood_gets_429_with_retry_after_while_profile_reads_are_served(
    flood_stack: RealStack,
) -> None:
    username = flood_stack.register()
    token = flood_stack.token(username)
    stop = threading.Event()
    logins: list[requests.Response] = []
    reads: list[tuple[int, float]] = []

    def flood() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                logins.append(
                    session.post(
                        f"{flood_stack.url}/v1/auth/login",
                        json={"username": username, "password": PASSWORD},
                        timeout=15,
                    )
                )

    def read() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                started = time.monotonic()
                response = session.get(
                    f"{flood_stack.url}/v1/profile",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=15,
                )
                reads.append((response.status_code, time.monotonic() - started))
                time.sleep(0.01)

    threads = [threading.Thread(target=flood) for _ in range(FLOOD_THREADS)]
    threads += [threading.Thread(target=read) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    time.sleep(FLOOD_SECONDS)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)

    statuses = Counter(response.status_code for response in logins)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[429] > 0, statuses
    assert statuses[200] > 0, statuses
    for response in logins:
        if response.status_code == 429:
            assert response.headers["Content-Type"].startswith("application/problem+json")
            assert response.headers["Retry-After"] == "1"
            assert "access_token" not in response.text

    read_statuses = Counter(status for status, _ in reads)
    assert read_statuses == {200: len(reads)}, read_statuses
    assert len(reads) >= 10
    latencies = sorted(latency for _, latency in reads)
    assert latencies[len(latencies) * 9 // 10] < 1.0, latencies

    # One hash at a time: the flood never held more than one hash's memory on top of the base.
    assert peak_rss_bytes(flood_stack.pid("auth")) < BASELINE_RSS_BYTES + 2 * HASH_MEMORY_KIB * 1024
