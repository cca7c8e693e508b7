"""`python -m profile_svc`: configuration errors, start, and a graceful stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from profile_svc.migrations import PROFILE_MIGRATIONS
from tests.harness import real_stack

# Nothing listens on port 1: a database the service cannot reach.
UNREACHABLE_PORT = 1


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
    PROFILE_MIGRATIONS.upgrade(f"sqlite:///{tmp_path / 'profile.db'}")
    with real_stack(tmp_path, only=("profile",)) as stack:
        process = stack.process("profile")
        with grpc.insecure_channel(stack.profile_target) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        assert response.status == health_pb2.HealthCheckResponse.SERVING

        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 15
    stderr = stack.log_path("profile").read_text()

    assert '"service": "profile_svc"' in stderr
    assert (tmp_path / "profile.db").exists()


def test_an_unreachable_database_exits_1_with_a_log_line_and_no_password(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "profile_svc"],
        env=_env(
            PROFILE_GRPC_PORT="0",
            PROFILE_DATABASE_URL=f"mysql+pymysql://root:hunter2secret@127.0.0.1:{UNREACHABLE_PORT}/x",
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
