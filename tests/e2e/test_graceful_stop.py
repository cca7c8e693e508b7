"""SIGTERM during a burst: every request completes, or was never taken; the process exits 0 in time.

Real processes started the way `make run` starts them. Each request carries a request id of
its own, and each process logs one line per request or RPC it handled, with that id: a
request the client saw refused must be absent from that log (never taken), and anything
other than success or such a refusal is a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import grpc
import pytest
import requests
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

from authgate_common.channels import open_channel
from authgate_common.healthcheck import Unhealthy, check_grpc
from devstack.launcher import Stack, StackSettings, migrate_sqlite_databases
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.e2e

GRACE_SECONDS = 5
PASSWORD = "correct horse battery staple"
# Logins cost some milliseconds, so that some are surely running at SIGTERM.
SLOWER_ARGON2 = {
    "AUTH_ARGON2_TIME_COST": "5",
    "AUTH_ARGON2_MEMORY_KIB": "8192",
    "AUTH_ARGON2_PARALLELISM": "1",
}
Kind = Literal["ok", "refused", "failed"]


@dataclass(frozen=True)
class Outcome:
    request_id: str
    kind: Kind
    started: float
    ended: float
    detail: str = ""


@dataclass
class Burst:
    """Threads sending requests until told to stop; the outcome of every request."""

    send: Callable[[str], tuple[Kind, str]]
    threads: int
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.threads):
            worker = threading.Thread(target=self._run, daemon=True)
            worker.start()
            self._workers.append(worker)

    def _run(self) -> None:
        while not self._stop.is_set():
            request_id = uuid.uuid4().hex
            started = time.monotonic()
            kind, detail = self.send(request_id)
            with self._lock:
                self.outcomes.append(Outcome(request_id, kind, started, time.monotonic(), detail))

    def wait_for_successes(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while sum(o.kind == "ok" for o in list(self.outcomes)) < count:
            assert time.monotonic() < deadline, f"the burst never got going: {self.outcomes[-3:]}"
            time.sleep(0.01)

    def finish(self) -> list[Outcome]:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        return list(self.outcomes)


def handled_request_ids(log: Path, message: str) -> set[str]:
    """Request ids of the requests or RPCs a process logged as handled."""
    ids: set[str] = set()
    for line in log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # gunicorn's own lines
        if isinstance(record, dict) and record.get("message") == message:
            ids.add(str(record.get("request_id")))
    return ids


@dataclass
class StopResult:
    exit_code: int
    seconds_to_exit: float
    signalled_at: float


def sigterm_during_burst(
    process: subprocess.Popen[bytes], burst: Burst
) -> tuple[StopResult, list[Outcome]]:
    burst.start()
    burst.wait_for_successes(10)
    signalled_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        exit_code = process.wait(timeout=GRACE_SECONDS + 10)
    finally:
        seconds = time.monotonic() - signalled_at
        time.sleep(0.2)  # a few requests after the exit, refused
        outcomes = burst.finish()
    return StopResult(exit_code, seconds, signalled_at), outcomes


def assert_clean_stop(result: StopResult, outcomes: list[Outcome], handled: set[str]) -> None:
    failed = [o for o in outcomes if o.kind == "failed"]
    assert not failed, f"{len(failed)} requests failed, e.g. {failed[:3]}"
    taken_then_refused = [o for o in outcomes if o.kind == "refused" and o.request_id in handled]
    assert not taken_then_refused, f"handled but not answered: {taken_then_refused[:3]}"
    unlogged_successes = [o for o in outcomes if o.kind == "ok" and o.request_id not in handled]
    assert not unlogged_successes, "the log check is blind: successes missing from the log"
    across_signal = [
        o for o in outcomes if o.kind == "ok" and o.started < result.signalled_at < o.ended
    ]
    assert across_signal, "no request was in flight at SIGTERM: the test proved nothing"
    assert result.exit_code == 0
    assert result.seconds_to_exit < GRACE_SECONDS


class Services:
    """The real processes a test needs, started as `make run` starts them, stopped at the end."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.auth_port = free_port()
        self.profile_port = free_port()
        self._stack: Stack | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self.env = {
            **os.environ,
            **SLOWER_ARGON2,
            "AUTH_DATABASE_URL": f"sqlite:///{state / 'auth.db'}",
            "PROFILE_DATABASE_URL": f"sqlite:///{state / 'profile.db'}",
            "AUTH_KEYS_DIR": str(state / "keys"),
            "AUTH_GRPC_PORT": str(self.auth_port),
            "PROFILE_GRPC_PORT": str(self.profile_port),
            "AUTH_GRPC_TARGET": f"127.0.0.1:{self.auth_port}",
            "GRPC_GRACE_SECONDS": str(GRACE_SECONDS),
            "GATEWAY_GRACEFUL_TIMEOUT": str(GRACE_SECONDS),
            "LOG_LEVEL": "INFO",
        }

    def log(self, name: str) -> Path:
        return self.state / f"{name}.log"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        """auth_svc or profile_svc alone, once it answers SERVING."""
        port = self.auth_port if name == "auth" else self.profile_port
        migrate_sqlite_databases(self.env)
        with self.log(name).open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"{name}_svc"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._processes.append(process)
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"{name} exited: {self.log(name).read_text()}"
            try:
                check_grpc(f"127.0.0.1:{port}", timeout=1)
                return process
            except Unhealthy:
                assert time.monotonic() < deadline, f"{name} did not start"
                time.sleep(0.05)

    def start_stack(self) -> Stack:
        """All three, the gateway under gunicorn, as devstack.launcher starts them."""
        settings = StackSettings(
            state_dir=self.state,
            gateway_port=free_port(),
            auth_port=self.auth_port,
            profile_port=self.profile_port,
            gateway_workers=2,
            gateway_threads=8,
        )
        self._stack = Stack(settings, log_dir=self.state / "logs", base_env=self.env)
        self._stack.start(timeout=60)
        return self._stack

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.stop()
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    started = Services(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def register_and_login(auth_target: str) -> str:
    """A registered user's access token, straight from auth_svc."""
    with open_channel(auth_target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        stub.Register(auth_pb2.RegisterRequest(username="alice", password=PASSWORD), timeout=10)
        login = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD), timeout=10)
    token: str = login.access_token
    return token


# UNAVAILABLE: the server refused the call or the connection. CANCELLED: grpc core (1.85)
# drops calls that reached the transport but not yet a handler when shutdown starts, with
# that code instead of UNAVAILABLE (grpc/grpc#41785). Either way the log says whether a
# handler took the call; one that did must have answered.
_REFUSALS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def grpc_outcome(call: Callable[[], object]) -> tuple[Kind, str]:
    try:
        call()
    except grpc.RpcError as exc:
        code = exc.code()
        kind: Kind = "refused" if code in _REFUSALS else "failed"
        return kind, code.name
    return "ok", ""


def test_sigterm_to_auth_service_during_a_burst_of_logins(services: Services) -> None:
    auth = services.start("auth")
    target = f"127.0.0.1:{services.auth_port}"
    register_and_login(target)
    with open_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        request = auth_pb2.LoginRequest(username="alice", password=PASSWORD)

        def login(request_id: str) -> tuple[Kind, str]:
            return grpc_outcome(
                lambda: stub.Login(request, timeout=10, metadata=(("x-request-id", request_id),))
            )

        result, outcomes = sigterm_during_burst(auth, Burst(login, threads=8))
    assert_clean_stop(result, outcomes, handled_request_ids(services.log("auth"), "rpc"))


def test_sigterm_to_profile_service_during_a_burst_of_reads_and_writes(
    services: Services,
) -> None:
    services.start("auth")
    profile = services.start("profile")
    token = register_and_login(f"127.0.0.1:{services.auth_port}")
    with open_channel(f"127.0.0.1:{services.profile_port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        counter = itertools.count()

        def read_or_write(request_id: str) -> tuple[Kind, str]:
            metadata = (("authorization", f"Bearer {token}"), ("x-request-id", request_id))
            if next(counter) % 2:
                return grpc_outcome(
                    lambda: stub.GetProfile(
                        profile_pb2.GetProfileRequest(), timeout=10, metadata=metadata
                    )
                )
            update = profile_pb2.UpdateProfileRequest(bio=request_id)
            return grpc_outcome(lambda: stub.UpdateProfile(update, timeout=10, metadata=metadata))

        result, outcomes = sigterm_during_burst(profile, Burst(read_or_write, threads=8))
    assert_clean_stop(result, outcomes, handled_request_ids(services.log("profile"), "rpc"))


def test_sigterm_to_gateway_during_a_burst_of_profile_reads(services: Services) -> None:
    stack = services.start_stack()
    token = register_and_login(f"127.0.0.1:{services.auth_port}")
    url = f"{stack.settings.gateway_url}/v1/profile"

    def read(request_id: str) -> tuple[Kind, str]:
        # requests.get opens a new connection each time: a refused one never reached a worker.
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": request_id}
        try:
            response = requests.get(url, headers=headers, timeout=10)
        except requests.ConnectionError as exc:
            return "refused", type(exc).__name__
        except requests.RequestException as exc:
            return "failed", type(exc).__name__
        return ("ok", "") if response.ok else ("failed", str(response.status_code))

    gateway_log = stack.log_path("gateway")
    assert gateway_log is not None
    result, outcomes = sigterm_during_burst(stack.process("gateway"), Burst(read, threads=8))
    assert_clean_stop(result, outcomes, handled_request_ids(gateway_log, "request"))
