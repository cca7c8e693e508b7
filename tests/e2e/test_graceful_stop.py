"""SIGTERM during a burst: every request completes, or was never taken; the process exits 0 in time.

Real processes started the way `make run` starts them. Each request carries a request id of
its own, and each process logs one line per request or RPC it handled, with that id: a
request the client saw refused must be absent from that log (never taken), and anything
other than success or such a refusal is a failure.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import grpc
import pytest
import requests
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

from authgate_common.channels import open_channel
from tests.harness import RealStack, real_stack, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.serial]

GRACE_SECONDS = 5
PASSWORD = "correct horse battery staple"
# Logins cost some milliseconds, so that some are surely running at SIGTERM.
SLOWER_ARGON2 = {
    "AUTH_ARGON2_TIME_COST": "5",
    "AUTH_ARGON2_MEMORY_KIB": "8192",
    "AUTH_ARGON2_PARALLELISM": "1",
}
ENV = {
    **SLOWER_ARGON2,
    "GRPC_GRACE_SECONDS": str(GRACE_SECONDS),
    "GATEWAY_GRACEFUL_TIMEOUT": str(GRACE_SECONDS),
    "LOG_LEVEL": "INFO",
    # The lockout counts a login in flight as a failure until it succeeds: 8 threads logging
    # in as one user must not meet its threshold (default 5), a limit this test is not about.
    "AUTH_LOCKOUT_THRESHOLD": "100",
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

    def wait_for(self, kind: Kind, count: int, *, after: float = 0.0, within: float = 20) -> None:
        """Until `count` requests started after `after` have ended as `kind`."""
        wait_until(
            lambda: sum(o.kind == kind and o.started > after for o in list(self.outcomes)) >= count,
            within=within,
            what=f"{count} {kind} requests (last: {self.outcomes[-3:]})",
        )

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
    burst.wait_for("ok", 10)
    signalled_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    try:
        exit_code = process.wait(timeout=GRACE_SECONDS + 10)
    finally:
        exited_at = time.monotonic()
        seconds = exited_at - signalled_at
        try:
            burst.wait_for("refused", 3, after=exited_at)  # a few requests after the exit
        finally:
            outcomes = burst.finish()
    return StopResult(exit_code, seconds, signalled_at), outcomes


def assert_clean_stop(
    result: StopResult, outcomes: list[Outcome], handled: set[str], log: Path
) -> None:
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
    # Nor a traceback on the way out (gunicorn's workers once logged one each at exit).
    assert "Traceback" not in log.read_text(errors="replace")


class Services:
    """The real processes a test needs, started as `make run` starts them, stopped at the end."""

    def __init__(self, state: Path, cleanup: ExitStack) -> None:
        self.state = state
        self._cleanup = cleanup

    def start(self, *names: str, gateway_server: str | None = None) -> RealStack:
        """These processes (of auth, profile and gateway, in that order), once serving."""
        return self._cleanup.enter_context(
            real_stack(
                self.state,
                only=names,
                extra_env=ENV,
                gateway_workers=2,
                gateway_server=gateway_server,
            )
        )


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    with ExitStack() as cleanup:
        yield Services(tmp_path, cleanup)


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
    stack = services.start("auth")
    target = stack.auth_target
    register_and_login(target)
    with open_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        request = auth_pb2.LoginRequest(username="alice", password=PASSWORD)

        def login(request_id: str) -> tuple[Kind, str]:
            return grpc_outcome(
                lambda: stub.Login(request, timeout=10, metadata=(("x-request-id", request_id),))
            )

        result, outcomes = sigterm_during_burst(stack.process("auth"), Burst(login, threads=8))
    auth_log = stack.log_path("auth")
    assert_clean_stop(result, outcomes, handled_request_ids(auth_log, "rpc"), auth_log)


def test_sigterm_to_profile_service_during_a_burst_of_reads_and_writes(
    services: Services,
) -> None:
    stack = services.start("auth", "profile")
    token = register_and_login(stack.auth_target)
    with open_channel(stack.profile_target) as channel:
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

        result, outcomes = sigterm_during_burst(
            stack.process("profile"), Burst(read_or_write, threads=8)
        )
    profile_log = stack.log_path("profile")
    assert_clean_stop(result, outcomes, handled_request_ids(profile_log, "rpc"), profile_log)


@pytest.mark.parametrize("server", ["gunicorn", "granian"])
def test_sigterm_to_gateway_during_a_burst_of_profile_reads(
    services: Services, server: str
) -> None:
    stack = services.start("auth", "profile", "gateway", gateway_server=server)
    token = register_and_login(stack.auth_target)
    url = f"{stack.url}/v1/profile"

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
    result, outcomes = sigterm_during_burst(stack.process("gateway"), Burst(read, threads=8))
    assert_clean_stop(result, outcomes, handled_request_ids(gateway_log, "request"), gateway_log)
