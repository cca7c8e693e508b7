"""The lockout spares the owner: failures throttle the address that makes them; an
account-wide lock only under a distributed attack; concurrent right passwords never lock."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import Engine

from auth_svc.audit import Origin
from auth_svc.lockout import LockoutPolicy
from auth_svc.repository import AuditRepository, UserRepository
from auth_svc.service import AuthService, TokenPair
from authgate_common.db import make_sessions
from authgate_common.errors import Unauthenticated
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock

POLICY = LockoutPolicy(
    threshold=3, base_seconds=30, max_seconds=100, account_threshold=6, account_window_seconds=600
)
ATTACKER = Origin(client_ip="203.0.113.7")
OWNER = Origin(client_ip="198.51.100.20")


@pytest.fixture
def audit(auth_engine: Engine) -> AuditRepository:
    return AuditRepository(make_sessions(auth_engine))


@pytest.fixture
def service(service_factory: ServiceFactory) -> AuthService:
    service = service_factory(lockout=POLICY)
    service.register("alice", PASSWORD)
    return service


def _refused(service: AuthService, password: str, origin: Origin) -> None:
    with pytest.raises(Unauthenticated):
        service.login("alice", password, origin=origin)


def _alice_id(users: UserRepository) -> str:
    user = users.by_username("alice")
    assert user is not None
    return user.id


def test_the_owner_gets_in_from_another_address_while_the_attacking_one_is_locked(
    service: AuthService, users: UserRepository
) -> None:
    for _ in range(POLICY.threshold):
        _refused(service, "wrong password!", ATTACKER)

    _refused(service, PASSWORD, ATTACKER)  # the attacker's address is locked, right or wrong
    assert isinstance(service.login("alice", PASSWORD, origin=OWNER), TokenPair)
    assert users.throttle_of(_alice_id(users), ATTACKER.client_ip).failures == POLICY.threshold
    assert users.throttle_of(_alice_id(users), OWNER.client_ip).failures == 0


def test_failures_from_many_addresses_lock_the_account_for_everyone_and_are_audited(
    service: AuthService, users: UserRepository, audit: AuditRepository, clock: SettableClock
) -> None:
    attackers = [Origin(client_ip=f"203.0.113.{n}") for n in range(1, 4)]
    for origin in attackers:
        for _ in range(2):  # below each address's threshold
            _refused(service, "wrong password!", origin)

    _refused(service, PASSWORD, OWNER)  # the account-wide lock holds for every address
    locks = audit.events(user_id="", event_type="lockout_engaged", before_id=None, limit=10)
    assert [event.detail["scope"] for event in locks] == ["account"]
    assert locks[0].detail["failed_logins"] == POLICY.account_threshold
    user = users.by_username("alice")
    assert user is not None
    assert user.locked_until is not None

    clock.advance(POLICY.account_lock_seconds)
    assert isinstance(service.login("alice", PASSWORD, origin=OWNER), TokenPair)


def test_one_address_alone_does_not_lock_the_account(
    service: AuthService, users: UserRepository, clock: SettableClock
) -> None:
    for _ in range(POLICY.threshold):
        _refused(service, "wrong password!", ATTACKER)
    for _ in range(10):  # refused by its own lock: not counted, not even for the account
        _refused(service, "wrong password!", ATTACKER)

    user = users.by_username("alice")
    assert user is not None
    assert (user.failed_logins, user.locked_until) == (POLICY.threshold, None)
    assert isinstance(service.login("alice", PASSWORD, origin=OWNER), TokenPair)


def test_concurrent_right_passwords_all_succeed_and_lock_nothing(
    service_factory: ServiceFactory, users: UserRepository
) -> None:
    service = service_factory(lockout=LockoutPolicy(threshold=5), max_concurrent_hashes=8)
    service.register("alice", PASSWORD)
    start = threading.Barrier(8)
    outcomes: list[str] = []

    def log_in() -> None:
        start.wait()
        try:
            service.login("alice", PASSWORD, origin=OWNER)
            outcomes.append("ok")
        except Unauthenticated:
            outcomes.append("refused")

    threads = [threading.Thread(target=log_in) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(outcomes) == {"ok": 8}
    throttle = users.throttle_of(_alice_id(users), OWNER.client_ip)
    assert (throttle.failures, throttle.in_flight, throttle.locked_until) == (0, 0, None)
