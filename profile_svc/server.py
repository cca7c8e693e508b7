"""Assembling the profile service: storage, token checks and revocations, on the shared scaffold."""

from __future__ import annotations

import grpc
from authgate.profile.v1 import profile_pb2_grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from authgate_common.channels import open_channel
from authgate_common.db import make_sessions
from authgate_common.grpc_server import RunningServer
from authgate_common.interceptors import AuthInterceptor
from authgate_common.internal import internal_token_settings
from authgate_common.jwks import JwksCache, JwksSource, grpc_jwks_source
from authgate_common.revocation import (
    FeedMetrics,
    RevocationCheck,
    RevocationSet,
    RevocationSubscriber,
)
from authgate_common.service import ServiceParts, build
from authgate_common.tls import channel_credentials
from authgate_common.tokens import VERIFIED_TOKEN_CACHE_SIZE, TokenVerifier
from profile_svc.config import ProfileConfig
from profile_svc.migrations import PROFILE_MIGRATIONS
from profile_svc.profiles import Profiles
from profile_svc.repository import ProfileRepository
from profile_svc.servicer import (
    ADMIN_SERVICE_NAME,
    SERVICE_NAME,
    ProfileAdminServicer,
    ProfileServicer,
)

NAME = "profile_svc"


def build_server(
    config: ProfileConfig,
    *,
    jwks_source: JwksSource | None = None,
    revocations: RevocationCheck | None = None,
) -> RunningServer:
    """A started server; keys and revocations come from the auth service at auth_target.

    A caller giving its own jwks_source (tests with their own issuer) gives its own
    revocation check too, or none. The channel to the auth service and the revocation
    subscriber are made once here and closed on stop.
    """

    def assemble(engine: Engine, registry: CollectorRegistry) -> ServiceParts:
        closers = []
        source = jwks_source
        channel: grpc.Channel | None = None
        if source is None:
            channel = open_channel(
                config.auth_target, credentials=channel_credentials(config.auth_tls)
            )
            closers.append(channel.close)
            source = grpc_jwks_source(channel)
        keys = JwksCache(
            source,
            allowed_algorithms=config.tokens.algorithms,
            cooldown=config.jwks_refetch_cooldown_seconds,
            grace=config.jwks_grace_seconds,
        )
        check = revocations
        if channel is not None:
            feed_channel = channel
            subscriber = RevocationSubscriber(
                lambda: feed_channel,
                RevocationSet(config.revocation),
                keys=keys,
                metrics=FeedMetrics(registry),
                settings=config.revocation,
            )
            subscriber.ensure_started()
            closers.append(subscriber.stop)  # closers run newest first: before the channel
            check = subscriber
        authenticator = AuthInterceptor(
            TokenVerifier(
                config.tokens, keys, cache_size=VERIFIED_TOKEN_CACHE_SIZE, revocations=check
            ),
            protected_services=[SERVICE_NAME],
        )
        # The auth service's calls carry tokens for the internal audience, which the
        # users' verifier refuses (and this one refuses users' tokens).
        internal_authenticator = AuthInterceptor(
            TokenVerifier(internal_token_settings(config.tokens), keys, revocations=check),
            protected_services=[ADMIN_SERVICE_NAME],
        )
        profiles = Profiles(ProfileRepository(make_sessions(engine)))
        servicer = ProfileServicer(profiles, authenticator.caller)
        admin = ProfileAdminServicer(profiles)

        def register(server: grpc.Server) -> None:
            profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)
            profile_pb2_grpc.add_ProfileAdminServiceServicer_to_server(admin, server)

        return ServiceParts(
            register=register,
            service_names=[SERVICE_NAME, ADMIN_SERVICE_NAME],
            interceptors=[authenticator, internal_authenticator],
            closers=closers,
            log_fields={"auth_target": config.auth_target},
        )

    return build(NAME, config, migrations=PROFILE_MIGRATIONS, assemble=assemble)
