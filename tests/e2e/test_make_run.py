"""`make run` (python -m devstack): sets up on first use, serves, and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import requests
import sqlalchemy

from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.migrations import MigrationSet, SchemaState
from devstack.launcher import (
    make_private_dir,
    make_sqlite_files_private,
    migrate_sqlite_databases,
    sqlite_files,
)
from profile_svc.migrations import PROFILE_MIGRATIONS
from tests.harness import CHEAP_ARGON2_ENV


def schema_state(migrations: MigrationSet, database: Path) -> SchemaState:
    engine = sqlalchemy.create_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            return migrations.status(connection).state
    finally:
        engine.dispose()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_folder_and_sqlite_files_are_made_private_and_earlier_ones_tightened(
    tmp_path: Path,
) -> None:
    state = tmp_path / "var"
    state.mkdir()
    os.chmod(state, 0o755)  # noqa: S103 (what an older `make run` left)
    earlier = state / "auth.db"  # left by an older `make run`, readable by everyone
    earlier.touch()
    os.chmod(earlier, 0o644)
    env = {
        "AUTH_DATABASE_URL": f"sqlite:///{earlier}",
        "PROFILE_DATABASE_URL": f"sqlite:///{state / 'profile.db'}",
    }

    make_private_dir(state)
    make_sqlite_files_private(env)
    migrate_sqlite_databases(env)

    assert mode_of(state) == 0o700
    assert mode_of(earlier) == 0o600
    assert mode_of(state / "profile.db") == 0o600
    assert schema_state(AUTH_MIGRATIONS, earlier) is SchemaState.CURRENT
    assert schema_state(PROFILE_MIGRATIONS, state / "profile.db") is SchemaState.CURRENT


def test_other_databases_than_sqlite_files_are_left_alone(tmp_path: Path) -> None:
    env = {
        "AUTH_DATABASE_URL": "mysql+pymysql://root@127.0.0.1:3306/authgate_auth",
        "PROFILE_DATABASE_URL": "sqlite:///:memory:",
    }
    assert sqlite_files(env) == []
    make_sqlite_files_private(env)  # nothing to create, nothing to fail on


def test_devstack_serves_with_sqlite_and_dev_keys_then_stops_all_three_on_ctrl_c(
    tmp_path: Path,
) -> None:
    # Port 0 everywhere: each process picks a free one, and the banner says which.
    env = {
        **os.environ,
        **CHEAP_ARGON2_ENV,
        "GATEWAY_PORT": "0",
        "AUTH_GRPC_PORT": "0",
        "PROFILE_GRPC_PORT": "0",
        "AUTH_METRICS_PORT": "0",
        "PROFILE_METRICS_PORT": "0",
    }
    for name in ("AUTH_DATABASE_URL", "PROFILE_DATABASE_URL", "AUTH_KEYS_DIR"):
        env.pop(name, None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "devstack"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        banner = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C" not in banner and time.monotonic() < deadline and launcher.poll() is None:
            banner += launcher.stdout.readline()
        gateway = re.search(r"gateway +http://127\.0\.0\.1:(\d+)", banner)
        auth = re.search(r"auth gRPC .*\(metrics http://127\.0\.0\.1:(\d+)/metrics\)", banner)
        assert gateway is not None, banner
        assert auth is not None, banner
        gateway_port, auth_metrics_port = int(gateway.group(1)), int(auth.group(1))
        assert f"http://127.0.0.1:{gateway_port}" in banner, banner
        assert "curl" in banner
        assert requests.get(f"http://127.0.0.1:{gateway_port}/readyz", timeout=5).status_code == 200
        auth_metrics = f"http://127.0.0.1:{auth_metrics_port}/metrics"
        assert auth_metrics in banner
        assert f"http://127.0.0.1:{gateway_port}/metrics" in banner
        assert requests.get(auth_metrics, timeout=5).status_code == 200

        keys = list((tmp_path / "var" / "keys").glob("*.pem"))
        assert len(keys) == 1
        assert stat.S_IMODE(keys[0].stat().st_mode) == 0o600
        # var/ holds the password hashes and the keys: nothing in it is open to others,
        # whether the launcher or a child process (gunicorn's metrics files) made it.
        assert mode_of(tmp_path / "var") == 0o700
        assert mode_of(tmp_path / "var" / "keys") == 0o700
        assert mode_of(tmp_path / "var" / "auth.db") == 0o600
        assert mode_of(tmp_path / "var" / "profile.db") == 0o600
        open_to_others = {
            str(path.relative_to(tmp_path)): oct(mode_of(path))
            for path in (tmp_path / "var").rglob("*")
            if mode_of(path) & 0o077
        }
        assert open_to_others == {}
        # A fresh state folder: make run migrated its SQLite files itself.
        assert schema_state(AUTH_MIGRATIONS, tmp_path / "var" / "auth.db") is SchemaState.CURRENT
        assert (
            schema_state(PROFILE_MIGRATIONS, tmp_path / "var" / "profile.db") is SchemaState.CURRENT
        )

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(timeout=30) == 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    try:
        requests.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=2)
        still_serving = True
    except requests.ConnectionError:
        still_serving = False
    assert not still_serving, "the gateway outlived make run"
