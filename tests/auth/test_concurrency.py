"""Races on real threads: a refresh token is spent once, whoever comes first; lockout
counting loses no failure and lets no more guesses through than the threshold."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import grpc
import pytest
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc

from auth_svc.lockout import LockoutPolicy
from auth_svc.repository import ThrottleState, UserRepository
from auth_svc.service import INVALID_CREDENTIALS, AuthService, TokenPair
from authgate_common.errors import AlreadyExists, Unauthenticated
from tests.auth.conftest import PASSWORD, LockoutServerFactory, SettableClock

THREADS = 20


def test_parallel_refreshes_of_one_token_yield_exactly_one_success(
    auth_service: AuthService,
) -> None:
    auth_service.register("alice", PASSWORD)
    token = auth_service.login("alice", PASSWORD).refresh_token
    start = threading.Barrier(THREADS)

    def attempt() -> TokenPair | Unauthenticated:
        start.wait()
        try:
            return auth_service.refresh(token)
        except Unauthenticated as exc:
            return exc

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        outcomes = list(pool.map(lambda _: attempt(), range(THREADS)))

    winners = [o for o in outcomes if isinstance(o, TokenPair)]
    assert len(winners) == 1
    assert sum(isinstance(o, Unauthenticated) for o in outcomes) == THREADS - 1
    # The losers presented a spent token: the family, the winner's new token included, is gone.
    with pytest.raises(Unauthenticated):
        auth_service.refresh(winners[0].refresh_token)


def test_parallel_registrations_of_one_name_create_one_user(auth_service: AuthService) -> None:
    start = threading.Barrier(10)

    def attempt(index: int) -> bool:
        start.wait()
        try:
            auth_service.register("Bob" if index % 2 else "bob", PASSWORD)
        except AlreadyExists:
            return False
        return True

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(attempt, range(10)))

    assert results.count(True) == 1


GUESSES = 50
REFUSED = (grpc.StatusCode.UNAUTHENTICATED, INVALID_CREDENTIALS)  # one answer for every refusal


def _login(stub: Any, password: str) -> tuple[grpc.StatusCode, str]:
    try:
        stub.Login(auth_pb2.LoginRequest(username="alice", password=password), timeout=30)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


def _guess_in_parallel(stub: Any) -> list[tuple[grpc.StatusCode, str]]:
    start = threading.Barrier(GUESSES)

    def guess(_: int) -> tuple[grpc.StatusCode, str]:
        start.wait()
        return _login(stub, PASSWORD + "x")

    with ThreadPoolExecutor(max_workers=GUESSES) as pool:
        return list(pool.map(guess, range(GUESSES)))


def _register_alice(stub: Any) -> None:
    stub.Register(auth_pb2.RegisterRequest(username="alice", password=PASSWORD), timeout=30)


def _alice(users: UserRepository) -> ThrottleState:
    """alice's lockout for the address of these calls (the loopback peer)."""
    user = users.by_username("alice")
    assert user is not None
    return users.throttle_of(user.id, "127.0.0.1")


def test_parallel_wrong_passwords_are_all_counted(
    lockout_server: LockoutServerFactory, users: UserRepository
) -> None:
    server = lockout_server(LockoutPolicy(threshold=1000))
    with grpc.insecure_channel(server.target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        _register_alice(stub)

        codes = _guess_in_parallel(stub)

    assert codes == [REFUSED] * GUESSES
    assert _alice(users).failures == GUESSES  # no lost update
    assert _alice(users).locked_until is None


def test_parallel_wrong_passwords_get_no_more_checks_than_the_threshold(
    lockout_server: LockoutServerFactory,
    users: UserRepository,
    clock: SettableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = LockoutPolicy(threshold=5, base_seconds=2, max_seconds=60)
    server = lockout_server(policy)
    with grpc.insecure_channel(server.target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        _register_alice(stub)
        with caplog.at_level(logging.INFO, logger="auth_svc.service"):
            codes = _guess_in_parallel(stub)
        reasons = Counter(
            getattr(record, "reason", None)
            for record in caplog.records
            if record.msg == "login refused"
        )

        assert codes == [REFUSED] * GUESSES
        # Exactly `threshold` passwords were checked; every other guess met the lock.
        assert reasons == {"wrong_password": 5, "locked": GUESSES - 5}
        assert _alice(users).failures == 5
        assert _alice(users).locked_until == clock() + timedelta(seconds=2)

        # The right password during the lock gets the very answer a wrong one gets.
        assert _login(stub, PASSWORD) == REFUSED

        clock.advance(2)
        assert _login(stub, PASSWORD) == (grpc.StatusCode.OK, "")
    assert (_alice(users).failures, _alice(users).locked_until) == (0, None)
