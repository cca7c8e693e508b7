"""Refused logins take the same time whatever the reason (no timing oracle): unknown user,
wrong password, disabled user, locked account."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from auth_svc.config import Argon2Params
from auth_svc.lockout import LockoutPolicy
from auth_svc.repository import UserRepository
from authgate_common.errors import Unauthenticated
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock

# Costly enough that the hash, not the database, dominates; cheap enough for the suite.
TIMING_ARGON2 = Argon2Params(time_cost=2, memory_kib=19456, parallelism=1)
ROUNDS = 15

pytestmark = pytest.mark.serial


def _refusal_seconds(attempt: Callable[[], object]) -> float:
    started = time.perf_counter()
    with pytest.raises(Unauthenticated):
        attempt()
    return time.perf_counter() - started


def test_unknown_user_wrong_password_disabled_user_and_locked_account_take_the_same_time(
    service_factory: ServiceFactory, users: UserRepository, clock: SettableClock
) -> None:
    # A threshold the wrong-password rounds never reach, so alice is never locked...
    service = service_factory(argon2=TIMING_ARGON2, lockout=LockoutPolicy(threshold=10_000))
    service.register("alice", PASSWORD)
    disabled = service.register("mallory", PASSWORD)
    users.set_disabled(disabled.user_id, True, clock())
    service.register("carol", PASSWORD)
    # ...while carol is locked by one failure under a strict policy (the lock is in the row).
    strict = service_factory(argon2=TIMING_ARGON2, lockout=LockoutPolicy(1, 900, 900))
    with pytest.raises(Unauthenticated):
        strict.login("carol", PASSWORD + "x")
    attempts: dict[str, Callable[[], object]] = {
        "unknown user": lambda: service.login("nobody", PASSWORD),
        "wrong password": lambda: service.login("alice", PASSWORD + "x"),
        "disabled user": lambda: service.login("mallory", PASSWORD),
        "locked account": lambda: service.login("carol", PASSWORD),
    }

    durations: dict[str, list[float]] = {name: [] for name in attempts}
    for _ in range(ROUNDS):  # interleaved, so that drift in machine load hits all alike
        for name, attempt in attempts.items():
            durations[name].append(_refusal_seconds(attempt))

    medians = {name: statistics.median(values) for name, values in durations.items()}
    assert max(medians.values()) <= 1.25 * min(medians.values()), medians
