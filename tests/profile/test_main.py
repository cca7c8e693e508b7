"""`python -m profile_svc`: configuration errors, start, and a graceful stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from profile_svc.migrations import PROFILE_MIGRATIONS


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _env(**values: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **values}


def test_a_configuration_error_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "profile_svc"],
        env=_env(PROFILE_GRPC_PORT="not-a-port"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "PROFILE_GRPC_PORT" in result.stderr


def test_an_unmigrated_database_exits_2_with_one_line_saying_to_run_make_migrate(
    tmp_path: Path,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "profile_svc"],
        env=_env(PROFILE_GRPC_PORT="0", PROFILE_DATABASE_URL=f"sqlite:///{tmp_path / 'p.db'}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("profile_svc: the database schema is not migrated")
    assert "run `make migrate`" in lines[0]


def test_the_service_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    PROFILE_MIGRATIONS.upgrade(f"sqlite:///{tmp_path / 'profile.db'}")
    process = subprocess.Popen(
        [sys.executable, "-m", "profile_svc"],
        env=_env(
            PROFILE_GRPC_PORT=str(port),
            PROFILE_DATABASE_URL=f"sqlite:///{tmp_path / 'profile.db'}",
        ),
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 15
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=5)

    assert '"service": "profile_svc"' in stderr
    assert (tmp_path / "profile.db").exists()


def test_an_unreachable_database_exits_1_with_a_log_line_and_no_password(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "profile_svc"],
        env=_env(
            PROFILE_GRPC_PORT="0",
            PROFILE_DATABASE_URL=f"mysql+pymysql://root:hunter2secret@127.0.0.1:{_free_port()}/x",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "hunter2secret" not in result.stderr
    assert "Traceback" not in result.stderr
