"""A real stack that fault and load tests may kill, freeze and cut off from its database."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import sqlalchemy
from sqlalchemy.engine import make_url

from auth_svc.migrations import AUTH_MIGRATIONS
from devstack.launcher import Stack, StackSettings
from profile_svc.migrations import PROFILE_MIGRATIONS
from tests.conftest import temporary_mysql_database
from tests.e2e.conftest import CHEAP_ARGON2, free_port
from tests.tcp_proxy import TcpProxy

PASSWORD = "correct horse battery staple"
JSON = {"Content-Type": "application/json"}
SERVICES = ("auth", "profile", "gateway")
# /readyz in a row that make sure every gunicorn worker has reconnected.
READY_IN_A_ROW = 6
# authgate_common.channels: grpc.max_reconnect_backoff_ms (1 s) plus gRPC's 20% jitter.
REDIAL_SECONDS = 1.3


@dataclass
class Outcome:
    """What one request got: a status and body, or the connection error that refused it."""

    status: int | None
    body: bytes = b""
    content_type: str = ""
    error: str | None = None
    elapsed: float = 0.0
    sent: Mapping[str, Any] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FaultStack:
    stack: Stack
    url: str
    auth_database_url: str
    profile_database_url: str
    db_proxy: TcpProxy | None

    # --- processes -------------------------------------------------------------------------

    def pid(self, name: str) -> int:
        return self.stack.process(name).pid

    def signal(self, name: str, signum: signal.Signals) -> None:
        os.kill(self.pid(name), signum)

    def kill(self, name: str) -> None:
        process = self.stack.process(name)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def restart(self, name: str) -> None:
        """Start `name` again on its port, and wait until every gateway worker reaches it."""
        self.stack.restart(name, timeout=30)
        if name != "gateway":
            # A worker whose channel failed while `name` was down redials after its
            # backoff (at most 1 s, plus jitter): past that, none fails fast any more.
            time.sleep(REDIAL_SECONDS)
        self.wait_until_ready()

    def wait_until_ready(self, *, within: float = 10.0) -> None:
        # /readyz checks the upstreams over the answering worker's own channels: a few in a
        # row reach every worker.
        deadline = time.monotonic() + within
        in_a_row = 0
        while in_a_row < READY_IN_A_ROW:
            in_a_row = in_a_row + 1 if self.request("GET", "/readyz").status == 200 else 0
            assert time.monotonic() < deadline, "the gateway did not get ready again"
            if not in_a_row:
                time.sleep(0.05)

    def ensure_running(self) -> None:
        """Restart whatever a previous test left stopped, frozen or cut off."""
        if self.db_proxy is not None:
            self.db_proxy.restore()
        for name in SERVICES:
            process = self.stack.process(name)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
            else:
                self.restart(name)

    def resume_all(self) -> None:
        """SIGCONT every process still running (a frozen one could not stop)."""
        for name in SERVICES:
            process = self.stack.process(name)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)

    # --- HTTP ------------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, body: object = None, token: str | None = None
    ) -> Outcome:
        headers = dict(JSON) if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        started = time.monotonic()
        try:
            response = requests.request(
                method, f"{self.url}{path}", json=body, headers=headers, timeout=15
            )
        except requests.ConnectionError as exc:
            return Outcome(
                None,
                error=type(exc).__name__,
                elapsed=time.monotonic() - started,
                sent=body if isinstance(body, dict) else {},
            )
        return Outcome(
            response.status_code,
            response.content,
            response.headers.get("Content-Type", ""),
            elapsed=time.monotonic() - started,
            sent=body if isinstance(body, dict) else {},
        )

    def register(self, username: str | None = None) -> str:
        username = username or new_username()
        outcome = self.request(
            "POST", "/v1/auth/register", body={"username": username, "password": PASSWORD}
        )
        assert outcome.status == 201, outcome
        return username

    def login(self, username: str) -> Outcome:
        return self.request(
            "POST", "/v1/auth/login", body={"username": username, "password": PASSWORD}
        )

    def token(self, username: str) -> str:
        outcome = self.login(username)
        assert outcome.status == 200, outcome
        token: str = outcome.json()["access_token"]
        return token

    def wait_until(
        self, attempt: Callable[[], Outcome], expected: int, *, within: float
    ) -> tuple[Outcome, float]:
        """Repeat attempt until it answers `expected`; the last outcome and the time it took."""
        started = time.monotonic()
        while True:
            outcome = attempt()
            waited = time.monotonic() - started
            if outcome.status == expected or waited > within:
                return outcome, waited
            time.sleep(0.05)

    # --- database --------------------------------------------------------------------------

    def scalar(self, database_url: str, sql: str, **params: object) -> Any:
        # Straight to the server, never through the proxy the test may have closed.
        engine = sqlalchemy.create_engine(self._direct(database_url))
        try:
            with engine.connect() as connection:
                return connection.execute(sqlalchemy.text(sql), params).scalar()
        finally:
            engine.dispose()

    def rows(self, database_url: str, sql: str, **params: object) -> list[Any]:
        engine = sqlalchemy.create_engine(self._direct(database_url))
        try:
            with engine.connect() as connection:
                return list(connection.execute(sqlalchemy.text(sql), params))
        finally:
            engine.dispose()

    def _direct(self, database_url: str) -> str:
        url = make_url(database_url)
        if self.db_proxy is None or url.get_backend_name() == "sqlite":
            return database_url
        direct = url.set(host=self.db_proxy.target[0], port=self.db_proxy.target[1])
        return direct.render_as_string(hide_password=False)

    # --- memory ----------------------------------------------------------------------------

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each process, gunicorn's workers counted with their master."""
        sizes: dict[str, int] = {}
        for name in SERVICES:
            pid = self.pid(name)
            sizes[name] = sum(rss_of(p) for p in (pid, *children_of(pid)))
        return sizes


def new_username() -> str:
    return f"f_{uuid.uuid4().hex[:12]}"


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found


def burst(calls: list[Callable[[], Outcome]], *, concurrency: int) -> list[Outcome]:
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda call: call(), calls))


@contextmanager
def running_in_background(calls: Callable[[], Outcome], *, threads: int) -> Iterator[list[Outcome]]:
    """Call `calls` in a loop on `threads` threads until the block ends; every outcome."""
    outcomes: list[Outcome] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            outcomes.append(calls())

    workers = [threading.Thread(target=loop, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for worker in workers:
            worker.join(timeout=30)


@contextmanager
def fault_stack(
    state: Path,
    *,
    mysql_server_url: str | None,
    extra_env: Mapping[str, str] | None = None,
    gateway_workers: int = 2,
    gateway_threads: int = 8,
) -> Iterator[FaultStack]:
    """A stack on SQLite, or on MariaDB behind a TcpProxy when mysql_server_url is given."""
    with ExitStack() as cleanup:
        proxy: TcpProxy | None = None
        if mysql_server_url is None:
            auth_db = f"sqlite:///{state / 'auth.db'}"
            profile_db = f"sqlite:///{state / 'profile.db'}"
        else:
            server = make_url(mysql_server_url)
            proxy = cleanup.enter_context(TcpProxy(server.host or "127.0.0.1", server.port or 3306))
            via_proxy = server.set(host="127.0.0.1", port=proxy.port)
            auth_db = _proxied(
                cleanup.enter_context(temporary_mysql_database(mysql_server_url, "fault_auth")),
                via_proxy,
            )
            profile_db = _proxied(
                cleanup.enter_context(temporary_mysql_database(mysql_server_url, "fault_profile")),
                via_proxy,
            )
            AUTH_MIGRATIONS.upgrade(auth_db)
            PROFILE_MIGRATIONS.upgrade(profile_db)
        settings = StackSettings(
            state_dir=state,
            gateway_port=free_port(),
            auth_port=free_port(),
            profile_port=free_port(),
            gateway_workers=gateway_workers,
            gateway_threads=gateway_threads,
            auth_database_url=auth_db,
            profile_database_url=profile_db,
            extra_env={
                **CHEAP_ARGON2,
                "JWT_ISSUER": "authgate-faults",
                "JWT_AUDIENCE": "authgate-faults-api",
                # Bursts from 127.0.0.1 would trip the per-IP limits that other tests cover.
                "GATEWAY_RATE_LIMITS_ENABLED": "false",
                **(extra_env or {}),
            },
        )
        stack = Stack(settings, log_dir=state / "logs")
        stack.start(timeout=60)
        running = FaultStack(stack, settings.gateway_url, auth_db, profile_db, proxy)
        # Resume anything still frozen so that stop() can end it.
        cleanup.callback(stack.stop)
        cleanup.callback(running.resume_all)
        yield running


def _proxied(database_url: str, via_proxy: sqlalchemy.URL) -> str:
    url = make_url(database_url).set(host=via_proxy.host, port=via_proxy.port)
    return url.render_as_string(hide_password=False)
