"""The gateway's settings table (serving included), read once into frozen dataclasses.

gateway/gunicorn_conf.py (gunicorn) or gateway/granian_serve.py (granian) reads the
serving rows (through gateway.serving) in the server's main process; gateway.wsgi reads
the rest in each worker. Nothing imported here
may import prometheus_client: it picks its multiprocess mode when first imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from authgate_common import settings as shared
from authgate_common.config import (
    Env,
    SettingsTable,
    flag,
    from_setting,
    number,
    optional_text,
    port,
    read_settings,
    text,
    whole,
)
from authgate_common.settings import RevocationSettings
from authgate_common.tls import ClientTls
from authgate_common.tokens import TokenSettings
from gateway.rate_limits import STORAGE_SCHEMES, RateLimitSettings, parse_overrides

# --- how gunicorn or granian serves the gateway (gateway.serving.ServingSettings) ---

SERVERS = ("gunicorn", "granian")
GATEWAY_SERVER = text(
    "GATEWAY_SERVER",
    "gunicorn",
    "the HTTP server `make run`, `make cluster` and the tests start the gateway under: "
    "gunicorn (`gateway/gunicorn_conf.py`, gthread workers) or granian "
    "(`python -m gateway.granian_serve`, WSGI workers; measured about 20% less gateway "
    "CPU per request, docs/BENCHMARKS.md); an image or manifest names its command itself",
    choices=SERVERS,
)
GATEWAY_HOST = text(
    "GATEWAY_HOST",
    "127.0.0.1",
    "address the server binds (under gunicorn a `--bind` flag overrides it)",
)
GATEWAY_PORT = port("GATEWAY_PORT", 8080, "port the server binds (`0`: one the OS picks)")
GATEWAY_WORKERS = whole("GATEWAY_WORKERS", 2, "worker processes", minimum=1, maximum=256)
GATEWAY_THREADS = whole(
    "GATEWAY_THREADS",
    8,
    "threads per worker (requests served at once = workers x threads; granian's blocking threads)",
    minimum=1,
    maximum=1024,
)
GATEWAY_TIMEOUT = whole(
    "GATEWAY_TIMEOUT",
    30,
    "a worker silent this long is killed and replaced (a stuck request included); gunicorn "
    "only: granian has no worker heartbeat (it replaces workers that die; every upstream "
    "call is bounded by `GATEWAY_GRPC_TIMEOUT_SECONDS`)",
    minimum=1,
    maximum=3600,
    kind="seconds",
)
GATEWAY_GRACEFUL_TIMEOUT = whole(
    "GATEWAY_GRACEFUL_TIMEOUT",
    10,
    "on SIGTERM: stop accepting, let in-flight requests finish within this (granian: at least 1 s)",
    minimum=0,
    maximum=3600,
    kind="seconds",
)
GATEWAY_KEEPALIVE = whole(
    "GATEWAY_KEEPALIVE",
    5,
    "idle HTTP keep-alive connections are closed after this; behind a load balancer, make it "
    "longer than the balancer's idle timeout (granian: the wait for the next request's "
    "headers, `0` turns keep-alive off)",
    minimum=0,
    maximum=3600,
    kind="seconds",
)
SERVING = (
    GATEWAY_SERVER,
    GATEWAY_HOST,
    GATEWAY_PORT,
    GATEWAY_WORKERS,
    GATEWAY_THREADS,
    GATEWAY_TIMEOUT,
    GATEWAY_GRACEFUL_TIMEOUT,
    GATEWAY_KEEPALIVE,
)

# --- the application (GatewayConfig) ---

PROFILE_GRPC_TARGET = shared.PROFILE_GRPC_TARGET
GATEWAY_GRPC_TIMEOUT_SECONDS = number(
    "GATEWAY_GRPC_TIMEOUT_SECONDS",
    5.0,
    "deadline of every gRPC call the gateway makes (`/readyz` waits at most 1 s of it)",
    above=True,
    maximum=300.0,
)
GATEWAY_MAX_BODY_BYTES = whole(
    "GATEWAY_MAX_BODY_BYTES",
    65536,
    "larger request bodies get `413`",
    minimum=1,
    maximum=16 * 1024 * 1024,
    kind="bytes",
)
GATEWAY_TRUSTED_PROXY_COUNT = whole(
    "GATEWAY_TRUSTED_PROXY_COUNT",
    0,
    "proxies in front of the gateway that append to `X-Forwarded-For`: `0` takes the client "
    "from the TCP peer and ignores the header; N takes the Nth address from the right (a "
    "missing or malformed one falls back to the peer)",
    minimum=0,
    maximum=16,
)
PROMETHEUS_MULTIPROC_DIR = optional_text(
    "PROMETHEUS_MULTIPROC_DIR",
    "prometheus-client's own variable: where the server's workers keep their metrics; made "
    "or emptied at each start by `gateway.gunicorn_conf` or `gateway.granian_serve` (unset: "
    "a temporary folder)",
    kind="path",
)
GATEWAY_RATE_LIMITS_ENABLED = flag(
    "GATEWAY_RATE_LIMITS_ENABLED",
    RateLimitSettings.enabled,
    "per-client-IP rate limits of the RPCs that declare one in the protos (Register and Login "
    "10/minute, Refresh 30/minute); over it: `429` with `Retry-After`",
)
GATEWAY_RATE_LIMITS = optional_text(
    "GATEWAY_RATE_LIMITS",
    "per-RPC overrides, `NAME=LIMIT` comma-separated, e.g. "
    "`Login=100/minute;1000/hour,Register=off`; NAME is the RPC's name or full name, `off` "
    "removes a limit",
    kind="list of NAME=LIMIT",
)


def _storage_rule(uri: str) -> str | None:
    # The URI may hold a password: the message does not repeat it.
    if uri.startswith(STORAGE_SCHEMES):
        return None
    return "must start with one of " + ", ".join(STORAGE_SCHEMES)


GATEWAY_RATE_LIMIT_STORAGE_URI = text(
    "GATEWAY_RATE_LIMIT_STORAGE_URI",
    RateLimitSettings.storage_uri,
    "where the counts live: `local://` (one count for every gunicorn worker of this "
    "instance, in a SQLite file of its own), `sqlite:///path`, `memory://` (one process "
    "only), or `redis://host:6379/0` (also `rediss://`, `redis+unix://`), one count for "
    "every instance",
    rule=_storage_rule,
    allowed=", ".join(STORAGE_SCHEMES),
    kind="URL",
)
GATEWAY_RATE_LIMIT_KEY_PREFIX = text(
    "GATEWAY_RATE_LIMIT_KEY_PREFIX",
    RateLimitSettings.key_prefix,
    "prefix of the counters' keys, so deployments can share one Redis",
)

SETTINGS = SettingsTable.of(
    "gateway",
    SERVING,
    (shared.AUTH_GRPC_TARGET, PROFILE_GRPC_TARGET, GATEWAY_GRPC_TIMEOUT_SECONDS),
    (GATEWAY_MAX_BODY_BYTES, GATEWAY_TRUSTED_PROXY_COUNT, PROMETHEUS_MULTIPROC_DIR),
    (GATEWAY_RATE_LIMITS_ENABLED, GATEWAY_RATE_LIMITS, GATEWAY_RATE_LIMIT_STORAGE_URI),
    (GATEWAY_RATE_LIMIT_KEY_PREFIX, shared.JWKS_REFETCH_COOLDOWN_SECONDS),
    (shared.JWKS_GRACE_SECONDS, shared.REVOCATION_MAX_STALENESS_SECONDS),
    shared.TOKENS,
    shared.CLIENT_TLS,
    (shared.LOG_LEVEL,),
)

# /readyz must answer quickly even when an upstream hangs.
READINESS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class GatewayConfig:
    auth_target: str = from_setting(shared.AUTH_GRPC_TARGET)
    profile_target: str = from_setting(PROFILE_GRPC_TARGET)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    grpc_timeout_seconds: float = GATEWAY_GRPC_TIMEOUT_SECONDS.default
    max_body_bytes: int = from_setting(GATEWAY_MAX_BODY_BYTES)
    jwks_refetch_cooldown_seconds: float = from_setting(shared.JWKS_REFETCH_COOLDOWN_SECONDS)
    readiness_timeout_seconds: float = READINESS_TIMEOUT_SECONDS
    # prometheus-client's own variable: set, /metrics adds up every gunicorn worker's files.
    metrics_multiprocess_dir: str | None = None
    # TLS of the channels to both services (None: plaintext).
    upstream_tls: ClientTls | None = None
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    # Proxies in front of the gateway that append to X-Forwarded-For; 0: use the peer address.
    trusted_proxy_count: int = from_setting(GATEWAY_TRUSTED_PROXY_COUNT)
    log_level: str = from_setting(shared.LOG_LEVEL)
    # The revocation feed from the auth service (REVOCATION_MAX_STALENESS_SECONDS).
    revocation: RevocationSettings = field(default_factory=RevocationSettings)
    # Cached keys no longer refreshable are trusted this long past their refresh time.
    jwks_grace_seconds: float = from_setting(shared.JWKS_GRACE_SECONDS)

    def __post_init__(self) -> None:
        shared.JWKS_REFETCH_COOLDOWN_SECONDS.check(self.jwks_refetch_cooldown_seconds)
        shared.JWKS_GRACE_SECONDS.check(self.jwks_grace_seconds)
        shared.LOG_LEVEL.check(self.log_level)

    @classmethod
    def from_env(cls, env: Env) -> GatewayConfig:
        # The serving rows too (gunicorn's master reads them): the worker refuses what it does.
        SETTINGS.validate(env)
        timeout = GATEWAY_GRPC_TIMEOUT_SECONDS.read(env)
        return read_settings(
            cls,
            env,
            tokens=TokenSettings.from_env(env),
            grpc_timeout_seconds=timeout,
            readiness_timeout_seconds=min(READINESS_TIMEOUT_SECONDS, timeout),
            metrics_multiprocess_dir=PROMETHEUS_MULTIPROC_DIR.read(env),
            upstream_tls=ClientTls.from_env(env),
            rate_limits=RateLimitSettings(
                enabled=GATEWAY_RATE_LIMITS_ENABLED.read(env),
                storage_uri=GATEWAY_RATE_LIMIT_STORAGE_URI.read(env),
                key_prefix=GATEWAY_RATE_LIMIT_KEY_PREFIX.read(env),
                overrides=parse_overrides(GATEWAY_RATE_LIMITS.read(env) or ""),
            ),
            revocation=RevocationSettings.from_env(env),
        )
