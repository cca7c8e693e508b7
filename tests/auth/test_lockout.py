"""Brute-force protection: exponential temporary lockout, counted atomically in the database."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from auth_svc.config import Argon2Params, AuthConfig
from auth_svc.keys import KeyRing
from auth_svc.lockout import LockoutPolicy
from auth_svc.repository import UserRepository
from auth_svc.server import build_service
from auth_svc.service import (
    INVALID_CREDENTIALS,
    LOCK_ENGAGED,
    LOCK_REFUSED,
    AuthService,
    TokenPair,
)
from authgate_common.config import ConfigError, Env
from authgate_common.errors import ResourceExhausted, Unauthenticated
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock

POLICY = LockoutPolicy(threshold=3, base_seconds=30, max_seconds=100)
WRONG = PASSWORD + "x"


@pytest.fixture
def service(service_factory: ServiceFactory) -> AuthService:
    service = service_factory(lockout=POLICY)
    service.register("alice", PASSWORD)
    return service


def _refused(service: AuthService, password: str, username: str = "alice") -> str:
    with pytest.raises(Unauthenticated) as raised:
        service.login(username, password)
    return raised.value.message


def _fail(service: AuthService, times: int) -> None:
    for _ in range(times):
        _refused(service, WRONG)


def _state(users: UserRepository, username: str = "alice") -> tuple[int, object]:
    """The lockout of the user for the logins here, which come from no known address."""
    user = users.by_username(username)
    assert user is not None
    throttle = users.throttle_of(user.id)
    return throttle.failures, throttle.locked_until


def test_policy_doubles_from_the_threshold_up_to_the_cap() -> None:
    assert [POLICY.lock_seconds(n) for n in range(1, 8)] == [0, 0, 30, 60, 100, 100, 100]
    assert POLICY.escalation() == [(3, 30), (4, 60), (5, 100)]


def test_policy_cap_holds_for_huge_failure_counts() -> None:
    assert LockoutPolicy().lock_seconds(10**9) == 900


def test_policy_defaults_and_environment() -> None:
    assert AuthConfig.from_env(Env({})).lockout == LockoutPolicy(5, 30, 900)
    env = Env(
        {
            "AUTH_LOCKOUT_THRESHOLD": "10",
            "AUTH_LOCKOUT_BASE_SECONDS": "5",
            "AUTH_LOCKOUT_MAX_SECONDS": "60",
        }
    )
    assert AuthConfig.from_env(env).lockout == LockoutPolicy(10, 5, 60)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"AUTH_LOCKOUT_THRESHOLD": "0"}, "AUTH_LOCKOUT_THRESHOLD"),
        ({"AUTH_LOCKOUT_BASE_SECONDS": "soon"}, "AUTH_LOCKOUT_BASE_SECONDS"),
        (
            {"AUTH_LOCKOUT_BASE_SECONDS": "60", "AUTH_LOCKOUT_MAX_SECONDS": "30"},
            "AUTH_LOCKOUT_MAX_SECONDS must be at least AUTH_LOCKOUT_BASE_SECONDS",
        ),
    ],
)
def test_bad_policy_settings_are_config_errors(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuthConfig.from_env(Env(variables))


def test_failures_below_the_threshold_are_counted_without_a_lock(
    service: AuthService, users: UserRepository
) -> None:
    _fail(service, 2)

    assert _state(users) == (2, None)
    assert isinstance(service.login("alice", PASSWORD), TokenPair)


def test_success_resets_the_count(service: AuthService, users: UserRepository) -> None:
    _fail(service, 2)
    service.login("alice", PASSWORD)

    assert _state(users) == (0, None)


def test_threshold_failures_lock_the_account_for_the_base_time(
    service: AuthService, users: UserRepository, clock: SettableClock
) -> None:
    _fail(service, 3)

    assert _state(users) == (3, clock() + timedelta(seconds=30))


def test_locked_account_refuses_the_right_password_like_a_wrong_one(
    service: AuthService, users: UserRepository
) -> None:
    _fail(service, 3)

    assert _refused(service, PASSWORD) == _refused(service, WRONG) == INVALID_CREDENTIALS
    # Attempts while locked are refused before any check and do not extend the lock.
    assert _state(users)[0] == 3


def test_lock_runs_out_and_the_right_password_then_resets_it(
    service: AuthService, users: UserRepository, clock: SettableClock
) -> None:
    _fail(service, 3)
    clock.advance(30)

    assert isinstance(service.login("alice", PASSWORD), TokenPair)
    assert _state(users) == (0, None)


def test_each_failure_after_a_lock_doubles_it_up_to_the_cap(
    service: AuthService, users: UserRepository, clock: SettableClock
) -> None:
    _fail(service, 3)
    locks = []
    for _ in range(3):
        clock.advance(1000)
        _fail(service, 1)
        failures, locked_until = _state(users)
        assert isinstance(locked_until, type(clock()))
        locks.append((failures, (locked_until - clock()).total_seconds()))

    assert locks == [(4, 60.0), (5, 100.0), (6, 100.0)]


def test_locked_account_logs_the_reason_without_checking_the_password(
    service: AuthService, caplog: pytest.LogCaptureFixture
) -> None:
    _fail(service, 3)
    caplog.clear()
    with caplog.at_level("INFO", logger="auth_svc.service"):
        _refused(service, PASSWORD)

    reasons = [getattr(r, "reason", None) for r in caplog.records if r.msg == "login refused"]
    assert reasons == ["locked"]


def test_unknown_usernames_change_nothing(service: AuthService, users: UserRepository) -> None:
    _fail(service, 1)
    _refused(service, PASSWORD, username="nobody")

    assert _state(users) == (1, None)
    assert users.by_username("nobody") is None


def test_failures_are_per_account(service: AuthService, users: UserRepository) -> None:
    service.register("bob", PASSWORD)
    _fail(service, 3)

    assert isinstance(service.login("bob", PASSWORD), TokenPair)
    assert _state(users, "bob") == (0, None)


def test_logins_refused_because_every_hashing_slot_is_busy_do_not_count_towards_a_lockout(
    service_factory: ServiceFactory, users: UserRepository
) -> None:
    # One slot, no queueing, a hash slow enough that concurrent logins find it taken.
    busy = service_factory(
        lockout=POLICY,
        argon2=Argon2Params(time_cost=2, memory_kib=19456, parallelism=1),
        max_concurrent_hashes=1,
        hash_queue_timeout_seconds=0.0,
    )
    busy.register("alice", PASSWORD)
    refused_busy: list[ResourceExhausted] = []

    def log_in() -> None:
        try:
            busy.login("alice", PASSWORD)
        except ResourceExhausted as exc:
            refused_busy.append(exc)

    threads = [threading.Thread(target=log_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(refused_busy) >= POLICY.threshold
    assert _state(users) == (0, None)
    assert isinstance(busy.login("alice", PASSWORD), TokenPair)


def test_lockout_events_tell_when_a_lock_is_engaged_and_when_a_login_meets_it(
    auth_config: AuthConfig, auth_engine: Engine, key_ring: KeyRing, clock: SettableClock
) -> None:
    events: list[str] = []
    service = build_service(
        dataclasses.replace(auth_config, lockout=POLICY),
        auth_engine,
        key_ring,
        clock=clock,
        on_lockout=events.append,
    )
    service.register("alice", PASSWORD)
    _fail(service, POLICY.threshold - 1)
    assert events == []
    _fail(service, 1)
    assert events == [LOCK_ENGAGED]
    _refused(service, PASSWORD)
    assert events == [LOCK_ENGAGED, LOCK_REFUSED]
