"""`python -m auth_svc` as a process: clear configuration errors, start, stop on SIGTERM."""

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


def test_bad_configuration_exits_2_with_one_clear_line() -> None:
    result = _run_main({"AUTH_GRPC_PORT": "not-a-port"})

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "auth_svc: configuration error: AUTH_GRPC_PORT must be a whole number, got 'not-a-port'"
    ]


def test_unusable_keys_dir_exits_2(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys"
    keys_file.write_text("")
    AUTH_MIGRATIONS.upgrade(f"sqlite:///{tmp_path}/a.db")

    result = _run_main(
        {"AUTH_KEYS_DIR": str(keys_file), "AUTH_DATABASE_URL": f"sqlite:///{tmp_path}/a.db"}
    )

    assert result.returncode == 2
    assert "is not a directory" in result.stderr.strip().splitlines()[-1]


def test_an_unmigrated_database_exits_2_with_one_line_saying_to_run_make_migrate(
    tmp_path: Path,
) -> None:
    result = _run_main(
        {
            "AUTH_GRPC_PORT": "0",
            "AUTH_DATABASE_URL": f"sqlite:///{tmp_path}/auth.db",
            "AUTH_KEYS_DIR": str(tmp_path / "keys"),
        }
    )

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("auth_svc: the database schema is not migrated")
    assert "run `make migrate`" in lines[0]
    assert not (tmp_path / "keys").exists()


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
