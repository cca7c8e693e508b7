"""`python -m auth_svc.roles` and `make grant-role`: the first admin, on SQLite and MariaDB,
with the auth service running or not, and clear exits for mistakes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from authgate.auth.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc

from auth_svc.repository import AdminRepository, AuditRepository
from auth_svc.revocations import RevocationLog, token_lifetime_bound
from auth_svc.roles import main
from auth_svc.server import AuthServer
from auth_svc.service import AuthService
from authgate_common.config import Env
from authgate_common.db import make_engine, make_sessions
from authgate_common.tokens import TokenSettings
from tests.auth.conftest import PASSWORD
from tests.harness import wait_until

ROOT = Path(__file__).resolve().parents[2]


def roles_of(database_url: str, username: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        sessions = make_sessions(engine)
        revocations = RevocationLog(sessions, token_lifetime=token_lifetime_bound(TokenSettings()))
        view = AdminRepository(sessions, revocations).user_by_username(username)
        assert view is not None
        return sorted(view.roles)
    finally:
        engine.dispose()


def test_grant_then_revoke_on_the_configured_database(
    auth_service: AuthService, auth_database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    auth_service.register("Alice", PASSWORD)
    env = Env({"AUTH_DATABASE_URL": auth_database_url})

    assert main(["grant", "alice", "admin"], env) == 0
    assert main(["grant", "alice", "admin"], env) == 0  # granting twice changes nothing
    assert roles_of(auth_database_url, "alice") == ["admin"]
    assert "Alice" in capsys.readouterr().out

    assert main(["revoke", "alice", "admin"], env) == 0
    assert roles_of(auth_database_url, "alice") == []

    engine = make_engine(auth_database_url)
    try:
        events = AuditRepository(make_sessions(engine)).events(
            user_id="", event_type="roles_changed", before_id=None, limit=10
        )
    finally:
        engine.dispose()
    # One event per actual change, with no actor: the command line.
    assert [(e.detail["added"], e.detail["removed"], e.actor_id) for e in events] == [
        ([], ["admin"], None),
        (["admin"], [], None),
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["grant", "nobody", "admin"], "no user is named 'nobody'"),
        (["grant", "alice", "Admin"], "a role name must be"),
        (["grant", "alice", "x" * 65], "a role name must be"),
        (["revoke", "alice", "bad role"], "a role name must be"),
    ],
)
def test_mistakes_exit_2_with_one_clear_line(
    auth_service: AuthService,
    auth_database_url: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    auth_service.register("alice", PASSWORD)

    assert main(argv, Env({"AUTH_DATABASE_URL": auth_database_url})) == 2

    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert roles_of(auth_database_url, "alice") == []


def test_an_unmigrated_database_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["grant", "alice", "admin"], Env({"AUTH_DATABASE_URL": url})) == 1
    assert "make migrate" in capsys.readouterr().err


def test_a_grant_while_the_service_runs_shows_at_the_next_login(
    auth_server: AuthServer, auth_database_url: str
) -> None:
    with grpc.insecure_channel(auth_server.target) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        auth.Register(auth_pb2.RegisterRequest(username="alice", password=PASSWORD), timeout=10)

        assert main(["grant", "alice", "admin"], Env({"AUTH_DATABASE_URL": auth_database_url})) == 0

        token = auth.Login(
            auth_pb2.LoginRequest(username="alice", password=PASSWORD), timeout=10
        ).access_token
        users = admin_pb2_grpc.AdminServiceStub(channel).ListUsers(
            admin_pb2.ListUsersRequest(),
            timeout=10,
            metadata=(("authorization", f"Bearer {token}"),),
        )
    assert [user.username for user in users.users] == ["alice"]


def test_a_revoke_while_the_service_runs_turns_earlier_tokens_permission_denied(
    auth_server: AuthServer, auth_database_url: str
) -> None:
    env = Env({"AUTH_DATABASE_URL": auth_database_url})
    with grpc.insecure_channel(auth_server.target) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        auth.Register(auth_pb2.RegisterRequest(username="alice", password=PASSWORD), timeout=10)
        assert main(["grant", "alice", "admin"], env) == 0
        token = auth.Login(
            auth_pb2.LoginRequest(username="alice", password=PASSWORD), timeout=10
        ).access_token
        admin = admin_pb2_grpc.AdminServiceStub(channel)
        as_alice = (("authorization", f"Bearer {token}"),)

        def code() -> grpc.StatusCode:
            try:
                admin.ListUsers(admin_pb2.ListUsersRequest(), timeout=10, metadata=as_alice)
            except grpc.RpcError as exc:
                status: grpc.StatusCode = exc.code()
                return status
            return grpc.StatusCode.OK

        assert code() == grpc.StatusCode.OK
        assert main(["revoke", "alice", "admin"], env) == 0  # the same path as the admin API

        # Through the feed, as a removal made by the admin API: the token is not refused,
        # it just lacks the role now.
        wait_until(lambda: code() != grpc.StatusCode.OK, within=2.0, what="the role gone")
        assert code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_grant_role_and_revoke_role(auth_service: AuthService, auth_database_url: str) -> None:
    auth_service.register("alice", PASSWORD)

    def make(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            # STAMP= skips the install step: this interpreter's environment is the one to use.
            [
                "make",
                "--no-print-directory",
                "-C",
                str(ROOT),
                *arguments,
                "STAMP=",
                f"BIN={Path(sys.executable).parent}",
            ],
            # The login name in $USER must never be taken for the user to promote.
            env={**os.environ, "AUTH_DATABASE_URL": auth_database_url, "USER": "alice"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    missing = make("grant-role", "ROLE=admin")
    assert missing.returncode != 0
    assert "usage: make grant-role USER=alice ROLE=admin" in missing.stderr
    assert roles_of(auth_database_url, "alice") == []

    granted = make("grant-role", "USER=alice", "ROLE=admin")
    assert granted.returncode == 0, granted.stdout + granted.stderr
    assert roles_of(auth_database_url, "alice") == ["admin"]

    unknown = make("grant-role", "USER=bob", "ROLE=admin")
    assert unknown.returncode != 0
    assert "no user is named 'bob'" in unknown.stderr

    revoked = make("revoke-role", "USER=alice", "ROLE=admin")
    assert revoked.returncode == 0, revoked.stdout + revoked.stderr
    assert roles_of(auth_database_url, "alice") == []
