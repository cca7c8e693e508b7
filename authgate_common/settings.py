"""The settings more than one process reads, declared once; each process's table lists them.

Read where they are consumed: tokens (TokenSettings.from_env), gRPC serving
(ServerSettings.from_env), TLS (authgate_common.tls), the database check
(DatabaseCheckSettings.from_env), logging (each process's config).
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate_common.config import (
    ReadFromEnv,
    Setting,
    SettingsTable,
    from_setting,
    names,
    number,
    optional_path,
    text,
    whole,
)

# --- access tokens: the same for the issuer and every verifier ---

JWT_ISSUER = text("JWT_ISSUER", "authgate", "`iss` of access tokens; the same in every process")
JWT_AUDIENCE = text(
    "JWT_AUDIENCE", "authgate-api", "`aud` of access tokens; the same in every process"
)
JWT_ALGORITHMS_SUPPORTED = ("RS256", "RS384", "RS512")
JWT_ALGORITHMS = names(
    "JWT_ALGORITHMS",
    ("RS256",),
    "accepted signature algorithms; the first one signs. `none`, HS* and the rest are refused",
    choices=JWT_ALGORITHMS_SUPPORTED,
)
JWT_LEEWAY_SECONDS = whole(
    "JWT_LEEWAY_SECONDS",
    30,
    "clock skew allowed on `exp`, `nbf` and `iat`",
    minimum=0,
    maximum=300,
    kind="seconds",
)
JWT_MAX_LIFETIME_SECONDS = whole(
    "JWT_MAX_LIFETIME_SECONDS",
    3600,
    "verifiers refuse tokens living longer (`exp - iat`); the issuer never issues one",
    minimum=60,
    maximum=24 * 3600,
    kind="seconds",
)
TOKENS = (JWT_ISSUER, JWT_AUDIENCE, JWT_ALGORITHMS, JWT_LEEWAY_SECONDS, JWT_MAX_LIFETIME_SECONDS)

# --- verifiers of access tokens (gateway, profile_svc) ---

AUTH_GRPC_TARGET = text(
    "AUTH_GRPC_TARGET",
    "127.0.0.1:50051",
    "where to reach the auth service (`host:port`, or any gRPC target such as `dns:///auth:50051`)",
)
# --- callers of the profile service (gateway; auth_svc, for account deletions) ---

PROFILE_GRPC_TARGET = text(
    "PROFILE_GRPC_TARGET", "127.0.0.1:50052", "where to reach the profile service"
)

JWKS_REFETCH_COOLDOWN_SECONDS = number(
    "JWKS_REFETCH_COOLDOWN_SECONDS",
    5.0,
    "least time between two JWKS fetches triggered by an unknown `kid` (a flood of made-up "
    "`kid`s costs one fetch per cooldown, so it cannot be 0)",
    minimum=0.1,
    maximum=300.0,
)
JWKS_GRACE_SECONDS = number(
    "JWKS_GRACE_SECONDS",
    300.0,
    "keys a verifier can no longer refresh (auth unreachable) are trusted this long past "
    "their last refresh or feed confirmation, then refused",
    minimum=0.0,
    maximum=86_400.0,
)
REVOCATION_MAX_STALENESS_SECONDS = number(
    "REVOCATION_MAX_STALENESS_SECONDS",
    30.0,
    "a verifier whose revocation feed has been silent longer than this refuses tokens "
    "(`503`) and is not ready, rather than honour revoked ones",
    minimum=2.0,
    maximum=3600.0,
)


@dataclass(frozen=True)
class RevocationSettings(ReadFromEnv):
    """How long a verifier trusts what it knows when the feed is silent."""

    max_staleness_seconds: float = from_setting(REVOCATION_MAX_STALENESS_SECONDS)
    # How long a request waits for the first snapshot of a just started process.
    initial_sync_seconds: float = 2.0
    # A stream is re-opened (resuming) at least this often, so it has a deadline.
    stream_seconds: float = 600.0

    def __post_init__(self) -> None:
        REVOCATION_MAX_STALENESS_SECONDS.check(self.max_staleness_seconds)


VERIFIER = (
    AUTH_GRPC_TARGET,
    JWKS_REFETCH_COOLDOWN_SECONDS,
    JWKS_GRACE_SECONDS,
    REVOCATION_MAX_STALENESS_SECONDS,
)

# --- logging ---

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_LEVEL = text(
    "LOG_LEVEL",
    "INFO",
    "log level (any case); logs are JSON lines on stderr",
    choices=LOG_LEVELS,
    upper=True,
    allowed=", ".join(LOG_LEVELS),
)

# --- gRPC serving, the same knobs for both services ---

GRPC_MAX_WORKERS = whole(
    "GRPC_MAX_WORKERS", 16, "threads serving gRPC calls", minimum=1, maximum=1024
)
GRPC_MAX_CONCURRENT_RPCS = whole(
    "GRPC_MAX_CONCURRENT_RPCS",
    256,
    "calls beyond this many at once are refused at once with `RESOURCE_EXHAUSTED` (the "
    "gateway answers `429`) instead of queueing; `0`: no limit",
    minimum=0,
    maximum=100_000,
)
GRPC_MAX_MESSAGE_BYTES = whole(
    "GRPC_MAX_MESSAGE_BYTES",
    1024 * 1024,
    "largest request or response message",
    minimum=1024,
    maximum=64 * 1024 * 1024,
    kind="bytes",
)
GRPC_GRACE_SECONDS = number(
    "GRPC_GRACE_SECONDS",
    10.0,
    "on SIGTERM/SIGINT: stop taking calls, let in-flight ones finish within this, then exit 0",
)
GRPC_KEEPALIVE_TIME_SECONDS = number(
    "GRPC_KEEPALIVE_TIME_SECONDS",
    60.0,
    "the server pings a connection quiet this long ...",
    above=True,
)
GRPC_KEEPALIVE_TIMEOUT_SECONDS = number(
    "GRPC_KEEPALIVE_TIMEOUT_SECONDS",
    20.0,
    "... and closes it when the ping is not answered within this",
    above=True,
)
GRPC_MAX_CONNECTION_IDLE_SECONDS = number(
    "GRPC_MAX_CONNECTION_IDLE_SECONDS",
    600.0,
    "a connection with no call for this long is closed (clients reconnect on their next call)",
    above=True,
)
GRPC_MAX_CONNECTION_AGE_SECONDS = number(
    "GRPC_MAX_CONNECTION_AGE_SECONDS",
    1800.0,
    "every connection is closed gracefully after this (its calls get `GRPC_GRACE_SECONDS`), "
    "so clients re-resolve and spread over new replicas",
    above=True,
)
GRPC_TLS_CLIENT_CA = optional_path(
    "GRPC_TLS_CLIENT_CA",
    "with TLS on: PEM CA that callers' certificates must be signed by (mutual TLS; callers "
    "without one are refused)",
)
GRPC_SERVER = (
    GRPC_MAX_WORKERS,
    GRPC_MAX_CONCURRENT_RPCS,
    GRPC_MAX_MESSAGE_BYTES,
    GRPC_GRACE_SECONDS,
    GRPC_KEEPALIVE_TIME_SECONDS,
    GRPC_KEEPALIVE_TIMEOUT_SECONDS,
    GRPC_MAX_CONNECTION_IDLE_SECONDS,
    GRPC_MAX_CONNECTION_AGE_SECONDS,
    GRPC_TLS_CLIENT_CA,
)

# --- TLS of the channels to the services (gateway, profile_svc, healthcheck) ---

GRPC_TLS_CA = optional_path(
    "GRPC_TLS_CA",
    "PEM CA that signed the services' certificates: channels to the services (and "
    "`python -m authgate_common.healthcheck`) speak TLS. Unset: plaintext",
)
GRPC_TLS_CLIENT_CERT = optional_path(
    "GRPC_TLS_CLIENT_CERT",
    "this client's PEM certificate, for services that require mutual TLS (with "
    "`GRPC_TLS_CLIENT_KEY`)",
)
GRPC_TLS_CLIENT_KEY = optional_path(
    "GRPC_TLS_CLIENT_KEY", "this client's unencrypted PEM key (with `GRPC_TLS_CLIENT_CERT`)"
)
CLIENT_TLS = (GRPC_TLS_CA, GRPC_TLS_CLIENT_CERT, GRPC_TLS_CLIENT_KEY)
# `python -m authgate_common.healthcheck` (the containers' probe) reads only these.
HEALTHCHECK = SettingsTable.of("healthcheck", CLIENT_TLS)

# --- the database check behind grpc.health.v1 (both services) ---

DB_CHECK_INTERVAL_SECONDS = number(
    "DB_CHECK_INTERVAL_SECONDS",
    5.0,
    "how often the service checks its database for its grpc.health.v1 status (`0`: never, "
    "always `SERVING`)",
)
DB_CHECK_TIMEOUT_SECONDS = number(
    "DB_CHECK_TIMEOUT_SECONDS",
    2.0,
    "a database check slower than this counts as a failure",
    above=True,
)
DB_CHECK = (DB_CHECK_INTERVAL_SECONDS, DB_CHECK_TIMEOUT_SECONDS)

# --- what each gRPC service reads besides its own rows ---

GRPC_SERVICE = (*TOKENS, *GRPC_SERVER, *CLIENT_TLS, *DB_CHECK, LOG_LEVEL)

# --- the kind of setting every service's database URL is ---


def database_url(name: str, default: str, doc: str) -> Setting[str]:
    """A SQLAlchemy URL of SQLite or MySQL; a refused value is never echoed (it may hold a
    password)."""

    def rule(url: str) -> str | None:
        # Imported here: the gateway reads this table too and has no database (SQLAlchemy
        # is a tenth of a second of every gateway process's start).
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            return "is not a valid SQLAlchemy database URL"
        if backend not in {"sqlite", "mysql"}:
            return f"must be a sqlite:// or mysql+pymysql:// URL, got {backend}"
        return None

    return text(name, default, doc, rule=rule, kind="URL", allowed="sqlite://, mysql+pymysql://")
