"""The audit log on SQLite and MariaDB: each event is written with its change, in the same
transaction; none holds a secret; retention prunes old ones."""

from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import grpc
import jwt
import pytest
import sqlalchemy
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from sqlalchemy import Engine

from auth_svc.audit import EventType, NewEvent, Origin
from auth_svc.lockout import LockoutPolicy
from auth_svc.models import audit_events
from auth_svc.repository import AuditRepository, StoredEvent
from auth_svc.retention import Pruner
from auth_svc.service import AuthService
from authgate_common.db import make_sessions
from authgate_common.errors import AlreadyExists, Unauthenticated
from tests.auth.conftest import PASSWORD, LockoutServerFactory, SettableClock

ORIGIN = Origin(client_ip="198.51.100.7", user_agent="test-agent/1.0", request_id="req-1")


@pytest.fixture
def audit(auth_engine: Engine) -> AuditRepository:
    return AuditRepository(make_sessions(auth_engine))


def all_events(audit: AuditRepository) -> list[StoredEvent]:
    return list(reversed(audit.events(user_id="", event_type="", before_id=None, limit=10_000)))


def types(audit: AuditRepository) -> list[str]:
    return [event.type for event in all_events(audit)]


def test_register_and_login_are_audited_with_their_origin(
    auth_service: AuthService, audit: AuditRepository
) -> None:
    user = auth_service.register("alice", PASSWORD, origin=ORIGIN)
    pair = auth_service.login("alice", PASSWORD, origin=ORIGIN)

    register, login = all_events(audit)
    assert (register.type, login.type) == ("register", "login_succeeded")
    assert register.user_id == login.user_id == user.user_id
    assert (login.client_ip, login.user_agent, login.request_id) == (
        "198.51.100.7",
        "test-agent/1.0",
        "req-1",
    )
    assert login.actor_id is None
    assert set(login.detail) == {"session_id", "amr"}
    assert pair.refresh_token not in json.dumps(login.detail)
    # The token names the session the event records, and carries the (empty) roles.
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert (claims["sid"], claims["roles"], claims["amr"]) == (
        login.detail["session_id"],
        [],
        ["pwd"],
    )


def test_a_successful_login_leaves_no_login_failed_event(
    auth_service: AuthService, audit: AuditRepository
) -> None:
    auth_service.register("alice", PASSWORD)
    with pytest.raises(Unauthenticated):
        auth_service.login("alice", PASSWORD + "x")
    auth_service.login("alice", PASSWORD)

    # The success took back its own counted attempt, not the earlier real failure.
    assert types(audit) == ["register", "login_failed", "login_succeeded"]


def test_failed_logins_record_why_without_the_password(
    auth_service: AuthService, audit: AuditRepository
) -> None:
    auth_service.register("alice", PASSWORD)
    for username in ("alice", "nobody", "x"):  # wrong password, unknown, not a username
        with pytest.raises(Unauthenticated):
            auth_service.login(username, "wrong password 123", origin=ORIGIN)

    failed = [event for event in all_events(audit) if event.type == "login_failed"]
    assert [event.detail["reason"] for event in failed] == [
        "invalid_credentials",
        "unknown_user",
        "unknown_user",
    ]
    assert [event.user_id is None for event in failed] == [False, True, True]
    for event in failed:
        assert "wrong password" not in json.dumps(event.detail)
        assert "nobody" not in json.dumps(event.detail)


def test_a_failed_registration_writes_no_event(
    auth_service: AuthService, audit: AuditRepository
) -> None:
    auth_service.register("alice", PASSWORD)
    with pytest.raises(AlreadyExists):
        auth_service.register("ALICE", PASSWORD)
    assert types(audit) == ["register"]


def test_logout_and_refresh_reuse_are_audited_once(
    auth_service: AuthService, audit: AuditRepository
) -> None:
    auth_service.register("alice", PASSWORD)
    first = auth_service.login("alice", PASSWORD)
    auth_service.refresh(first.refresh_token)
    with pytest.raises(Unauthenticated):
        auth_service.refresh(first.refresh_token)  # spent: reuse revokes the family
    with pytest.raises(Unauthenticated):
        auth_service.refresh(first.refresh_token)  # the family is gone: nothing more to record
    second = auth_service.login("alice", PASSWORD)
    auth_service.logout(second.refresh_token)
    auth_service.logout(second.refresh_token)  # idempotent, and recorded once

    assert types(audit) == [
        "register",
        "login_succeeded",
        "refresh_reuse_detected",
        "login_succeeded",
        "logout",
    ]


def test_an_event_with_a_credential_in_its_detail_cannot_be_made(clock: SettableClock) -> None:
    for key in ("password", "refresh_token", "password_hash", "totp_code", "secret"):
        with pytest.raises(ValueError, match="credential"):
            NewEvent(EventType.LOGIN_FAILED, None, ORIGIN, clock(), {key: "x"})


def test_origin_keeps_only_an_ip_address_and_bounds_the_user_agent() -> None:
    origin = Origin(client_ip="not an ip", user_agent="a" * 1000, request_id="r" * 500)
    assert origin.client_ip is None
    assert len(origin.user_agent or "") == 256
    assert len(origin.request_id or "") == 128
    assert Origin(client_ip="2001:DB8::1").client_ip == "2001:db8::1"


def test_retention_prunes_only_events_older_than_the_setting(
    auth_service: AuthService, audit: AuditRepository, clock: SettableClock
) -> None:
    auth_service.register("old", PASSWORD)
    clock.advance(timedelta(days=91).total_seconds())
    auth_service.register("new", PASSWORD)
    pruner = Pruner("audit events", audit.prune, keep=timedelta(days=90), clock=clock)

    assert pruner.prune() == 1

    [kept] = all_events(audit)
    assert kept.created_at == clock()


def test_pruning_works_through_a_backlog_in_batches(
    audit: AuditRepository, auth_engine: Engine, clock: SettableClock
) -> None:
    old = clock() - timedelta(days=100)
    with auth_engine.begin() as connection:
        connection.execute(
            sqlalchemy.insert(audit_events),
            [{"type": "register", "detail": "{}", "created_at": old} for _ in range(25)],
        )
    assert audit.prune(clock() - timedelta(days=90), batch_size=10) == 25
    assert all_events(audit) == []


def test_the_pruner_thread_prunes_at_start(
    auth_service: AuthService, audit: AuditRepository, auth_engine: Engine, clock: SettableClock
) -> None:
    auth_service.register("old", PASSWORD)
    clock.advance(timedelta(days=2).total_seconds())
    pruned = threading.Event()

    class Watched(AuditRepository):
        def prune(self, older_than: Any, *, batch_size: int = 1000) -> int:
            deleted = super().prune(older_than, batch_size=batch_size)
            pruned.set()
            return deleted

    pruner = Pruner(
        "audit events",
        Watched(make_sessions(auth_engine)).prune,
        keep=timedelta(days=1),
        clock=clock,
        interval_seconds=3600,
    )
    pruner.start()
    try:
        assert pruned.wait(10)
    finally:
        pruner.stop()
    assert all_events(audit) == []


# --- under concurrency, through the real server -------------------------------------------

GUESSES = 50


def test_parallel_wrong_passwords_give_exactly_one_event_each_and_one_lockout(
    lockout_server: LockoutServerFactory, audit: AuditRepository
) -> None:
    server = lockout_server(LockoutPolicy(threshold=5, base_seconds=60, max_seconds=600))
    with grpc.insecure_channel(server.target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        stub.Register(auth_pb2.RegisterRequest(username="alice", password=PASSWORD), timeout=30)
        start = threading.Barrier(GUESSES)

        def guess(_: int) -> grpc.StatusCode:
            start.wait()
            try:
                stub.Login(
                    auth_pb2.LoginRequest(username="alice", password=PASSWORD + "x"), timeout=30
                )
            except grpc.RpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        with ThreadPoolExecutor(max_workers=GUESSES) as pool:
            codes = list(pool.map(guess, range(GUESSES)))

    assert codes == [grpc.StatusCode.UNAUTHENTICATED] * GUESSES
    counts = Counter(types(audit))
    assert counts == {"register": 1, "login_failed": GUESSES, "lockout_engaged": 1}
    reasons = Counter(e.detail["reason"] for e in all_events(audit) if e.type == "login_failed")
    assert reasons == {"invalid_credentials": 5, "locked": GUESSES - 5}
    # Over gRPC without the gateway's x-client-ip, the peer's address is recorded.
    assert {e.client_ip for e in all_events(audit)} == {"127.0.0.1"}
