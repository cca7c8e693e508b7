"""Races on real threads: a refresh token is spent once, whoever comes first."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from auth_svc.service import AuthService, TokenPair
from authgate_common.errors import AlreadyExists, Unauthenticated
from tests.auth.conftest import PASSWORD

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
