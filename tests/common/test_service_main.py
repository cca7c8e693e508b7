"""Both services run through one `main`: the same exit codes, the same "listening" line.

Exit codes: 0 clean stop, 2 configuration or schema error or an address that cannot be
bound, 1 database unreachable at start.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.migrations import MigrationSet
from profile_svc.migrations import PROFILE_MIGRATIONS


@dataclass(frozen=True)
class Service:
    module: str  # also the `service` field of its log lines
    prefix: str  # of its environment variables
    migrations: MigrationSet

    def env(self, tmp_path: Path, **values: str) -> dict[str, str]:
        base = {
            f"{self.prefix}_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
            f"{self.prefix}_GRPC_PORT": "0",
            f"{self.prefix}_METRICS_PORT": "off",
            "AUTH_KEYS_DIR": str(tmp_path / "keys"),
        }
        return {"PATH": os.environ.get("PATH", ""), **base, **values}

    def run(self, tmp_path: Path, **values: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", self.module],
            env=self.env(tmp_path, **values),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


SERVICES = [
    Service("auth_svc", "AUTH", AUTH_MIGRATIONS),
    Service("profile_svc", "PROFILE", PROFILE_MIGRATIONS),
]


@pytest.fixture(params=SERVICES, ids=lambda s: s.module)
def service(request: pytest.FixtureRequest) -> Service:
    chosen: Service = request.param
    return chosen


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A port bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


def test_a_configuration_error_exits_2_with_one_line_naming_the_service(
    service: Service, tmp_path: Path
) -> None:
    result = service.run(tmp_path, **{f"{service.prefix}_GRPC_PORT": "not-a-port"})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{service.module}: configuration error: {service.prefix}_GRPC_PORT "
        "must be a whole number, got 'not-a-port'"
    ]


def test_an_unmigrated_database_exits_2_with_one_line_saying_to_run_make_migrate(
    service: Service, tmp_path: Path
) -> None:
    result = service.run(tmp_path)

    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"{service.module}: the database schema is not migrated")
    assert "run `make migrate`" in line
    assert not (tmp_path / "keys").exists()  # the auth service made no key before the check


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port: int = sock.getsockname()[1]
        yield port


@pytest.mark.parametrize("which", ["GRPC", "METRICS"])
def test_a_taken_port_exits_2_with_one_line_naming_the_address(
    service: Service, tmp_path: Path, taken_port: int, which: str
) -> None:
    service.migrations.upgrade(f"sqlite:///{tmp_path / 'service.db'}")

    result = service.run(tmp_path, **{f"{service.prefix}_{which}_PORT": str(taken_port)})

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"{service.module}: cannot bind ")
    assert f"127.0.0.1:{taken_port}" in lines[-1]
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_exits_1_with_one_log_line_and_no_password(
    service: Service, tmp_path: Path, refusing_port: int
) -> None:
    url = f"mysql+pymysql://root:hunter2secret@127.0.0.1:{refusing_port}/x"

    result = service.run(tmp_path, **{f"{service.prefix}_DATABASE_URL": url})

    assert result.returncode == 1
    [line] = [json.loads(text) for text in result.stderr.strip().splitlines()]
    assert line["message"] == "cannot reach the database at start"
    assert line["service"] == service.module
    assert line["database"] == f"mysql+pymysql://root:***@127.0.0.1:{refusing_port}/x"
    assert "hunter2secret" not in result.stderr
    assert not (tmp_path / "keys").exists()


class LogLines:
    """The JSON lines a process writes to stderr, read on a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        assert process.stderr is not None
        self._thread = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for text in stream:
            self._lines.put(json.loads(text))
        self._lines.put(None)  # end of output

    def wait_for(self, message: str, timeout: float = 30) -> dict[str, Any]:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no {message!r} within {timeout} s: {self.seen}") from None
            if line is None:
                raise AssertionError(f"the process ended without logging {message!r}: {self.seen}")
            self.seen.append(line)
            if line.get("message") == message:
                return line


def test_port_0_is_reported_in_the_listening_line_and_sigterm_stops_with_0(
    service: Service, tmp_path: Path
) -> None:
    database_url = f"sqlite:///{tmp_path / 'service.db'}"
    service.migrations.upgrade(database_url)
    process = subprocess.Popen(
        [sys.executable, "-m", service.module],
        env=service.env(tmp_path, **{f"{service.prefix}_METRICS_PORT": "0"}),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = LogLines(process)
        listening = lines.wait_for("listening")

        assert listening["service"] == service.module
        assert listening["logger"] == "authgate_common.service"
        port, metrics_port = listening["port"], listening["metrics_port"]
        assert isinstance(port, int)
        assert isinstance(metrics_port, int)
        assert port > 0
        assert metrics_port > 0
        assert listening["address"] == f"127.0.0.1:{port}"
        assert listening["database"] == database_url
        with grpc.insecure_channel(listening["address"]) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING

        process.send_signal(signal.SIGTERM)
        assert lines.wait_for("stopped")["service"] == service.module
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


# tgkill(2), by machine: a signal to one thread of another process (os.kill lets the kernel
# pick the thread).
_TGKILL = {"x86_64": 234, "aarch64": 131}


def _signal_thread(pid: int, tid: int, signum: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(_TGKILL[platform.machine()], pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


@pytest.mark.skipif(platform.machine() not in _TGKILL, reason="tgkill number unknown here")
def test_a_sigterm_that_lands_on_another_thread_still_stops_the_service(
    service: Service, tmp_path: Path
) -> None:
    service.migrations.upgrade(f"sqlite:///{tmp_path / 'service.db'}")
    process = subprocess.Popen(
        [sys.executable, "-m", service.module],
        env=service.env(tmp_path),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = LogLines(process)
        lines.wait_for("listening")
        # Any thread but the main one (whose id is the process id): gRPC's, the pool's.
        others = [int(t) for t in os.listdir(f"/proc/{process.pid}/task") if int(t) != process.pid]
        assert others, "the service runs no other thread"
        _signal_thread(process.pid, others[-1], signal.SIGTERM)
        assert lines.wait_for("stopped", timeout=15)["service"] == service.module
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
