"""The profile service's configuration, read once from the environment at start."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from authgate_common.config import ConfigError, Env
from authgate_common.db_watch import DatabaseCheckSettings
from authgate_common.grpc_server import ServerSettings
from authgate_common.metrics import metrics_port
from authgate_common.revocation import RevocationSettings
from authgate_common.tls import ClientTls, ServerTls
from authgate_common.tokens import TokenSettings

DEFAULT_DATABASE_URL = "sqlite:///var/profile.db"
DEFAULT_AUTH_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True)
class ProfileConfig:
    database_url: str
    server: ServerSettings
    auth_target: str
    tokens: TokenSettings
    jwks_refetch_cooldown_seconds: float = 5.0
    log_level: str = "INFO"
    db_check: DatabaseCheckSettings = field(default_factory=DatabaseCheckSettings)
    # Prometheus /metrics on the gRPC host; None: not served (from_env: 9102 unless "off").
    metrics_port: int | None = None
    # TLS of the channel to the auth service (None: plaintext).
    auth_tls: ClientTls | None = None
    # The revocation feed from the auth service (REVOCATION_MAX_STALENESS_SECONDS).
    revocation: RevocationSettings = field(default_factory=RevocationSettings)
    # Cached keys no longer refreshable are trusted this long past their refresh time.
    jwks_grace_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env) -> ProfileConfig:
        return cls(
            database_url=_database_url(env, "PROFILE_DATABASE_URL"),
            server=ServerSettings.from_env(
                env,
                host_variable="PROFILE_GRPC_HOST",
                port_variable="PROFILE_GRPC_PORT",
                default_port=50052,
                tls=ServerTls.from_env(
                    env, cert_variable="PROFILE_GRPC_TLS_CERT", key_variable="PROFILE_GRPC_TLS_KEY"
                ),
            ),
            auth_target=env.str("AUTH_GRPC_TARGET", DEFAULT_AUTH_TARGET),
            tokens=TokenSettings.from_env(env),
            jwks_refetch_cooldown_seconds=env.float("JWKS_REFETCH_COOLDOWN_SECONDS", 5.0),
            log_level=_log_level(env),
            db_check=DatabaseCheckSettings.from_env(env),
            metrics_port=metrics_port(env, "PROFILE_METRICS_PORT", 9102),
            auth_tls=ClientTls.from_env(env),
            revocation=RevocationSettings.from_env(env),
            jwks_grace_seconds=env.float("JWKS_GRACE_SECONDS", 300.0),
        )


def _database_url(env: Env, name: str) -> str:
    url = env.str(name, DEFAULT_DATABASE_URL)
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        # The value may hold a password: never echo it.
        raise ConfigError(f"{name} is not a valid SQLAlchemy database URL") from None
    if backend not in {"sqlite", "mysql"}:
        raise ConfigError(f"{name} must be a sqlite:// or mysql+pymysql:// URL, got {backend}")
    return url


def _log_level(env: Env) -> str:
    level = env.str("LOG_LEVEL", "INFO").upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(f"LOG_LEVEL must be a logging level such as INFO, got {level!r}")
    return level
