"""One long-lived channel per upstream per process, remade after a fork."""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest
from flask.testing import FlaskClient

from gateway.upstream import Upstreams
from tests.gateway.fake_upstreams import FakeUpstreams


@pytest.fixture
def channels_made(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    made: list[str] = []
    real = grpc.insecure_channel

    def counting(target: str, *args: Any, **kwargs: Any) -> grpc.Channel:
        made.append(target)
        return real(target, *args, **kwargs)

    monkeypatch.setattr(grpc, "insecure_channel", counting)
    return made


def test_channels_are_made_on_first_use_and_then_reused(
    client: FlaskClient, fakes: FakeUpstreams, channels_made: list[str]
) -> None:
    assert channels_made == []
    token = fakes.minter.mint("u")
    for _ in range(3):
        assert (
            client.get("/v1/profile", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert client.get("/.well-known/jwks.json").status_code == 200
    assert sorted(channels_made) == sorted([fakes.auth.target, fakes.profile.target])


def test_a_forked_process_makes_its_own_channel(
    fakes: FakeUpstreams, channels_made: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    upstreams = Upstreams({"auth": fakes.auth.target}, timeout_seconds=1.0)
    try:
        parent = upstreams.channel("auth")
        assert upstreams.channel("auth") is parent
        monkeypatch.setattr(os, "getpid", lambda: -1)
        child = upstreams.channel("auth")
        assert child is not parent
        assert upstreams.channel("auth") is child
        assert channels_made == [fakes.auth.target, fakes.auth.target]
    finally:
        upstreams.close()


def test_health_reports_each_upstream(fakes: FakeUpstreams) -> None:
    upstreams = Upstreams({"auth": fakes.auth.target, "gone": "127.0.0.1:1"}, timeout_seconds=1.0)
    try:
        assert upstreams.health(0.5) == {"auth": "SERVING", "gone": "UNREACHABLE"}
    finally:
        upstreams.close()
