"""Assembling the auth service: storage, keys and hasher, each made once, on the shared scaffold."""

from __future__ import annotations

import signal
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import cast

import grpc
from authgate.auth.v1 import (
    account_pb2_grpc,
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    mfa_pb2,
    mfa_pb2_grpc,
    revocation_pb2,
    revocation_pb2_grpc,
)
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from auth_svc.account_servicer import SERVICE_NAME as ACCOUNT_SERVICE_NAME
from auth_svc.account_servicer import AccountServicer
from auth_svc.admin import Administration
from auth_svc.admin_servicer import AdminServicer
from auth_svc.common_passwords import load_common_passwords
from auth_svc.config import AuthConfig
from auth_svc.hash_limiter import HashLimiter, default_max_concurrent_hashes
from auth_svc.key_reload import KeyReloader
from auth_svc.keys import KeyRing
from auth_svc.metrics import AuthMetrics
from auth_svc.mfa import SecretBox, load_totp_key
from auth_svc.mfa_servicer import MfaServicer
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.passwords import PasswordHasher
from auth_svc.profile_outbox import GrpcProfileDeleter, ProfileDeletionWorker
from auth_svc.repository import (
    AccountRepository,
    AdminRepository,
    AuditRepository,
    MfaRepository,
    ProfileDeletionOutbox,
    RefreshTokenRepository,
    UserRepository,
)
from auth_svc.retention import Pruner
from auth_svc.revocation_feed import RevocationFeed, RevocationServicer
from auth_svc.revocations import RevocationLog, token_lifetime_bound
from auth_svc.second_factor import SecondFactor
from auth_svc.service import AuthService, LockoutObserver
from auth_svc.servicer import AuthServicer
from auth_svc.tokens import AccessTokenIssuer
from authgate_common.channels import open_channel
from authgate_common.clock import Clock, utc_now
from authgate_common.db import make_sessions
from authgate_common.grpc_server import RunningServer
from authgate_common.interceptors import AuthInterceptor
from authgate_common.jwks import JwksCache
from authgate_common.revocation import RevocationCheck
from authgate_common.service import ServiceParts, build
from authgate_common.tls import channel_credentials
from authgate_common.tokens import VERIFIED_TOKEN_CACHE_SIZE, TokenSettings, TokenVerifier

NAME = "auth_svc"
SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
MFA_SERVICE_NAME = mfa_pb2.DESCRIPTOR.services_by_name["MfaService"].full_name
REVOCATION_SERVICE_NAME = revocation_pb2.DESCRIPTOR.services_by_name["RevocationService"].full_name
# The generated functions have no annotations; these are their real signatures.
_add_auth_servicer = cast(
    Callable[[AuthServicer, grpc.Server], None], auth_pb2_grpc.add_AuthServiceServicer_to_server
)
_add_admin_servicer = cast(
    Callable[[AdminServicer, grpc.Server], None],
    admin_pb2_grpc.add_AdminServiceServicer_to_server,
)
_add_account_servicer = cast(
    Callable[[AccountServicer, grpc.Server], None],
    account_pb2_grpc.add_AccountServiceServicer_to_server,
)
_add_mfa_servicer = cast(
    Callable[[MfaServicer, grpc.Server], None], mfa_pb2_grpc.add_MfaServiceServicer_to_server
)
# The verifier reads the ring in process: cheap, so the key set is re-read every second.
_OWN_KEYS_MAX_AGE_SECONDS = 1.0

# A started auth server (`.target` is where clients connect); the name stays for its callers.
AuthServer = RunningServer


def build_service(
    config: AuthConfig,
    engine: Engine,
    keys: KeyRing,
    *,
    clock: Clock = utc_now,
    on_lockout: LockoutObserver = lambda _event: None,
    revocation_log: RevocationLog | None = None,
    on_account_deleted: Callable[[str], None] = lambda _user_id: None,
    second_factor: SecondFactor | None = None,
) -> AuthService:
    sessions = make_sessions(engine)
    if revocation_log is None:
        revocation_log = RevocationLog(sessions, token_lifetime=token_lifetime_bound(config.tokens))
    return AuthService(
        config,
        users=UserRepository(sessions),
        refresh_tokens=RefreshTokenRepository(sessions, revocation_log),
        passwords=PasswordHasher(config.argon2, limiter=hash_limiter(config)),
        access_tokens=AccessTokenIssuer(
            config.tokens,
            keys,
            ttl_seconds=config.access_token_ttl_seconds,
            honoured_iat=revocation_log.first_honoured_iat,
        ),
        keys=keys,
        common_passwords=load_common_passwords(),
        clock=clock,
        on_lockout=on_lockout,
        accounts=AccountRepository(sessions, revocation_log),
        on_account_deleted=on_account_deleted,
        second_factor=(
            build_second_factor(config, engine, clock=clock)
            if second_factor is None
            else second_factor
        ),
    )


def build_second_factor(
    config: AuthConfig, engine: Engine, *, clock: Clock = utc_now
) -> SecondFactor:
    """The TOTP second factor, its secrets sealed with the configured key (generated into
    its file on first start when none is configured)."""
    sessions = make_sessions(engine)
    return SecondFactor(
        repository=MfaRepository(sessions),
        users=UserRepository(sessions),
        box=SecretBox(load_totp_key(config.totp_key, config.totp_key_file)),
        lockout=config.lockout,
        issuer=config.totp_issuer,
        challenge_ttl_seconds=config.mfa_token_ttl_seconds,
        clock=clock,
    )


def build_administration(
    engine: Engine, tokens: TokenSettings, *, clock: Clock = utc_now
) -> Administration:
    """The admin domain on engine; its changes revoke access tokens through the feed."""
    sessions = make_sessions(engine)
    revocations = RevocationLog(sessions, token_lifetime=token_lifetime_bound(tokens))
    return Administration(
        AdminRepository(sessions, revocations), AuditRepository(sessions), clock=clock
    )


def own_token_verifier(
    config: AuthConfig, keys: KeyRing, *, revocations: RevocationCheck | None = None
) -> TokenVerifier:
    """Verifies access tokens as every verifier does, against this service's own public keys
    and the revocations its own feed reads."""
    cache = JwksCache(
        lambda: keys.jwks(config.signing_algorithm),
        allowed_algorithms=config.tokens.algorithms,
        cooldown=0.0,
        max_age=_OWN_KEYS_MAX_AGE_SECONDS,
    )
    return TokenVerifier(
        config.tokens, cache, cache_size=VERIFIED_TOKEN_CACHE_SIZE, revocations=revocations
    )


def hash_limiter(config: AuthConfig) -> HashLimiter:
    return HashLimiter(
        config.max_concurrent_hashes or default_max_concurrent_hashes(config.argon2.memory_kib),
        queue_timeout_seconds=config.hash_queue_timeout_seconds,
    )


def build_server(config: AuthConfig, *, clock: Clock = utc_now) -> RunningServer:
    """A started auth server on config.server (port 0 picks a free port: see `.port`)."""

    def assemble(engine: Engine, registry: CollectorRegistry) -> ServiceParts:
        # Generates a first key into an empty folder.
        keys = KeyRing.load(config.keys_dir, activation_seconds=config.key_activation_seconds)
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
        auth_metrics = AuthMetrics(registry)
        second_factor = build_second_factor(config, engine, clock=clock)
        profile_channel = open_channel(
            config.profile_target, credentials=channel_credentials(config.profile_tls)
        )
        outbox = ProfileDeletionWorker(
            ProfileDeletionOutbox(make_sessions(engine)),
            GrpcProfileDeleter(profile_channel, config.tokens, keys, clock=clock),
            clock=clock,
        )
        service = build_service(
            config,
            engine,
            keys,
            clock=clock,
            on_lockout=auth_metrics.lockout,
            revocation_log=revocation_log,
            on_account_deleted=outbox.notify,
            second_factor=second_factor,
        )
        servicer = AuthServicer(service, jwks_max_age_seconds=config.jwks_max_age_seconds)
        # AuthService's RPCs authenticate by password, refresh token or mfa_token; the
        # admin, account and second-factor APIs by access token (with the roles their
        # options require).
        authenticator = AuthInterceptor(
            own_token_verifier(config, keys, revocations=feed.local),
            protected_services=[ADMIN_SERVICE_NAME, ACCOUNT_SERVICE_NAME, MFA_SERVICE_NAME],
        )
        account = AccountServicer(service, authenticator.caller)
        admin = AdminServicer(
            build_administration(engine, config.tokens, clock=clock),
            authenticator.caller,
            clock=clock,
        )
        pruners = [
            Pruner(
                "audit events",
                AuditRepository(make_sessions(engine)).prune,
                keep=timedelta(days=config.audit_retention_days),
                clock=clock,
            ),
            Pruner(
                "expired sessions",
                RefreshTokenRepository(make_sessions(engine)).prune_sessions,
                keep=token_lifetime_bound(config.tokens),
                clock=clock,
            ),
        ]

        def register(server: grpc.Server) -> None:
            _add_auth_servicer(servicer, server)
            _add_admin_servicer(admin, server)
            _add_account_servicer(account, server)
            _add_mfa_servicer(MfaServicer(second_factor, authenticator.caller), server)
            revocation_pb2_grpc.add_RevocationServiceServicer_to_server(
                RevocationServicer(feed), server
            )

        return ServiceParts(
            register=register,
            service_names=[
                SERVICE_NAME,
                ADMIN_SERVICE_NAME,
                ACCOUNT_SERVICE_NAME,
                MFA_SERVICE_NAME,
                REVOCATION_SERVICE_NAME,
            ],
            interceptors=[authenticator],
            observers=[auth_metrics.observe],
            background=[reloader, *pruners, feed, outbox],
            # The feed's streams never end on their own: end them first, or the stop
            # waits out its whole grace period.
            on_stopping=[feed.stop],
            closers=[profile_channel.close],
            signal_handlers={signal.SIGHUP: reloader.trigger},
            log_fields={"signing_kid": keys.signer.kid},
        )

    return build(NAME, config, migrations=AUTH_MIGRATIONS, assemble=assemble)


def _revoke_keys(revocation_log: RevocationLog, kids: Sequence[str], now: datetime) -> None:
    revocation_log.revoke_keys(kids, now)


def _current_kids(keys: KeyRing, reloader: KeyReloader) -> tuple[str, ...]:
    """The ring's key ids, after reloading at once if a key file was deleted (compromise)."""
    if reloader.key_file_gone():
        reloader.check()
    return keys.kids
