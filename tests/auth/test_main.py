"""`python -m auth_svc` as a process: an unusable keys folder, start, stop on SIGTERM.

What both services share (exit codes, configuration and schema errors) is in
tests/common/test_service_main.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from auth_svc.migrations import AUTH_MIGRATIONS
from tests.harness import real_stack


def _run_main(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auth_svc"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unusable_keys_dir_exits_2(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("")
    AUTH_MIGRATIONS.upgrade(f"sqlite:///{tmp_path}/a.db")

    result = _run_main(
        {"AUTH_KEYS_DIR": str(keys_file), "AUTH_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    )

    assert result.returncode == 2
    assert "is not a directory" in result.stderr.strip().splitlines()[-1]


def test_service_starts_serves_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    AUTH_MIGRATIONS.upgrade(f"sqlite:///{tmp_path}/auth.db")
    with real_stack(tmp_path, only=("auth",)) as stack:
        process = stack.process("auth")
        with grpc.insecure_channel(stack.auth_target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            health = health_pb2_grpc.HealthStub(channel)
            response = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        assert len(list((tmp_path / "keys").glob("*.pem"))) == 1
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    stderr = stack.log_path("auth").read_text()
    assert process.returncode == 0, stderr
    assert '"stopped"' in stderr
