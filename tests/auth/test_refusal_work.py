"""Refused logins make the database do the same work whatever the reason: as many
transactions and statements for an unknown user, a locked account, a disabled user and a
wrong password. Counted, not timed: tests/auth/test_timing.py times them in the serial step,
and a difference in round trips (about 7 ms on MariaDB) is what it once caught."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from auth_svc.lockout import LockoutPolicy
from auth_svc.repository import UserRepository
from authgate_common.errors import Unauthenticated
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock

# Statements per transaction, in order.
Work = list[int]


@pytest.fixture
def count_work(auth_engine: Engine) -> Iterator[Callable[[Callable[[], object]], Work]]:
    counts: Work = [0]

    def on_statement(*_: object) -> None:
        counts[-1] += 1

    def on_commit(*_: object) -> None:
        counts.append(0)

    event.listen(auth_engine, "before_cursor_execute", on_statement)
    event.listen(auth_engine, "commit", on_commit)

    def count(refused_login: Callable[[], object]) -> Work:
        counts[:] = [0]
        with pytest.raises(Unauthenticated):
            refused_login()
        return counts[:-1]  # the last entry counts after the last commit: nothing

    yield count
    event.remove(auth_engine, "before_cursor_execute", on_statement)
    event.remove(auth_engine, "commit", on_commit)


def test_every_kind_of_refused_login_runs_the_same_statements_and_commits(
    service_factory: ServiceFactory,
    users: UserRepository,
    clock: SettableClock,
    count_work: Callable[[Callable[[], object]], Work],
) -> None:
    service = service_factory(lockout=LockoutPolicy(threshold=10_000))
    service.register("alice", PASSWORD)
    disabled = service.register("mallory", PASSWORD)
    users.set_disabled(disabled.user_id, True, clock())
    service.register("carol", PASSWORD)
    strict = service_factory(lockout=LockoutPolicy(1, 900, 900))
    with pytest.raises(Unauthenticated):
        strict.login("carol", PASSWORD + "x")  # locked by this failure

    work = {
        "unknown user": count_work(lambda: service.login("nobody", PASSWORD)),
        "wrong password": count_work(lambda: service.login("alice", PASSWORD + "x")),
        "disabled user": count_work(lambda: service.login("mallory", PASSWORD)),
        "locked account": count_work(lambda: service.login("carol", PASSWORD)),
    }

    assert work["wrong password"] == [5, 6], work  # the claim, then the failure's settlement
    assert all(counted == work["wrong password"] for counted in work.values()), work
