"""The auth service's settings table, and its configuration read once from it at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from auth_svc.hash_limiter import default_max_concurrent_hashes
from auth_svc.lockout import LockoutPolicy
from auth_svc.rules import MAX_PASSWORD_LENGTH
from authgate_common import settings as shared
from authgate_common.config import (
    ConfigError,
    Env,
    ReadFromEnv,
    Setting,
    SettingsTable,
    flag,
    from_setting,
    number,
    optional_text,
    optional_whole,
    path,
    read_settings,
    text,
    whole,
)
from authgate_common.db_watch import DatabaseCheckSettings
from authgate_common.grpc_server import ServerSettings, ServiceRows
from authgate_common.tls import ClientTls
from authgate_common.tokens import TokenSettings

# Lifetimes travel as int32 seconds; ten years is far below that limit.
_TEN_YEARS = 10 * 365 * 24 * 3600
_DAY = 86_400


def _lock_seconds(name: str, default: int, doc: str, *, maximum: int = 30 * _DAY) -> Setting[int]:
    """A lock's length or counting window: whole seconds, from one up to `maximum`."""
    return whole(name, default, doc, minimum=1, maximum=maximum, kind="seconds")


# The gateway of `make run`.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8080"

AUTH_DATABASE_URL = shared.database_url(
    "AUTH_DATABASE_URL",
    "sqlite:///var/auth.db",
    "SQLAlchemy URL of the auth database, e.g. `mysql+pymysql://user:pw@host:3306/authgate_auth`",
)
AUTH_SERVICE = ServiceRows.named("AUTH", "auth", port=50051, metrics_port=9101)
AUTH_KEYS_DIR = path(
    "AUTH_KEYS_DIR",
    "var/keys",
    "folder of PEM RSA private keys: all are published in the JWKS, the newest file signs, "
    "`kid` = RFC 7638 thumbprint; a key is generated there (mode 0600) when it has none",
)
AUTH_KEYS_RELOAD_SECONDS = number(
    "AUTH_KEYS_RELOAD_SECONDS",
    30.0,
    "how often the keys folder is checked for rotated keys (`0`: only on `SIGHUP`)",
    maximum=_DAY,
)
AUTH_KEY_ACTIVATION_SECONDS = number(
    "AUTH_KEY_ACTIVATION_SECONDS",
    60.0,
    "a new key is published this long before it signs, so that every replica on the keys "
    "folder, and every verifier's JWKS, knows it first; longer than `AUTH_KEYS_RELOAD_SECONDS` "
    "plus the verifiers' `JWKS_REFETCH_COOLDOWN_SECONDS`",
    maximum=_DAY,
)
AUTH_PUBLIC_URL = optional_text(
    "AUTH_PUBLIC_URL",
    "http(s) URL where clients reach the gateway: the base of the discovery document's "
    "`jwks_uri` (unset: `JWT_ISSUER` when it is a URL, else http://127.0.0.1:8080)",
    kind="URL",
)
AUTH_ACCESS_TOKEN_TTL_SECONDS = whole(
    "AUTH_ACCESS_TOKEN_TTL_SECONDS",
    900,
    "access token lifetime (at most `JWT_MAX_LIFETIME_SECONDS`)",
    minimum=60,
    maximum=_DAY,
    kind="seconds",
)
AUTH_REFRESH_TOKEN_TTL_SECONDS = whole(
    "AUTH_REFRESH_TOKEN_TTL_SECONDS",
    30 * _DAY,
    "refresh token lifetime (30 days); each refresh spends the token and issues a new one",
    minimum=60,
    maximum=_TEN_YEARS,
    kind="seconds",
)
AUTH_REFRESH_FAMILY_MAX_SECONDS = whole(
    "AUTH_REFRESH_FAMILY_MAX_SECONDS",
    90 * _DAY,
    "absolute lifetime of a session (a refresh-token family): rotation cannot extend it",
    minimum=60,
    maximum=_TEN_YEARS,
    kind="seconds",
)
AUTH_PASSWORD_MIN_LENGTH = whole(
    "AUTH_PASSWORD_MIN_LENGTH",
    12,
    "shortest password accepted at registration",
    minimum=8,
    maximum=MAX_PASSWORD_LENGTH,
    kind="characters",
)
AUTH_REGISTRATION_ENABLED = flag(
    "AUTH_REGISTRATION_ENABLED", True, "`false` refuses every registration with `403`"
)
AUTH_LOCKOUT_THRESHOLD = whole(
    "AUTH_LOCKOUT_THRESHOLD",
    LockoutPolicy.threshold,
    "failed logins in a row that lock an account",
    minimum=1,
    maximum=10_000,
)
AUTH_LOCKOUT_BASE_SECONDS = _lock_seconds(
    "AUTH_LOCKOUT_BASE_SECONDS",
    LockoutPolicy.base_seconds,
    "length of the first lock; each further failure doubles it",
    maximum=_DAY,
)
AUTH_LOCKOUT_MAX_SECONDS = _lock_seconds(
    "AUTH_LOCKOUT_MAX_SECONDS",
    LockoutPolicy.max_seconds,
    "longest lock (at least `AUTH_LOCKOUT_BASE_SECONDS`)",
)
AUTH_ACCOUNT_LOCK_THRESHOLD = whole(
    "AUTH_ACCOUNT_LOCK_THRESHOLD",
    LockoutPolicy.account_threshold,
    "failed logins on one account from any addresses within `AUTH_ACCOUNT_LOCK_WINDOW_SECONDS` "
    "that lock it for every address (a distributed attack; the lockout above is per address)",
    minimum=1,
    maximum=1_000_000,
)
AUTH_ACCOUNT_LOCK_WINDOW_SECONDS = _lock_seconds(
    "AUTH_ACCOUNT_LOCK_WINDOW_SECONDS",
    LockoutPolicy.account_window_seconds,
    "window in which `AUTH_ACCOUNT_LOCK_THRESHOLD` failures are counted",
)
AUTH_ACCOUNT_LOCK_SECONDS = _lock_seconds(
    "AUTH_ACCOUNT_LOCK_SECONDS",
    LockoutPolicy.account_lock_seconds,
    "length of an account-wide lock",
)
AUTH_TOTP_KEY = optional_text(
    "AUTH_TOTP_KEY",
    "base64 of the 32-byte AES-256-GCM key that encrypts TOTP secrets at rest "
    "(unset: read from `AUTH_TOTP_KEY_FILE`)",
    kind="base64",
)
AUTH_TOTP_KEY_FILE = path(
    "AUTH_TOTP_KEY_FILE",
    "var/totp.key",
    "file holding the TOTP encryption key (base64 of 32 bytes) when `AUTH_TOTP_KEY` is unset; "
    "generated there (mode 0600) on first start when missing",
)
AUTH_TOTP_ISSUER = text(
    "AUTH_TOTP_ISSUER", "authgate", "issuer named in the otpauth:// URI of a TOTP enrolment"
)
AUTH_MFA_TOKEN_TTL_SECONDS = whole(
    "AUTH_MFA_TOKEN_TTL_SECONDS",
    300,
    "how long the `mfa_token` of a login waiting for its second factor is valid",
    minimum=10,
    maximum=3600,
    kind="seconds",
)

# argon2id: OWASP's minimum cost (Password Storage Cheat Sheet) as (memory KiB, passes);
# more memory allows fewer passes. Anything below the curve is refused.
OWASP_ARGON2ID_MINIMUMS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))
AUTH_ARGON2_TIME_COST = whole(
    "AUTH_ARGON2_TIME_COST",
    3,
    "argon2id passes; with `AUTH_ARGON2_MEMORY_KIB` at least OWASP's minimum "
    "(47104 KiB x 1, 19456 x 2, 12288 x 3, 9216 x 4, 7168 x 5)",
    minimum=1,
    maximum=100,
)
AUTH_ARGON2_MEMORY_KIB = whole(
    "AUTH_ARGON2_MEMORY_KIB",
    65536,
    "argon2id memory per hash (see `AUTH_ARGON2_TIME_COST` for the minimum)",
    minimum=OWASP_ARGON2ID_MINIMUMS[-1][0],
    maximum=4 * 1024 * 1024,
    kind="KiB",
)
AUTH_ARGON2_PARALLELISM = whole(
    "AUTH_ARGON2_PARALLELISM", 4, "argon2id lanes", minimum=1, maximum=64
)
AUTH_MAX_CONCURRENT_HASHES = optional_whole(
    "AUTH_MAX_CONCURRENT_HASHES",
    "argon2 hashes running at once (each holds `AUTH_ARGON2_MEMORY_KIB`): a login flood "
    "cannot exhaust memory",
    default_doc="2 per core, at most 1 GiB of argon2 memory",
    minimum=1,
    maximum=1024,
)
AUTH_HASH_QUEUE_TIMEOUT_SECONDS = number(
    "AUTH_HASH_QUEUE_TIMEOUT_SECONDS",
    2.0,
    "how long a login or register waits for a hash slot before `429` with `Retry-After`",
    maximum=60.0,
)
AUTH_AUDIT_RETENTION_DAYS = whole(
    "AUTH_AUDIT_RETENTION_DAYS",
    90,
    "audit events older than this are deleted (hourly, in batches, off the request path)",
    minimum=1,
    maximum=100 * 365,
    kind="days",
)

SETTINGS = SettingsTable.of(
    "auth_svc",
    (AUTH_DATABASE_URL, *AUTH_SERVICE.rows),
    (AUTH_KEYS_DIR, AUTH_KEYS_RELOAD_SECONDS, AUTH_KEY_ACTIVATION_SECONDS),
    (AUTH_PUBLIC_URL,),
    (AUTH_ACCESS_TOKEN_TTL_SECONDS, AUTH_REFRESH_TOKEN_TTL_SECONDS),
    (AUTH_REFRESH_FAMILY_MAX_SECONDS, AUTH_PASSWORD_MIN_LENGTH, AUTH_REGISTRATION_ENABLED),
    (AUTH_LOCKOUT_THRESHOLD, AUTH_LOCKOUT_BASE_SECONDS, AUTH_LOCKOUT_MAX_SECONDS),
    (AUTH_ACCOUNT_LOCK_THRESHOLD, AUTH_ACCOUNT_LOCK_WINDOW_SECONDS, AUTH_ACCOUNT_LOCK_SECONDS),
    (AUTH_TOTP_KEY, AUTH_TOTP_KEY_FILE, AUTH_TOTP_ISSUER, AUTH_MFA_TOKEN_TTL_SECONDS),
    (AUTH_ARGON2_TIME_COST, AUTH_ARGON2_MEMORY_KIB, AUTH_ARGON2_PARALLELISM),
    (AUTH_MAX_CONCURRENT_HASHES, AUTH_HASH_QUEUE_TIMEOUT_SECONDS),
    (AUTH_AUDIT_RETENTION_DAYS, shared.PROFILE_GRPC_TARGET),
    shared.GRPC_SERVICE,
)


@dataclass(frozen=True)
class Argon2Params(ReadFromEnv):
    """argon2id cost parameters; the defaults are argon2-cffi's (RFC 9106 low-memory profile).

    Parameters below OWASP's minimum are refused however they are made.
    """

    time_cost: int = from_setting(AUTH_ARGON2_TIME_COST)
    memory_kib: int = from_setting(AUTH_ARGON2_MEMORY_KIB)
    parallelism: int = from_setting(AUTH_ARGON2_PARALLELISM)

    def __post_init__(self) -> None:
        AUTH_ARGON2_TIME_COST.check(self.time_cost)
        AUTH_ARGON2_MEMORY_KIB.check(self.memory_kib)
        AUTH_ARGON2_PARALLELISM.check(self.parallelism)
        needed = minimum_argon2_memory_kib(self.time_cost)
        if self.memory_kib < needed:
            raise ConfigError(
                f"AUTH_ARGON2_MEMORY_KIB must be at least {needed} with AUTH_ARGON2_TIME_COST "
                f"{self.time_cost} (OWASP's argon2id minimum), got {self.memory_kib}"
            )


def minimum_argon2_memory_kib(time_cost: int) -> int:
    """The least memory (KiB) OWASP accepts for argon2id with time_cost passes."""
    return min(memory for memory, passes in OWASP_ARGON2ID_MINIMUMS if passes <= time_cost)


@dataclass(frozen=True)
class AuthConfig:
    """Everything the auth service needs to start; made by `from_env` or directly in tests."""

    database_url: str
    keys_dir: Path
    server: ServerSettings
    tokens: TokenSettings
    argon2: Argon2Params = Argon2Params()
    access_token_ttl_seconds: int = from_setting(AUTH_ACCESS_TOKEN_TTL_SECONDS)
    refresh_token_ttl_seconds: int = from_setting(AUTH_REFRESH_TOKEN_TTL_SECONDS)
    # Absolute lifetime of a refresh-token family: rotation cannot extend a session past it.
    refresh_family_max_seconds: int = from_setting(AUTH_REFRESH_FAMILY_MAX_SECONDS)
    password_min_length: int = from_setting(AUTH_PASSWORD_MIN_LENGTH)
    registration_enabled: bool = from_setting(AUTH_REGISTRATION_ENABLED)
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)
    # How often the keys folder is checked for added or removed keys (0: only on SIGHUP).
    keys_reload_seconds: float = from_setting(AUTH_KEYS_RELOAD_SECONDS)
    # A new key is published this long before it signs (publish before sign: every
    # replica sharing the keys folder knows it by then); see auth_svc.keys.
    key_activation_seconds: float = from_setting(AUTH_KEY_ACTIVATION_SECONDS)
    # Where clients reach the gateway (the base of the discovery document's jwks_uri);
    # "": the issuer when it is an http(s) URL, else the `make run` gateway.
    public_url: str = ""
    log_level: str = from_setting(shared.LOG_LEVEL)
    db_check: DatabaseCheckSettings = field(default_factory=DatabaseCheckSettings)
    # Prometheus /metrics on the gRPC host; None: not served (from_env: 9101 unless "off").
    metrics_port: int | None = None
    # Concurrent argon2 hashes (None: hash_limiter.default_max_concurrent_hashes) and how
    # long a login waits for one before RESOURCE_EXHAUSTED.
    max_concurrent_hashes: int | None = None
    hash_queue_timeout_seconds: float = from_setting(AUTH_HASH_QUEUE_TIMEOUT_SECONDS)
    # Audit events older than this many days are deleted (hourly, in the background).
    audit_retention_days: int = from_setting(AUTH_AUDIT_RETENTION_DAYS)
    # The profile service, which the outbox of account deletions is drained to, and the
    # TLS of the channel to it (None: plaintext).
    profile_target: str = from_setting(shared.PROFILE_GRPC_TARGET)
    profile_tls: ClientTls | None = None
    # The AES-GCM key of TOTP secrets at rest: base64 text, or (when "") the file's.
    totp_key: str = ""
    totp_key_file: Path = AUTH_TOTP_KEY_FILE.default
    totp_issuer: str = from_setting(AUTH_TOTP_ISSUER)
    mfa_token_ttl_seconds: int = from_setting(AUTH_MFA_TOKEN_TTL_SECONDS)

    def __post_init__(self) -> None:
        if self.access_token_ttl_seconds > self.tokens.max_lifetime_seconds:
            # Verifiers refuse tokens living longer than that: never issue one.
            raise ConfigError(
                "AUTH_ACCESS_TOKEN_TTL_SECONDS must not exceed JWT_MAX_LIFETIME_SECONDS "
                f"({self.tokens.max_lifetime_seconds})"
            )
        AUTH_PASSWORD_MIN_LENGTH.check(self.password_min_length)
        AUTH_KEY_ACTIVATION_SECONDS.check(self.key_activation_seconds)
        shared.LOG_LEVEL.check(self.log_level)
        if self.public_url and not self.public_url.startswith(("https://", "http://")):
            raise ConfigError(
                "AUTH_PUBLIC_URL must be an http(s) URL, e.g. https://auth.example.com"
            )

    @property
    def jwks_uri(self) -> str:
        """The absolute URL of the JWK Set, for the discovery document."""
        base = self.public_url
        if not base:
            issuer = self.tokens.issuer
            base = issuer if issuer.startswith(("https://", "http://")) else DEFAULT_PUBLIC_URL
        return base.rstrip("/") + "/.well-known/jwks.json"

    @property
    def jwks_max_age_seconds(self) -> int:
        """How long a JWK Set may be cached: a cache fetched just before a new key was
        published must expire before that key signs (see auth_svc.keys)."""
        return max(0, int(self.key_activation_seconds - self.keys_reload_seconds))

    @property
    def signing_algorithm(self) -> str:
        """The algorithm new tokens are signed with: the first one verifiers accept."""
        return self.tokens.algorithms[0]

    @classmethod
    def from_env(cls, env: Env) -> AuthConfig:
        argon2 = Argon2Params.from_env(env)
        concurrent_hashes = AUTH_MAX_CONCURRENT_HASHES.read(env)
        return read_settings(
            cls,
            env,
            database_url=AUTH_DATABASE_URL.read(env),
            keys_dir=AUTH_KEYS_DIR.read(env),
            server=AUTH_SERVICE.server_settings(env),
            tokens=TokenSettings.from_env(env),
            argon2=argon2,
            lockout=LockoutPolicy(
                threshold=AUTH_LOCKOUT_THRESHOLD.read(env),
                base_seconds=AUTH_LOCKOUT_BASE_SECONDS.read(env),
                max_seconds=AUTH_LOCKOUT_MAX_SECONDS.read(env),
                account_threshold=AUTH_ACCOUNT_LOCK_THRESHOLD.read(env),
                account_window_seconds=AUTH_ACCOUNT_LOCK_WINDOW_SECONDS.read(env),
                account_lock_seconds=AUTH_ACCOUNT_LOCK_SECONDS.read(env),
            ),
            totp_key=AUTH_TOTP_KEY.read(env) or "",
            totp_key_file=AUTH_TOTP_KEY_FILE.read(env),
            public_url=(AUTH_PUBLIC_URL.read(env) or "").strip(),
            db_check=DatabaseCheckSettings.from_env(env),
            metrics_port=AUTH_SERVICE.metrics_port.read(env),
            max_concurrent_hashes=concurrent_hashes
            or default_max_concurrent_hashes(argon2.memory_kib),
            profile_tls=ClientTls.from_env(env),
        )


def key_retirement_seconds(env: Env) -> int:
    """How long after a key stops signing its last token may still be accepted.

    A retired key may still sign until the service notices the new one, and its
    tokens live a TTL more, plus the verifiers' leeway.
    """
    return (
        AUTH_ACCESS_TOKEN_TTL_SECONDS.read(env)
        + shared.JWT_LEEWAY_SECONDS.read(env)
        + int(AUTH_KEYS_RELOAD_SECONDS.read(env))
        + 1
    )
