"""SIGTERM during a burst of writes: every request completes or is refused cleanly, and the
database holds exactly the writes that were answered as done (issue 5, fault 4)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable

import pytest

from tests.harness import Outcome, RealStack, new_username

pytestmark = [pytest.mark.faults, pytest.mark.mysql, pytest.mark.serial]

WRITERS = 8
BEFORE_SIGNAL_SECONDS = 0.4
AFTER_EXIT_SECONDS = 0.3


def write_in_a_loop_through(
    stack: RealStack, service: str, write: Callable[[int], Outcome]
) -> list[list[Outcome]]:
    """WRITERS threads call write(thread_index) in a loop; SIGTERM `service` meanwhile.

    Each thread's outcomes are kept in order. The process must exit on its own (exit
    status 0) within its grace period.
    """
    per_writer: list[list[Outcome]] = [[] for _ in range(WRITERS)]
    stop = threading.Event()

    def loop(index: int) -> None:
        while not stop.is_set():
            per_writer[index].append(write(index))

    threads = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(BEFORE_SIGNAL_SECONDS)
        stack.signal(service, signal.SIGTERM)
        assert stack.stack.process(service).wait(timeout=15) == 0
        time.sleep(AFTER_EXIT_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    stack.restart(service)
    return per_writer


def register(stack: RealStack) -> Callable[[int], Outcome]:
    def write(_index: int) -> Outcome:
        return stack.request(
            "POST",
            "/v1/auth/register",
            body={"username": new_username(), "password": "correct horse battery staple"},
        )

    return write


def assert_each_register_wrote_exactly_what_it_answered(
    stack: RealStack, outcomes: list[Outcome], *, refusals: set[int | None]
) -> None:
    statuses = {o.status for o in outcomes}
    assert statuses <= {201} | refusals, sorted(map(str, statuses))
    assert 201 in statuses, "no register completed before the signal"
    assert statuses - {201}, "the burst never met the stopped process"
    names = [o.sent["username"] for o in outcomes]
    stored = {
        row[0]: row[1]
        for row in stack.rows(
            stack.auth_database_url,
            "SELECT username, COUNT(*) FROM users WHERE username LIKE 'f\\_%' GROUP BY username",
        )
    }
    for name, outcome in zip(names, outcomes, strict=True):
        assert stored.get(name, 0) == (1 if outcome.status == 201 else 0), outcome


def test_sigterm_to_auth_during_registers_completes_or_refuses_each_with_no_half_writes(
    healthy_stack: RealStack,
) -> None:
    per_writer = write_in_a_loop_through(healthy_stack, "auth", register(healthy_stack))
    outcomes = [o for writer in per_writer for o in writer]
    assert_each_register_wrote_exactly_what_it_answered(healthy_stack, outcomes, refusals={503})


def test_sigterm_to_gateway_during_registers_completes_or_refuses_each_with_no_half_writes(
    healthy_stack: RealStack,
) -> None:
    per_writer = write_in_a_loop_through(healthy_stack, "gateway", register(healthy_stack))
    outcomes = [o for writer in per_writer for o in writer]
    # Once gunicorn has closed its socket, connecting is refused: nothing reached a service.
    assert {o.error for o in outcomes if o.status is None} <= {"ConnectionError"}
    assert_each_register_wrote_exactly_what_it_answered(healthy_stack, outcomes, refusals={None})


def test_sigterm_to_profile_during_updates_keeps_exactly_the_last_answered_update(
    healthy_stack: RealStack,
) -> None:
    users = [healthy_stack.register() for _ in range(WRITERS)]
    tokens = [healthy_stack.token(user) for user in users]
    for token in tokens:  # create the profiles
        assert healthy_stack.request("GET", "/v1/profile", token=token).status == 200
    counters = [0] * WRITERS

    def update(index: int) -> Outcome:
        counters[index] += 1
        return healthy_stack.request(
            "PATCH", "/v1/profile", body={"bio": f"update {counters[index]}"}, token=tokens[index]
        )

    per_writer = write_in_a_loop_through(healthy_stack, "profile", update)

    statuses = {o.status for writer in per_writer for o in writer}
    assert statuses <= {200, 503}, statuses
    assert statuses == {200, 503}, "the burst should straddle the stop"
    for user, outcomes in zip(users, per_writer, strict=True):
        answered = [o for o in outcomes if o.status == 200]
        stored = healthy_stack.scalar(
            healthy_stack.profile_database_url,
            "SELECT p.bio FROM profiles p WHERE p.username = :u",
            u=user,
        )
        # Each writer is sequential: its last answered update is the one that must be stored,
        # and no refused one after it may have slipped in.
        expected = answered[-1].sent["bio"] if answered else ""
        assert stored == expected
        for outcome in answered:
            assert outcome.json()["bio"] == outcome.sent["bio"]
