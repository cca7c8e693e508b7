"""Assembling the auth service: storage, keys, hasher and gRPC server, each made once."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import grpc
from authgate.auth.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from auth_svc.admin import Administration
from auth_svc.admin_servicer import AdminServicer
from auth_svc.audit_retention import AuditPruner
from auth_svc.common_passwords import load_common_passwords
from auth_svc.config import AuthConfig
from auth_svc.hash_limiter import HashLimiter, default_max_concurrent_hashes
from auth_svc.key_reload import KeyReloader
from auth_svc.keys import KeyRing
from auth_svc.metrics import AuthMetrics
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.passwords import PasswordHasher
from auth_svc.repository import (
    AdminRepository,
    AuditRepository,
    RefreshTokenRepository,
    UserRepository,
)
from auth_svc.service import AuthService, Clock, LockoutObserver, utc_now
from auth_svc.servicer import AuthServicer
from auth_svc.tokens import AccessTokenIssuer
from authgate_common.auth_interceptor import AuthInterceptor, CallerIdentity
from authgate_common.db import make_engine, make_sessions, redact_url
from authgate_common.grpc_server import RunningServer, run_until_signalled, start_server
from authgate_common.jwks import JwksCache
from authgate_common.metrics import RpcMetrics
from authgate_common.operations import start_operations
from authgate_common.tokens import VERIFIED_TOKEN_CACHE_SIZE, TokenVerifier

log = logging.getLogger(__name__)

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
# The generated functions have no annotations; these are their real signatures.
_add_auth_servicer = cast(
    Callable[[AuthServicer, grpc.Server], None], auth_pb2_grpc.add_AuthServiceServicer_to_server
)
_add_admin_servicer = cast(
    Callable[[AdminServicer, grpc.Server], None],
    admin_pb2_grpc.add_AdminServiceServicer_to_server,
)
# The verifier reads the ring in process: cheap, so the key set is re-read every second.
_OWN_KEYS_MAX_AGE_SECONDS = 1.0


@dataclass
class AuthServer(RunningServer):
    """A started auth server that also owns its database engine and its key reloader."""

    host: str = "127.0.0.1"
    engine: Engine | None = None
    key_reloader: KeyReloader | None = None

    @property
    def target(self) -> str:
        """Where clients connect, e.g. 127.0.0.1:50051."""
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
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
) -> AuthService:
    sessions = make_sessions(engine)
    return AuthService(
        config,
        users=UserRepository(sessions),
        refresh_tokens=RefreshTokenRepository(sessions),
        passwords=PasswordHasher(config.argon2, limiter=hash_limiter(config)),
        access_tokens=AccessTokenIssuer(
            config.tokens, keys, ttl_seconds=config.access_token_ttl_seconds
        ),
        keys=keys,
        common_passwords=load_common_passwords(),
        clock=clock,
        on_lockout=on_lockout,
    )


def build_administration(engine: Engine, *, clock: Clock = utc_now) -> Administration:
    sessions = make_sessions(engine)
    return Administration(AdminRepository(sessions), AuditRepository(sessions), clock=clock)


def own_token_verifier(config: AuthConfig, keys: KeyRing) -> TokenVerifier:
    """Verifies access tokens as every verifier does, against this service's own public keys."""
    cache = JwksCache(
        lambda: keys.jwks(config.signing_algorithm),
        allowed_algorithms=config.tokens.algorithms,
        cooldown=0.0,
        max_age=_OWN_KEYS_MAX_AGE_SECONDS,
    )
    return TokenVerifier(config.tokens, cache, cache_size=VERIFIED_TOKEN_CACHE_SIZE)


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
        reloader = KeyReloader(keys, config.keys_dir, interval_seconds=config.keys_reload_seconds)
        registry = CollectorRegistry()
        auth_metrics = AuthMetrics(registry)
        service = build_service(config, engine, keys, clock=clock, on_lockout=auth_metrics.lockout)

        caller = CallerIdentity()
        admin = AdminServicer(build_administration(engine, clock=clock), caller, clock=clock)

        def register(server: grpc.Server) -> None:
            _add_auth_servicer(AuthServicer(service), server)
            _add_admin_servicer(admin, server)

        running = start_server(
            config.server,
            register=register,
            service_names=[SERVICE_NAME, ADMIN_SERVICE_NAME],
            # AuthService's RPCs authenticate by password or refresh token; the admin API
            # by access token, with the roles its options require.
            interceptors=[
                AuthInterceptor(
                    own_token_verifier(config, keys),
                    caller,
                    protected_services=[ADMIN_SERVICE_NAME],
                )
            ],
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
    pruner = AuditPruner(
        AuditRepository(make_sessions(engine)),
        retention_days=config.audit_retention_days,
        clock=clock,
    )
    pruner.start()
    running.on_stop.append(pruner.stop)
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
    )


def serve(config: AuthConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully; SIGHUP reloads the signing keys."""
    running = build_server(config)
    reloader = running.key_reloader
    if reloader is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: reloader.trigger())
    run_until_signalled(running, config.server.grace_seconds)
