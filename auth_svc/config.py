"""The auth service's configuration, read once from the environment at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from auth_svc.hash_limiter import default_max_concurrent_hashes
from auth_svc.lockout import LockoutPolicy
from auth_svc.rules import MAX_PASSWORD_LENGTH
from authgate_common.config import ConfigError, Env
from authgate_common.db_watch import DatabaseCheckSettings
from authgate_common.grpc_server import ServerSettings
from authgate_common.metrics import metrics_port
from authgate_common.tls import ServerTls
from authgate_common.tokens import TokenSettings

# Lifetimes travel as int32 seconds; ten years is far below that limit.
_TEN_YEARS = 10 * 365 * 24 * 3600
_LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


@dataclass(frozen=True)
class Argon2Params:
    """argon2id cost parameters; the defaults are argon2-cffi's (RFC 9106 low-memory profile)."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    @classmethod
    def from_env(cls, env: Env) -> Argon2Params:
        params = cls(
            time_cost=env.int("AUTH_ARGON2_TIME_COST", cls.time_cost, minimum=1, maximum=100),
            memory_kib=env.int(
                "AUTH_ARGON2_MEMORY_KIB", cls.memory_kib, minimum=8, maximum=4 * 1024 * 1024
            ),
            parallelism=env.int("AUTH_ARGON2_PARALLELISM", cls.parallelism, minimum=1, maximum=64),
        )
        if params.memory_kib < 8 * params.parallelism:
            # argon2 itself refuses this; say so at start rather than at the first login.
            raise ConfigError(
                "AUTH_ARGON2_MEMORY_KIB must be at least 8 times AUTH_ARGON2_PARALLELISM"
            )
        return params


@dataclass(frozen=True)
class AuthConfig:
    """Everything the auth service needs to start; made by `from_env` or directly in tests."""

    database_url: str
    keys_dir: Path
    server: ServerSettings
    tokens: TokenSettings
    argon2: Argon2Params = Argon2Params()
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    # Absolute lifetime of a refresh-token family: rotation cannot extend a session past it.
    refresh_family_max_seconds: int = 90 * 24 * 3600
    password_min_length: int = 12
    registration_enabled: bool = True
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    # How often the keys folder is checked for added or removed keys (0: only on SIGHUP).
    keys_reload_seconds: float = 30.0
    log_level: str = "INFO"
    db_check: DatabaseCheckSettings = field(default_factory=DatabaseCheckSettings)
    # Prometheus /metrics on the gRPC host; None: not served (from_env: 9101 unless "off").
    metrics_port: int | None = None
    # Concurrent argon2 hashes (None: hash_limiter.default_max_concurrent_hashes) and how
    # long a login waits for one before RESOURCE_EXHAUSTED.
    max_concurrent_hashes: int | None = None
    hash_queue_timeout_seconds: float = 2.0
    # Audit events older than this many days are deleted (hourly, in the background).
    audit_retention_days: int = 90

    def __post_init__(self) -> None:
        if self.access_token_ttl_seconds > self.tokens.max_lifetime_seconds:
            # Verifiers refuse tokens living longer than that: never issue one.
            raise ConfigError(
                "AUTH_ACCESS_TOKEN_TTL_SECONDS must not exceed JWT_MAX_LIFETIME_SECONDS "
                f"({self.tokens.max_lifetime_seconds})"
            )
        if not 1 <= self.password_min_length <= MAX_PASSWORD_LENGTH:
            raise ConfigError(f"AUTH_PASSWORD_MIN_LENGTH must be 1 to {MAX_PASSWORD_LENGTH}")
        if self.log_level.upper() not in _LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(sorted(_LOG_LEVELS))}")

    @property
    def signing_algorithm(self) -> str:
        """The algorithm new tokens are signed with: the first one verifiers accept."""
        return self.tokens.algorithms[0]

    @classmethod
    def from_env(cls, env: Env) -> AuthConfig:
        argon2 = Argon2Params.from_env(env)
        return cls(
            database_url=env.str("AUTH_DATABASE_URL", "sqlite:///var/auth.db"),
            keys_dir=env.path("AUTH_KEYS_DIR", "var/keys"),
            server=ServerSettings.from_env(
                env,
                host_variable="AUTH_GRPC_HOST",
                port_variable="AUTH_GRPC_PORT",
                default_port=50051,
                tls=ServerTls.from_env(
                    env, cert_variable="AUTH_GRPC_TLS_CERT", key_variable="AUTH_GRPC_TLS_KEY"
                ),
            ),
            tokens=TokenSettings.from_env(env),
            argon2=argon2,
            access_token_ttl_seconds=env.int("AUTH_ACCESS_TOKEN_TTL_SECONDS", 900, minimum=60),
            refresh_token_ttl_seconds=env.int(
                "AUTH_REFRESH_TOKEN_TTL_SECONDS", 30 * 24 * 3600, minimum=60, maximum=_TEN_YEARS
            ),
            refresh_family_max_seconds=env.int(
                "AUTH_REFRESH_FAMILY_MAX_SECONDS", 90 * 24 * 3600, minimum=60, maximum=_TEN_YEARS
            ),
            password_min_length=env.int(
                "AUTH_PASSWORD_MIN_LENGTH", 12, minimum=8, maximum=MAX_PASSWORD_LENGTH
            ),
            registration_enabled=env.bool("AUTH_REGISTRATION_ENABLED", True),
            lockout=LockoutPolicy.from_env(env),
            keys_reload_seconds=env.float("AUTH_KEYS_RELOAD_SECONDS", 30.0),
            log_level=env.str("LOG_LEVEL", "INFO").upper(),
            db_check=DatabaseCheckSettings.from_env(env),
            metrics_port=metrics_port(env, "AUTH_METRICS_PORT", 9101),
            max_concurrent_hashes=env.int(
                "AUTH_MAX_CONCURRENT_HASHES",
                default_max_concurrent_hashes(argon2.memory_kib),
                minimum=1,
                maximum=1024,
            ),
            hash_queue_timeout_seconds=env.float("AUTH_HASH_QUEUE_TIMEOUT_SECONDS", 2.0),
            audit_retention_days=env.int(
                "AUTH_AUDIT_RETENTION_DAYS", 90, minimum=1, maximum=100 * 365
            ),
        )
