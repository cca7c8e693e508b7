"""Assembling the auth service: storage, keys, hasher and gRPC server, each made once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import grpc
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from sqlalchemy import Engine

from auth_svc.config import AuthConfig
from auth_svc.hash_limiter import HashLimiter, default_max_concurrent_hashes
from auth_svc.keys import KeyRing
from auth_svc.models import metadata
from auth_svc.passwords import PasswordHasher
from auth_svc.repository import RefreshTokenRepository, UserRepository
from auth_svc.service import AuthService, Clock, utc_now
from auth_svc.servicer import AuthServicer
from auth_svc.tokens import AccessTokenIssuer
from authgate_common.db import make_engine, make_sessions, redact_url
from authgate_common.grpc_server import RunningServer, run_until_signalled, start_server

log = logging.getLogger(__name__)

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
# The generated function has no annotations; this is its real signature.
_add_auth_servicer = cast(
    Callable[[AuthServicer, grpc.Server], None], auth_pb2_grpc.add_AuthServiceServicer_to_server
)


@dataclass
class AuthServer(RunningServer):
    """A started auth server that also owns its database engine."""

    host: str = "127.0.0.1"
    engine: Engine | None = None

    @property
    def target(self) -> str:
        """Where clients connect, e.g. 127.0.0.1:50051."""
        return f"{self.host}:{self.port}"

    def stop(self, grace: float | None = None) -> None:
        super().stop(grace)
        if self.engine is not None:
            self.engine.dispose()


def build_service(
    config: AuthConfig, engine: Engine, keys: KeyRing, *, clock: Clock = utc_now
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
        clock=clock,
    )


def hash_limiter(config: AuthConfig) -> HashLimiter:
    return HashLimiter(
        config.max_concurrent_hashes or default_max_concurrent_hashes(config.argon2.memory_kib),
        queue_timeout_seconds=config.hash_queue_timeout_seconds,
    )


def build_server(config: AuthConfig) -> AuthServer:
    """A started auth server on config.server (port 0 picks a free port: see `.port`)."""
    keys = KeyRing.load(config.keys_dir)
    engine = make_engine(config.database_url, pool_size=config.server.max_workers)
    try:
        metadata.create_all(engine)
        service = build_service(config, engine, keys)

        def register(server: grpc.Server) -> None:
            _add_auth_servicer(AuthServicer(service), server)

        running = start_server(config.server, register=register, service_names=[SERVICE_NAME])
    except BaseException:
        engine.dispose()
        raise
    log.info(
        "auth service listening",
        extra={
            "address": f"{config.server.host}:{running.port}",
            "database": redact_url(config.database_url),
            "signing_kid": keys.signer.kid,
        },
    )
    return AuthServer(
        server=running.server,
        port=running.port,
        health=running.health,
        service_names=running.service_names,
        host=config.server.host,
        engine=engine,
    )


def serve(config: AuthConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    running = build_server(config)
    run_until_signalled(running, config.server.grace_seconds)
