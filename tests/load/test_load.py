"""Bounded load through the real gateway on loopback (issue 5.6): 2,000 profile reads at
concurrency 50 while profiles are updated, then 100 concurrent logins. Only statuses of
the contract, no 5xx, no lost or duplicated update, and every process's memory bounded."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import requests

from tests.harness import PASSWORD, RealStack, new_username, real_stack

pytestmark = [pytest.mark.load, pytest.mark.mysql, pytest.mark.serial]

READS = 2000
READ_CONCURRENCY = 50
WRITERS = 10  # users, each updating its own profile UPDATES times in a row
UPDATES = 10
LOGINS = 100
RSS_LIMIT_BYTES = 300 * 1024 * 1024
# Whole-phase limits: generous for a busy 2-core machine, tight enough to catch a stall.
READ_PHASE_SECONDS = 30
LOGIN_PHASE_SECONDS = 15


@pytest.fixture(scope="module")
def load_stack(
    mysql_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RealStack]:
    with real_stack(
        tmp_path_factory.mktemp("load"), mysql_server_url=mysql_server_url, db_proxy=True
    ) as stack:
        yield stack


class Client:
    """Keep-alive HTTP clients, one per thread, as real clients would use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()

    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def get_profile(self, token: str) -> requests.Response:
        return self.session().get(
            f"{self.url}/v1/profile", headers={"Authorization": f"Bearer {token}"}, timeout=15
        )

    def patch_bio(self, token: str, bio: str) -> requests.Response:
        return self.session().patch(
            f"{self.url}/v1/profile",
            json={"bio": bio},
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )

    def login(self, username: str) -> requests.Response:
        return self.session().post(
            f"{self.url}/v1/auth/login",
            json={"username": username, "password": PASSWORD},
            timeout=15,
        )


def test_reads_updates_and_logins_under_load_keep_the_contract_and_memory_bounded(
    load_stack: RealStack,
) -> None:
    client = Client(load_stack.url)
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        users = list(pool.map(lambda _: load_stack.register(new_username()), range(WRITERS)))
        tokens = list(pool.map(load_stack.token, users))
    rss_before = load_stack.rss_bytes()

    # Reads at concurrency 50, while each writer updates its own profile in sequence.
    patches: list[list[requests.Response]] = [[] for _ in range(WRITERS)]

    def write(index: int) -> None:
        for n in range(1, UPDATES + 1):
            patches[index].append(client.patch_bio(tokens[index], f"{users[index]} update {n}"))

    started = time.monotonic()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(WRITERS)]
    for writer in writers:
        writer.start()
    with ThreadPoolExecutor(max_workers=READ_CONCURRENCY) as pool:
        reads = list(pool.map(lambda i: client.get_profile(tokens[i % WRITERS]), range(READS)))
    for writer in writers:
        writer.join(timeout=READ_PHASE_SECONDS)
    read_phase = time.monotonic() - started

    # Logins: 100 at once (cheap argon2 in this stack; the argon2 bound is tested elsewhere).
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=LOGINS) as pool:
        logins = list(pool.map(lambda i: client.login(users[i % WRITERS]), range(LOGINS)))
    login_phase = time.monotonic() - started
    rss_after = load_stack.rss_bytes()

    read_statuses = Counter(r.status_code for r in reads)
    login_statuses = Counter(r.status_code for r in logins)
    assert read_statuses == {200: READS}, read_statuses
    assert set(login_statuses) <= {200, 429}, login_statuses
    assert login_statuses[200] >= LOGINS // 2, login_statuses
    for response in logins:
        if response.status_code == 429:
            assert response.headers["Retry-After"].isdigit()
    assert read_phase < READ_PHASE_SECONDS
    assert login_phase < LOGIN_PHASE_SECONDS

    # No update lost or applied twice: every one answered 200 with its own value, in order,
    # and the stored profile is each writer's last update with the time that update returned.
    for user, answered in zip(users, patches, strict=True):
        assert [r.status_code for r in answered] == [200] * UPDATES
        bios = [r.json()["bio"] for r in answered]
        assert bios == [f"{user} update {n}" for n in range(1, UPDATES + 1)]
        times = [datetime.fromisoformat(r.json()["updated_at"]) for r in answered]
        assert times == sorted(times)
        stored_bio, stored_at = load_stack.rows(
            load_stack.profile_database_url,
            "SELECT bio, updated_at FROM profiles WHERE username = :u",
            u=user,
        )[0]
        assert stored_bio == bios[-1]
        assert stored_at.replace(tzinfo=times[-1].tzinfo) == times[-1]
    assert load_stack.scalar(load_stack.profile_database_url, "SELECT COUNT(*) FROM profiles") == (
        WRITERS
    )

    for name, size in {**rss_before, **rss_after}.items():
        assert size < RSS_LIMIT_BYTES, (name, size)
    print(
        f"\nreads: {READS} in {read_phase:.1f}s ({READS / read_phase:.0f}/s) with "
        f"{WRITERS * UPDATES} updates; logins: {LOGINS} in {login_phase:.1f}s "
        f"{dict(login_statuses)}; RSS MB before {_mb(rss_before)} after {_mb(rss_after)}"
    )


def _mb(sizes: dict[str, int]) -> dict[str, int]:
    return {name: size // (1024 * 1024) for name, size in sizes.items()}
