"""Assembling the profile service from its configuration: storage, token checks, gRPC server."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
from authgate.profile.v1 import profile_pb2_grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from authgate_common.channels import open_channel
from authgate_common.db import make_engine, make_sessions, redact_url
from authgate_common.grpc_server import RunningServer, run_until_signalled, start_server
from authgate_common.jwks import JwksCache, JwksSource, grpc_jwks_source
from authgate_common.metrics import RpcMetrics
from authgate_common.operations import start_operations
from authgate_common.revocation import (
    FeedMetrics,
    RevocationCheck,
    RevocationSet,
    RevocationSubscriber,
)
from authgate_common.tls import channel_credentials
from authgate_common.tokens import VERIFIED_TOKEN_CACHE_SIZE, TokenVerifier
from profile_svc.config import ProfileConfig
from profile_svc.interceptor import AuthInterceptor, CallerIdentity
from profile_svc.migrations import PROFILE_MIGRATIONS
from profile_svc.profiles import Profiles
from profile_svc.repository import ProfileRepository
from profile_svc.servicer import SERVICE_NAME, ProfileServicer

log = logging.getLogger(__name__)


def build_server(
    config: ProfileConfig,
    *,
    jwks_source: JwksSource | None = None,
    revocations: RevocationCheck | None = None,
) -> RunningServer:
    """A started server; keys and revocations come from the auth service at auth_target.

    A caller giving its own jwks_source (tests with their own issuer) gives its own
    revocation check too, or none. The engine, the channel to the auth service and the
    revocation subscriber are made once here and closed on stop.
    """
    engine = make_engine(config.database_url, pool_size=config.server.max_workers)
    auth_channel: grpc.Channel | None = None
    registry = CollectorRegistry()
    subscriber: RevocationSubscriber | None = None
    try:
        PROFILE_MIGRATIONS.require_current(engine)  # `make migrate` creates and updates tables
        own_keys = jwks_source is None
        if jwks_source is None:
            auth_channel = open_channel(
                config.auth_target, credentials=channel_credentials(config.auth_tls)
            )
            jwks_source = grpc_jwks_source(auth_channel)
        keys = JwksCache(
            jwks_source,
            allowed_algorithms=config.tokens.algorithms,
            cooldown=config.jwks_refetch_cooldown_seconds,
            grace=config.jwks_grace_seconds,
        )
        if own_keys and auth_channel is not None:
            channel = auth_channel
            subscriber = RevocationSubscriber(
                lambda: channel,
                RevocationSet(config.revocation),
                keys=keys,
                metrics=FeedMetrics(registry),
                settings=config.revocation,
            )
            subscriber.ensure_started()
            revocations = subscriber
        caller = CallerIdentity()
        servicer = ProfileServicer(Profiles(ProfileRepository(make_sessions(engine))), caller)
        interceptor = AuthInterceptor(
            TokenVerifier(
                config.tokens,
                keys,
                cache_size=VERIFIED_TOKEN_CACHE_SIZE,
                revocations=revocations,
            ),
            caller,
            protected_services=[SERVICE_NAME],
        )
        running = start_server(
            config.server,
            register=_registering(servicer),
            service_names=[SERVICE_NAME],
            interceptors=[interceptor],
            observers=[RpcMetrics(registry).observe],
        )
    except BaseException:
        _close(engine, auth_channel, subscriber)
        raise
    running.on_stop.append(lambda: _close(engine, auth_channel, subscriber))
    start_operations(
        running,
        engine,
        registry=registry,
        host=config.server.host,
        metrics_port=config.metrics_port,
        db_check=config.db_check,
        name="profile",
    )
    log.info(
        "profile service started",
        extra={
            "address": f"{config.server.host}:{running.port}",
            "database": redact_url(config.database_url),
            "auth_target": config.auth_target,
            "metrics_port": running.metrics_port,
        },
    )
    return running


def _registering(servicer: ProfileServicer) -> Callable[[grpc.Server], None]:
    def register(server: grpc.Server) -> None:
        profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)

    return register


def _close(
    engine: Engine, channel: grpc.Channel | None, subscriber: RevocationSubscriber | None
) -> None:
    if subscriber is not None:
        subscriber.stop()
    if channel is not None:
        channel.close()
    engine.dispose()


def serve(config: ProfileConfig) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    running = build_server(config)
    run_until_signalled(running, config.server.grace_seconds)
