"""AccountService over real gRPC on SQLite and MariaDB: the rows each change leaves (sessions,
revocations for the feed, audit events, the profile outbox), and the outbox worker's retries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import sqlalchemy
from authgate.auth.v1 import account_pb2, account_pb2_grpc, auth_pb2, auth_pb2_grpc
from sqlalchemy import Engine

from auth_svc.profile_outbox import ProfileDeletionWorker, backoff_seconds
from auth_svc.repository import ProfileDeletionOutbox
from auth_svc.server import AuthServer
from authgate_common.db import make_engine, make_sessions
from tests.auth.conftest import PASSWORD
from tests.harness import wait_until

TIMEOUT = 10
NEW_PASSWORD = "another long passphrase 7"
Metadata = tuple[tuple[str, str], ...]


class Account:
    def __init__(self, server: AuthServer, database_url: str) -> None:
        self.channel = grpc.insecure_channel(server.target)
        self.auth: Any = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.account: Any = account_pb2_grpc.AccountServiceStub(self.channel)
        self.engine = make_engine(database_url)

    def close(self) -> None:
        self.channel.close()
        self.engine.dispose()

    def register(self, username: str) -> str:
        reply = self.auth.Register(
            auth_pb2.RegisterRequest(username=username, password=PASSWORD), timeout=TIMEOUT
        )
        return str(reply.user_id)

    def login(self, username: str, password: str = PASSWORD, agent: str = "agent/1") -> Any:
        return self.auth.Login(
            auth_pb2.LoginRequest(username=username, password=password),
            timeout=TIMEOUT,
            metadata=(("x-client-ip", "203.0.113.7"), ("x-client-user-agent", agent)),
        )

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(sqlalchemy.text(sql), params))


def bearer(pair: Any) -> Metadata:
    return (("authorization", f"Bearer {pair.access_token}"),)


@pytest.fixture
def api(auth_server: AuthServer, auth_database_url: str) -> Iterator[Account]:
    account = Account(auth_server, auth_database_url)
    yield account
    account.close()


def test_every_rpc_needs_an_access_token(api: Account) -> None:
    api.register("alice")
    refresh = api.login("alice").refresh_token
    for rpc, request in (
        ("ListSessions", account_pb2.ListSessionsRequest()),
        ("RevokeOtherSessions", account_pb2.RevokeOtherSessionsRequest()),
        ("DeleteAccount", account_pb2.DeleteAccountRequest(password=PASSWORD)),
    ):
        for metadata in ((), (("authorization", f"Bearer {refresh}"),)):
            with pytest.raises(grpc.RpcError) as raised:
                getattr(api.account, rpc)(request, timeout=TIMEOUT, metadata=metadata)
            assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert api.rows("SELECT id FROM users")  # nothing deleted


def test_a_login_stores_its_session_and_a_refresh_uses_it(api: Account) -> None:
    user_id = api.register("alice")
    pair = api.login("alice", agent="x" * 300)

    (row,) = api.rows("SELECT * FROM sessions WHERE user_id = :u", u=user_id)
    assert row.client_ip == "203.0.113.7"
    assert row.user_agent == "x" * 256  # truncated
    assert json.loads(row.amr) == ["pwd"]
    api.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    (after,) = api.rows("SELECT * FROM sessions WHERE user_id = :u", u=user_id)
    assert after.last_used_at >= row.last_used_at
    assert after.id == row.id


def test_revoking_a_session_writes_a_session_revocation_and_an_event(api: Account) -> None:
    user_id = api.register("alice")
    mine, other = api.login("alice"), api.login("alice")
    listed = api.account.ListSessions(
        account_pb2.ListSessionsRequest(), timeout=TIMEOUT, metadata=bearer(mine)
    ).sessions
    assert len(listed) == 2
    (other_session,) = [s for s in listed if not s.current]

    api.account.RevokeSession(
        account_pb2.RevokeSessionRequest(session_id=other_session.session_id),
        timeout=TIMEOUT,
        metadata=bearer(mine),
    )

    revoked = api.rows("SELECT kind, subject FROM revocations")
    assert [(r.kind, r.subject) for r in revoked] == [("session", other_session.session_id)]
    (event,) = api.rows(
        "SELECT detail FROM audit_events WHERE type = 'session_revoked' AND user_id = :u",
        u=user_id,
    )
    assert json.loads(event.detail) == {"session_id": other_session.session_id}
    with pytest.raises(grpc.RpcError) as raised:
        api.auth.Refresh(
            auth_pb2.RefreshRequest(refresh_token=other.refresh_token), timeout=TIMEOUT
        )
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # Again: it is no longer a live session of the caller's.
    with pytest.raises(grpc.RpcError) as raised:
        api.account.RevokeSession(
            account_pb2.RevokeSessionRequest(session_id=other_session.session_id),
            timeout=TIMEOUT,
            metadata=bearer(mine),
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_logout_writes_a_session_revocation(api: Account) -> None:
    api.register("alice")
    pair = api.login("alice")
    api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    api.auth.Logout(auth_pb2.LogoutRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT)
    assert [r.kind for r in api.rows("SELECT kind FROM revocations")] == ["session"]


def test_a_password_change_revokes_the_user_and_keeps_only_the_new_session(api: Account) -> None:
    user_id = api.register("alice")
    mine, _other = api.login("alice"), api.login("alice")

    fresh = api.account.ChangePassword(
        account_pb2.ChangePasswordRequest(current_password=PASSWORD, new_password=NEW_PASSWORD),
        timeout=TIMEOUT,
        metadata=bearer(mine),
    )

    assert [(r.kind, r.subject) for r in api.rows("SELECT kind, subject FROM revocations")] == [
        ("user", user_id)
    ]
    live = api.rows(
        "SELECT DISTINCT family_id FROM refresh_tokens WHERE user_id = :u AND revoked_at IS NULL",
        u=user_id,
    )
    assert len(live) == 1
    listed = api.account.ListSessions(
        account_pb2.ListSessionsRequest(), timeout=TIMEOUT, metadata=bearer(fresh)
    ).sessions
    assert [(s.session_id, s.current) for s in listed] == [(live[0].family_id, True)]
    # The new session's token is honoured although the user was revoked that same second.
    api.account.RevokeOtherSessions(
        account_pb2.RevokeOtherSessionsRequest(), timeout=TIMEOUT, metadata=bearer(fresh)
    )
    api.login("alice", NEW_PASSWORD)


def test_a_deletion_removes_everything_and_queues_the_profile(api: Account) -> None:
    user_id = api.register("alice")
    pair = api.login("alice")
    api.login("alice")

    api.account.DeleteAccount(
        account_pb2.DeleteAccountRequest(password=PASSWORD), timeout=TIMEOUT, metadata=bearer(pair)
    )

    for table in ("refresh_tokens", "sessions", "user_roles"):
        assert api.rows(f"SELECT 1 FROM {table} WHERE user_id = :u", u=user_id) == []  # noqa: S608
    assert api.rows("SELECT 1 FROM users WHERE id = :u", u=user_id) == []
    assert [r.user_id for r in api.rows("SELECT user_id FROM profile_deletions")] == [user_id]
    (event,) = api.rows("SELECT * FROM audit_events WHERE type = 'account_deleted'")
    assert event.user_id == user_id
    assert event.client_ip is None
    assert event.user_agent is None
    assert json.loads(event.detail) == {"sessions_revoked": 2}
    # The user's earlier events (register, logins) stay, without address or User-Agent.
    earlier = api.rows("SELECT * FROM audit_events WHERE user_id = :u", u=user_id)
    assert {e.type for e in earlier} >= {"register", "login_succeeded", "account_deleted"}
    assert all(e.client_ip is None and e.user_agent is None for e in earlier)
    assert [(r.kind, r.subject) for r in api.rows("SELECT kind, subject FROM revocations")] == [
        ("user", user_id)
    ]

    # The token that asked is refused by the service itself within 2 s (its own feed).
    def refused() -> bool:
        try:
            api.account.ListSessions(
                account_pb2.ListSessionsRequest(), timeout=TIMEOUT, metadata=bearer(pair)
            )
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False

    wait_until(refused, within=2.0, what="the deleted user's token refused")


# --- the outbox worker ---------------------------------------------------------------------


@pytest.fixture
def outbox(auth_engine: Engine) -> ProfileDeletionOutbox:
    return ProfileDeletionOutbox(make_sessions(auth_engine))


def _queue_deletion(engine: Engine, user_id: str, due: datetime) -> None:
    """A profile deletion waiting in the outbox, due at `due`, never tried yet."""
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "INSERT INTO profile_deletions (user_id, created_at, attempts, next_attempt_at) "
                "VALUES (:user_id, :due, 0, :due)"
            ),
            {"user_id": user_id, "due": due.replace(tzinfo=None)},
        )


def test_the_worker_retries_with_backoff_until_the_profile_service_takes_it(
    outbox: ProfileDeletionOutbox, auth_engine: Engine
) -> None:
    now = datetime.now(UTC)
    _queue_deletion(auth_engine, "u-1", now)
    calls: list[str] = []
    down = True

    class Down(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return grpc.StatusCode.UNAVAILABLE

    def delete_profile(user_id: str) -> None:
        calls.append(user_id)
        if down:
            raise Down()

    clock = [now]
    worker = ProfileDeletionWorker(
        outbox, delete_profile, clock=lambda: clock[0], base_backoff_seconds=10
    )
    assert worker.drain_once() == 0
    assert calls == ["u-1"]
    (row,) = outbox.take_due(now + timedelta(days=1), lease=timedelta(0), limit=10)
    assert row.attempts == 1
    # Not due again before its backoff (5 to 10 s after a first failure).
    clock[0] = now + timedelta(seconds=4)
    assert worker.drain_once() == 0
    assert calls == ["u-1"]
    clock[0] = now + timedelta(days=2)
    assert worker.drain_once() == 0
    assert calls == ["u-1", "u-1"]
    down = False
    clock[0] = now + timedelta(days=3)
    assert worker.drain_once() == 1
    assert outbox.pending() == 0


def test_a_taken_row_is_not_taken_again_until_its_lease_ends(
    outbox: ProfileDeletionOutbox, auth_engine: Engine
) -> None:
    now = datetime.now(UTC)
    _queue_deletion(auth_engine, "u-2", now)
    lease = timedelta(seconds=60)
    assert [d.user_id for d in outbox.take_due(now, lease=lease, limit=10)] == ["u-2"]
    assert outbox.take_due(now + timedelta(seconds=59), lease=lease, limit=10) == []
    assert len(outbox.take_due(now + timedelta(seconds=61), lease=lease, limit=10)) == 1


@pytest.mark.parametrize("attempts", [1, 2, 5, 40])
def test_backoff_doubles_up_to_its_maximum(attempts: int) -> None:
    ceiling = min(300.0, 2.0 ** (attempts - 1))
    for _ in range(20):
        assert ceiling / 2 <= backoff_seconds(attempts, base=1.0, maximum=300.0) <= ceiling
