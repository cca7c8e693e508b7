"""The profile service's settings table, and its configuration read once from it at start."""

from __future__ import annotations

from dataclasses import dataclass, field

from authgate_common import settings as shared
from authgate_common.config import (
    Env,
    SettingsTable,
    from_setting,
    read_settings,
)
from authgate_common.db_watch import DatabaseCheckSettings
from authgate_common.grpc_server import ServerSettings, ServiceRows
from authgate_common.settings import RevocationSettings
from authgate_common.tls import ClientTls
from authgate_common.tokens import TokenSettings

PROFILE_DATABASE_URL = shared.database_url(
    "PROFILE_DATABASE_URL", "sqlite:///var/profile.db", "SQLAlchemy URL of the profile database"
)
PROFILE_SERVICE = ServiceRows.named("PROFILE", "profile", port=50052, metrics_port=9102)

SETTINGS = SettingsTable.of(
    "profile_svc",
    (PROFILE_DATABASE_URL, *PROFILE_SERVICE.rows),
    shared.VERIFIER,
    shared.GRPC_SERVICE,
)


@dataclass(frozen=True)
class ProfileConfig:
    database_url: str
    server: ServerSettings
    auth_target: str
    tokens: TokenSettings
    jwks_refetch_cooldown_seconds: float = from_setting(shared.JWKS_REFETCH_COOLDOWN_SECONDS)
    log_level: str = from_setting(shared.LOG_LEVEL)
    db_check: DatabaseCheckSettings = field(default_factory=DatabaseCheckSettings)
    # Prometheus /metrics on the gRPC host; None: not served (from_env: 9102 unless "off").
    metrics_port: int | None = None
    # TLS of the channel to the auth service (None: plaintext).
    auth_tls: ClientTls | None = None
    # The revocation feed from the auth service (REVOCATION_MAX_STALENESS_SECONDS).
    revocation: RevocationSettings = field(default_factory=RevocationSettings)
    # Cached keys no longer refreshable are trusted this long past their refresh time.
    jwks_grace_seconds: float = from_setting(shared.JWKS_GRACE_SECONDS)

    def __post_init__(self) -> None:
        shared.JWKS_REFETCH_COOLDOWN_SECONDS.check(self.jwks_refetch_cooldown_seconds)
        shared.LOG_LEVEL.check(self.log_level)

    @classmethod
    def from_env(cls, env: Env) -> ProfileConfig:
        return read_settings(
            cls,
            env,
            database_url=PROFILE_DATABASE_URL.read(env),
            server=PROFILE_SERVICE.server_settings(env),
            auth_target=shared.AUTH_GRPC_TARGET.read(env),
            tokens=TokenSettings.from_env(env),
            db_check=DatabaseCheckSettings.from_env(env),
            metrics_port=PROFILE_SERVICE.metrics_port.read(env),
            auth_tls=ClientTls.from_env(env),
            revocation=RevocationSettings.from_env(env),
        )
