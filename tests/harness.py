"""The one way tests start the real processes, and the one way they wait.

- `real_stack(state, ...)`: auth_svc, profile_svc and the gateway under gunicorn or granian (or a
  subset, `only=("auth",)`), started by devstack.launcher as `make run` starts them, on
  SQLite or on MariaDB (optionally behind a TcpProxy the test can cut). Every process
  binds port 0 and the launcher reads the port it got from its start line, so parallel
  test workers never race for a port. The result, `RealStack`, kills, freezes, restarts
  and signals processes, sends HTTP requests and reads the processes' logs.
- `wait_until(condition, within=..., what=...)`: polls until `condition()` is truthy,
  and fails with `what` at the deadline. Waits are for something to happen (a log line,
  a status); a test never sleeps and then asserts that something did not happen.

In-process servers (started on port 0, the bound port read from the server) are the
fixtures of tests/fixtures: `auth_server`, `profile_server_factory`, `services_factory`
(both services and a gateway test client) and the gateway's `gateway_client_factory`.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests
import sqlalchemy
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.engine import make_url

from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.tokens import TokenSettings
from devstack.launcher import NAMES, Stack, StackSettings
from profile_svc.migrations import PROFILE_MIGRATIONS
from tests.conftest import temporary_mysql_database
from tests.tcp_proxy import TcpProxy

T = TypeVar("T")

# How often wait_until looks again: short against every deadline the tests use.
POLL_SECONDS = 0.02
CHEAP_ARGON2_ENV = {
    "AUTH_ARGON2_TIME_COST": "5",
    "AUTH_ARGON2_MEMORY_KIB": "7168",
    "AUTH_ARGON2_PARALLELISM": "1",
    # OWASP's least argon2id cost still takes milliseconds: a test's burst of 50 logins
    # waits for a hash slot instead of meeting the 2 s bound meant for real floods.
    "AUTH_HASH_QUEUE_TIMEOUT_SECONDS": "30",
}
TOKEN_SETTINGS = TokenSettings(issuer="authgate-e2e", audience="authgate-e2e-api")
PASSWORD = "correct horse battery staple"
JSON = {"Content-Type": "application/json"}
TABLES = ("users", "refresh_tokens", "profiles")
# /readyz in a row that make sure every gunicorn worker has reconnected.
READY_IN_A_ROW = 6
# authgate_common.channels: grpc.max_reconnect_backoff_ms (1 s) plus gRPC's 20% jitter.
REDIAL_SECONDS = 1.3


# --- waiting -------------------------------------------------------------------------------


def wait_until(
    condition: Callable[[], T], *, within: float = 10.0, what: str = "the condition"
) -> T:
    """condition()'s first truthy value, polled until `within` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still not so after {within} s (last: {value!r})")
        time.sleep(POLL_SECONDS)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON records of a log file (gunicorn's own plain lines are skipped)."""
    if not path.exists():
        return []
    records: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


# --- one request's outcome -----------------------------------------------------------------


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


def new_username() -> str:
    return f"f_{uuid.uuid4().hex[:12]}"


# --- the running processes -----------------------------------------------------------------


@dataclass
class RealStack:
    stack: Stack
    auth_database_url: str
    profile_database_url: str
    log_dir: Path
    signing_key: rsa.RSAPrivateKey | None = None
    db_proxy: TcpProxy | None = None
    token_settings: TokenSettings = TOKEN_SETTINGS
    # One engine per database for the whole module: connecting anew costs ~0.1 s on MySQL.
    _engines: dict[str, sqlalchemy.Engine] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> StackSettings:
        """The stack's settings, with the ports the processes bound."""
        return self.stack.settings

    @property
    def url(self) -> str:
        return self.settings.gateway_url

    @property
    def auth_target(self) -> str:
        return f"{self.settings.host}:{self.settings.auth_port}"

    @property
    def profile_target(self) -> str:
        return f"{self.settings.host}:{self.settings.profile_port}"

    # --- logs ------------------------------------------------------------------------------

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def logs(self) -> str:
        return "\n".join(
            path.read_text(errors="replace") for path in sorted(self.log_dir.glob("*.log"))
        )

    def json_lines(self, name: str) -> list[dict[str, Any]]:
        return json_lines(self.log_path(name))

    def lines_of(self, name: str, request_id: str, message: str) -> list[dict[str, Any]]:
        """The records `name` logged with that message for that request id."""
        return [
            line
            for line in self.json_lines(name)
            if line.get("request_id") == request_id and line.get("message") == message
        ]

    def wait_for_lines_of(
        self, name: str, request_id: str, message: str, *, within: float = 10.0
    ) -> list[dict[str, Any]]:
        """The records of lines_of(), once `name` has written at least one."""
        return wait_until(
            lambda: self.lines_of(name, request_id, message),
            within=within,
            what=f"{name} logging {message!r} for request {request_id}",
        )

    # --- processes -------------------------------------------------------------------------

    def process(self, name: str) -> Any:
        return self.stack.process(name)

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
        in_a_row = 0

        def ready_in_a_row() -> bool:
            nonlocal in_a_row
            in_a_row = in_a_row + 1 if self.request("GET", "/readyz").status == 200 else 0
            return in_a_row >= READY_IN_A_ROW

        wait_until(ready_in_a_row, within=within, what="the gateway getting ready again")

    def ensure_running(self) -> None:
        """Restart whatever a previous test left stopped, frozen or cut off."""
        if self.db_proxy is not None:
            self.db_proxy.restore()
        for name in self._started():
            process = self.stack.process(name)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
            else:
                self.restart(name)

    def resume_all(self) -> None:
        """SIGCONT every process still running (a frozen one could not stop)."""
        for name in self._started():
            process = self.stack.process(name)
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)

    def _started(self) -> list[str]:
        started = []
        for name in NAMES:
            try:
                self.stack.process(name)
            except KeyError:
                continue
            started.append(name)
        return started

    # --- HTTP ------------------------------------------------------------------------------

    def post(self, path: str, body: object, **kwargs: Any) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, timeout=10, **kwargs)

    def request(
        self, method: str, path: str, *, body: object = None, token: str | None = None
    ) -> Outcome:
        headers = dict(JSON) if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        sent = body if isinstance(body, dict) else {}
        started = time.monotonic()
        try:
            response = requests.request(
                method, f"{self.url}{path}", json=body, headers=headers, timeout=15
            )
        except requests.ConnectionError as exc:
            return Outcome(
                None, error=type(exc).__name__, elapsed=time.monotonic() - started, sent=sent
            )
        return Outcome(
            response.status_code,
            response.content,
            response.headers.get("Content-Type", ""),
            elapsed=time.monotonic() - started,
            sent=sent,
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
        """Repeat attempt until it answers `expected`; the last outcome and the time it took
        (no failure at the deadline: the caller asserts on the outcome)."""
        started = time.monotonic()
        last: list[Outcome] = []

        def answered() -> bool:
            last[:] = [attempt()]
            return last[0].status == expected or time.monotonic() - started > within

        wait_until(answered, within=within + 30, what=f"an answer {expected}")
        return last[0], time.monotonic() - started

    # --- database --------------------------------------------------------------------------

    def engine(self, url: str) -> sqlalchemy.Engine:
        return self._engines.get(url) or self._engines.setdefault(
            url, sqlalchemy.create_engine(self._direct(url))
        )

    def row_counts(self) -> dict[str, int]:
        """Rows in every table of both services: what a rejected request must leave unchanged."""
        counts: dict[str, int] = {}
        for url in {self.auth_database_url, self.profile_database_url}:
            with self.engine(url).connect() as connection:
                present = set(sqlalchemy.inspect(connection).get_table_names())
                for table in TABLES:
                    if table in present:
                        counts[table] = connection.execute(
                            sqlalchemy.text(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
                        ).scalar_one()
        return counts

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

    def close(self) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    # --- memory ----------------------------------------------------------------------------

    def rss_bytes(self) -> dict[str, int]:
        """Resident memory of each process, gunicorn's workers counted with their master."""
        sizes: dict[str, int] = {}
        for name in self._started():
            pid = self.pid(name)
            sizes[name] = sum(rss_of(p) for p in (pid, *children_of(pid)))
        return sizes


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


def install_signing_key(keys_dir: Path, pem: bytes) -> rsa.RSAPrivateKey:
    """Put a PEM key where auth_svc looks for its keys (0700 folder, 0600 file), parsed."""
    keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    key_file = keys_dir / "e2e.pem"
    key_file.write_bytes(pem)
    os.chmod(key_file, 0o600)
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


@contextmanager
def real_stack(
    state: Path,
    *,
    mysql_server_url: str | None = None,
    db_proxy: bool = False,
    signing_key_pem: bytes | None = None,
    extra_env: Mapping[str, str] | None = None,
    rate_limits: bool = False,
    metrics: bool = False,
    gateway_workers: int = 2,
    gateway_threads: int = 8,
    gateway_server: str | None = None,
    only: tuple[str, ...] = NAMES,
    timeout: float = 60.0,
) -> Iterator[RealStack]:
    """The real processes on SQLite, or on MariaDB when mysql_server_url is given (behind a
    TcpProxy with db_proxy=True); stopped, and their databases dropped, at the end.

    Bursts from 127.0.0.1 would trip the per-IP rate limits, so they are off unless
    `rate_limits`; `metrics` serves the services' /metrics (on ports they pick).
    `gateway_server` (gunicorn or granian) overrides the environment's GATEWAY_SERVER.
    """
    state.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        proxy: TcpProxy | None = None
        if mysql_server_url is None:
            auth_db = f"sqlite:///{state / 'auth.db'}"
            profile_db = f"sqlite:///{state / 'profile.db'}"
        else:
            server = make_url(mysql_server_url)
            if db_proxy:
                proxy = cleanup.enter_context(
                    TcpProxy(server.host or "127.0.0.1", server.port or 3306)
                )
            auth_db, profile_db = (
                _via(
                    cleanup.enter_context(temporary_mysql_database(mysql_server_url, label)), proxy
                )
                for label in ("stack_auth", "stack_profile")
            )
            # As `make migrate` does; the launcher migrates only SQLite files itself.
            AUTH_MIGRATIONS.upgrade(auth_db)
            PROFILE_MIGRATIONS.upgrade(profile_db)
        signing_key = (
            None
            if signing_key_pem is None
            else install_signing_key(state / "keys", signing_key_pem)
        )
        env = {
            **CHEAP_ARGON2_ENV,
            "JWT_ISSUER": TOKEN_SETTINGS.issuer,
            "JWT_AUDIENCE": TOKEN_SETTINGS.audience,
        }
        if not rate_limits:
            env["GATEWAY_RATE_LIMITS_ENABLED"] = "false"
        settings = StackSettings(
            state_dir=state,
            gateway_port=0,
            auth_port=0,
            profile_port=0,
            auth_metrics_port=0 if metrics else None,
            profile_metrics_port=0 if metrics else None,
            gateway_workers=gateway_workers,
            gateway_threads=gateway_threads,
            gateway_server=gateway_server,
            auth_database_url=auth_db,
            profile_database_url=profile_db,
            extra_env={**env, **(extra_env or {})},
        )
        stack = Stack(settings, log_dir=state / "logs")
        stack.start(timeout=timeout, only=only)
        cleanup.callback(stack.stop)
        running = RealStack(
            stack=stack,
            auth_database_url=auth_db,
            profile_database_url=profile_db,
            log_dir=state / "logs",
            signing_key=signing_key,
            db_proxy=proxy,
            token_settings=TokenSettings(
                issuer=settings.extra_env["JWT_ISSUER"],
                audience=settings.extra_env["JWT_AUDIENCE"],
            ),
        )
        # Resume anything still frozen so that stop() can end it.
        cleanup.callback(running.resume_all)
        cleanup.callback(running.close)
        yield running


def _via(database_url: str, proxy: TcpProxy | None) -> str:
    if proxy is None:
        return database_url
    url = make_url(database_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)
