"""Refused logins take the same time whether the user exists or not (no timing oracle)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import pytest

from auth_svc.config import Argon2Params
from auth_svc.repository import UserRepository
from authgate_common.errors import Unauthenticated
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock

# Costly enough that the hash, not the database, dominates; cheap enough for the suite.
TIMING_ARGON2 = Argon2Params(time_cost=2, memory_kib=16384, parallelism=1)
ROUNDS = 15


def _refusal_seconds(attempt: Callable[[], object]) -> float:
    started = time.perf_counter()
    with pytest.raises(Unauthenticated):
        attempt()
    return time.perf_counter() - started


def test_unknown_user_wrong_password_and_disabled_user_take_the_same_time(
    service_factory: ServiceFactory, users: UserRepository, clock: SettableClock
) -> None:
    service = service_factory(argon2=TIMING_ARGON2)
    service.register("alice", PASSWORD)
    disabled = service.register("mallory", PASSWORD)
    users.set_disabled(disabled.user_id, True, clock())
    attempts: dict[str, Callable[[], object]] = {
        "unknown user": lambda: service.login("nobody", PASSWORD),
        "wrong password": lambda: service.login("alice", PASSWORD + "x"),
        "disabled user": lambda: service.login("mallory", PASSWORD),
    }

    durations: dict[str, list[float]] = {name: [] for name in attempts}
    for _ in range(ROUNDS):  # interleaved, so that drift in machine load hits all alike
        for name, attempt in attempts.items():
            durations[name].append(_refusal_seconds(attempt))

    medians = {name: statistics.median(values) for name, values in durations.items()}
    assert max(medians.values()) <= 1.25 * min(medians.values()), medians
