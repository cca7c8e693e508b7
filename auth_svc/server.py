"""Assembling the auth service: storage, keys, hasher and gRPC server, each made once."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import grpc
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc, revocation_pb2, revocation_pb2_grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from auth_svc.common_passwords import load_common_passwords
from auth_svc.config import AuthConfig
from auth_svc.hash_limiter import HashLimiter, default_max_concurrent_hashes
from auth_svc.key_reload import KeyReloader
from auth_svc.keys import KeyRing
from auth_svc.metrics import AuthMetrics
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.passwords import PasswordHasher
from auth_svc.repository import RefreshTokenRepository, UserRepository
from auth_svc.revocation_feed import RevocationFeed, RevocationServicer
from auth_svc.revocations import RevocationLog, token_lifetime_bound
from auth_svc.service import AuthService, Clock, LockoutObserver, utc_now
from auth_svc.servicer import AuthServicer
from auth_svc.tokens import AccessTokenIssuer
from authgate_common.db import make_engine, make_sessions, redact_url
from authgate_common.grpc_server import RunningServer, run_until_signalled, start_server
from authgate_common.metrics import RpcMetrics
from authgate_common.operations import start_operations

log = logging.getLogger(__name__)

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
REVOCATION_SERVICE_NAME = revocation_pb2.DESCRIPTOR.services_by_name["RevocationService"].full_name
# The generated function has no annotations; this is its real signature.
_add_auth_servicer = cast(
    Callable[[AuthServicer, grpc.Server], None], auth_pb2_grpc.add_AuthServiceServicer_to_server
)


@dataclass
class AuthServer(RunningServer):
    """A started auth server that also owns its database engine and its key reloader."""

    host: str = "127.0.0.1"
    engine: Engine | None = None
    key_reloader: KeyReloader | None = None
    revocation_feed: RevocationFeed | None = None
    revocation_log: RevocationLog | None = None

    @property
    def target(self) -> str:
        """Where clients connect, e.g. 127.0.0.1:50051."""
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        if self.revocation_feed is not None:
            # The streams never end on their own: end them first, or stop waits out grace.
            self.revocation_feed.stop()
        super().stop(grace)
        if self.engine is not None:
            self.engine.dispose()


def build_service(
    config: AuthConfig,
    engine: Engine,
    keys: KeyRing,
    *,
    clock: Clock = utc_now,
    on_lockout: LockoutObserver = lambda _event: None,
    revocation_log: RevocationLog | None = None,
) -> AuthService:
    sessions = make_sessions(engine)
    return AuthService(
        config,
        users=UserRepository(sessions),
        refresh_tokens=RefreshTokenRepository(sessions),
        passwords=PasswordHasher(config.argon2, limiter=hash_limiter(config)),
        access_tokens=AccessTokenIssuer(
            config.tokens,
            keys,
            ttl_seconds=config.access_token_ttl_seconds,
            honoured_iat=None if revocation_log is None else revocation_log.first_honoured_iat,
        ),
        keys=keys,
        common_passwords=load_common_passwords(),
        clock=clock,
        on_lockout=on_lockout,
    )


def hash_limiter(config: AuthConfig) -> HashLimiter:
    return HashLimiter(
        config.max_concurrent_hashes or default_max_concurrent_hashes(config.argon2.memory_kib),
        queue_timeout_seconds=config.hash_queue_timeout_seconds,
    )


def build_server(config: AuthConfig, *, clock: Clock = utc_now) -> AuthServer:
    """A started auth server on config.server (port 0 picks a free port: see `.port`)."""
    engine = make_engine(config.database_url, pool_size=config.server.max_workers)
    try:
        # Before the keys: a service that will not start must not generate a key either.
        AUTH_MIGRATIONS.require_current(engine)  # `make migrate` creates and updates tables
        keys = KeyRing.load(config.keys_dir)
        revocation_log = RevocationLog(
            make_sessions(engine), token_lifetime=token_lifetime_bound(config.tokens)
        )
        reloader = KeyReloader(
            keys,
            config.keys_dir,
            interval_seconds=config.keys_reload_seconds,
            on_removed=lambda kids: _revoke_keys(revocation_log, kids, clock()),
        )
        feed = RevocationFeed(
            revocation_log,
            lambda: _current_kids(keys, reloader),
            # Each stream holds a server thread: leave at least half for the unary RPCs.
            max_subscribers=max(1, config.server.max_workers // 2),
            clock=clock,
        )
        registry = CollectorRegistry()
        auth_metrics = AuthMetrics(registry)
        service = build_service(
            config,
            engine,
            keys,
            clock=clock,
            on_lockout=auth_metrics.lockout,
            revocation_log=revocation_log,
        )

        def register(server: grpc.Server) -> None:
            _add_auth_servicer(AuthServicer(service), server)
            revocation_pb2_grpc.add_RevocationServiceServicer_to_server(
                RevocationServicer(feed), server
            )

        running = start_server(
            config.server,
            register=register,
            service_names=[SERVICE_NAME, REVOCATION_SERVICE_NAME],
            observers=[RpcMetrics(registry).observe, auth_metrics.observe],
        )
        start_operations(
            running,
            engine,
            registry=registry,
            host=config.server.host,
            metrics_port=config.metrics_port,
            db_check=config.db_check,
            name="auth",
        )
    except BaseException:
        engine.dispose()
        raise
    reloader.start()
    running.on_stop.append(reloader.stop)
    feed.start()
    log.info(
        "auth service listening",
        extra={
            "address": f"{config.server.host}:{running.port}",
            "database": redact_url(config.database_url),
            "signing_kid": keys.signer.kid,
            "metrics_port": running.metrics_port,
        },
    )
    return AuthServer(
        server=running.server,
        port=running.port,
        health=running.health,
        service_names=running.service_names,
        on_stop=running.on_stop,
        metrics_port=running.metrics_port,
        host=config.server.host,
        engine=engine,
        key_reloader=reloader,
        revocation_feed=feed,
        revocation_log=revocation_log,
    )


def _revoke_keys(revocation_log: RevocationLog, kids: Sequence[str], now: datetime) -> None:
    revocation_log.revoke_keys(kids, now)


def _current_kids(keys: KeyRing, reloader: KeyReloader) -> tuple[str, ...]:
    """The ring's key ids, after reloading at once if a key file was deleted (compromise)."""
    if reloader.key_file_gone():
        reloader.check()
    return keys.kids


def serve(config: AuthConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully; SIGHUP reloads the signing keys."""
    running = build_server(config)
    reloader = running.key_reloader
    if reloader is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reloader.trigger())
    run_until_signalled(running, config.server.grace_seconds)
