"""Assembling the profile service: storage and token checks, on the shared scaffold."""

from __future__ import annotations

import grpc
from authgate.profile.v1 import profile_pb2_grpc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from authgate_common.channels import open_channel
from authgate_common.db import make_sessions
from authgate_common.grpc_server import RunningServer
from authgate_common.interceptors import AuthInterceptor
from authgate_common.jwks import JwksCache, JwksSource, grpc_jwks_source
from authgate_common.service import ServiceParts, build
from authgate_common.tls import channel_credentials
from authgate_common.tokens import VERIFIED_TOKEN_CACHE_SIZE, TokenVerifier
from profile_svc.config import ProfileConfig
from profile_svc.migrations import PROFILE_MIGRATIONS
from profile_svc.profiles import Profiles
from profile_svc.repository import ProfileRepository
from profile_svc.servicer import SERVICE_NAME, ProfileServicer

NAME = "profile_svc"


def build_server(config: ProfileConfig, *, jwks_source: JwksSource | None = None) -> RunningServer:
    """A started server; the JWKS comes from jwks_source, or else from AuthService.GetJwks.

    The channel to the auth service is made once here and closed on stop.
    """

    def assemble(engine: Engine, _registry: CollectorRegistry) -> ServiceParts:
        closers = []
        source = jwks_source
        if source is None:
            auth_channel = open_channel(
                config.auth_target, credentials=channel_credentials(config.auth_tls)
            )
            closers.append(auth_channel.close)
            source = grpc_jwks_source(auth_channel)
        keys = JwksCache(
            source,
            allowed_algorithms=config.tokens.algorithms,
            cooldown=config.jwks_refetch_cooldown_seconds,
        )
        authenticator = AuthInterceptor(
            TokenVerifier(config.tokens, keys, cache_size=VERIFIED_TOKEN_CACHE_SIZE),
            protected_services=[SERVICE_NAME],
        )
        servicer = ProfileServicer(
            Profiles(ProfileRepository(make_sessions(engine))), authenticator.caller
        )

        def register(server: grpc.Server) -> None:
            profile_pb2_grpc.add_ProfileServiceServicer_to_server(servicer, server)

        return ServiceParts(
            register=register,
            service_names=[SERVICE_NAME],
            interceptors=[authenticator],
            closers=closers,
            log_fields={"auth_target": config.auth_target},
        )

    return build(NAME, config, migrations=PROFILE_MIGRATIONS, assemble=assemble)
