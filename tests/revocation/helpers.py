"""Verifiers subscribed to a real auth server's revocation feed, and users to revoke."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from sqlalchemy import Engine

from auth_svc.revocations import RevocationLog
from authgate_common.db import make_sessions
from authgate_common.jwks import JwksCache, grpc_jwks_source
from authgate_common.revocation import RevocationSet, RevocationSubscriber
from authgate_common.settings import RevocationSettings
from authgate_common.tokens import InvalidToken, TokenSettings, TokenVerifier

PASSWORD = "correct horse battery staple"
TIMEOUT = 10


@dataclass
class SubscribedVerifier:
    verifier: TokenVerifier
    subscriber: RevocationSubscriber
    keys: JwksCache
    channel: grpc.Channel

    def close(self) -> None:
        self.subscriber.stop()
        self.channel.close()

    def refusal(self, token: str) -> str | None:
        """The reason the token is refused now, or None when it is accepted."""
        try:
            self.verifier.verify(token)
        except InvalidToken as exc:
            return exc.reason
        return None

    def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait, woken by each event the feed delivers, until condition holds or timeout."""
        with self.subscriber.applied:
            return self.subscriber.applied.wait_for(condition, timeout)


def subscribe(
    target: str,
    settings: TokenSettings,
    *,
    revocation: RevocationSettings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SubscribedVerifier:
    revocation = revocation or RevocationSettings()
    channel = grpc.insecure_channel(target)
    keys = JwksCache(grpc_jwks_source(channel), allowed_algorithms=settings.algorithms)
    subscriber = RevocationSubscriber(
        lambda: channel,
        RevocationSet(revocation, clock=clock),
        keys=keys,
        settings=revocation,
        max_backoff_seconds=0.2,
    )
    verifier = TokenVerifier(settings, keys, cache_size=64, revocations=subscriber)
    subscriber.ensure_started()
    assert subscriber.connected.wait(5), "the feed did not connect"
    return SubscribedVerifier(verifier, subscriber, keys, channel)


def auth_stub(channel: grpc.Channel) -> Any:
    return auth_pb2_grpc.AuthServiceStub(channel)


def register_and_login(stub: Any, username: str) -> tuple[str, Any]:
    """A new user's id and its login's TokenResponse."""
    user = stub.Register(
        auth_pb2.RegisterRequest(username=username, password=PASSWORD), timeout=TIMEOUT
    )
    login = stub.Login(auth_pb2.LoginRequest(username=username, password=PASSWORD), timeout=TIMEOUT)
    return user.user_id, login


def revoke_user(log: RevocationLog, engine: Engine, user_id: str, **options: Any) -> int:
    """What the admin code does: the change and its revocation in one transaction."""
    with make_sessions(engine).begin() as session:
        return log.revoke_user(session, user_id, reason="test", at=datetime.now(UTC), **options)


def revoke_session(log: RevocationLog, engine: Engine, user_id: str, session_id: str) -> int:
    with make_sessions(engine).begin() as session:
        return log.revoke_session(session, user_id, session_id, reason="test", at=datetime.now(UTC))


class ManualClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
