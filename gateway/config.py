"""Gateway configuration, read once from the environment into a frozen dataclass."""

from __future__ import annotations

from dataclasses import dataclass, field

from authgate_common.config import ConfigError, Env, port
from authgate_common.revocation import RevocationSettings
from authgate_common.tls import ClientTls
from authgate_common.tokens import TokenSettings
from gateway.rate_limits import RateLimitSettings


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    auth_target: str = "127.0.0.1:50051"
    profile_target: str = "127.0.0.1:50052"
    tokens: TokenSettings = field(default_factory=TokenSettings)
    grpc_timeout_seconds: float = 5.0
    max_body_bytes: int = 65536
    jwks_refetch_cooldown_seconds: float = 5.0
    # /readyz must answer quickly even when an upstream hangs.
    readiness_timeout_seconds: float = 1.0
    # prometheus-client's own variable: set, /metrics adds up every gunicorn worker's files.
    metrics_multiprocess_dir: str | None = None
    # TLS of the channels to both services (None: plaintext).
    upstream_tls: ClientTls | None = None
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    # Proxies in front of the gateway that append to X-Forwarded-For; 0: use the peer address.
    trusted_proxy_count: int = 0
    # The revocation feed from the auth service (REVOCATION_MAX_STALENESS_SECONDS).
    revocation: RevocationSettings = field(default_factory=RevocationSettings)
    # Cached keys no longer refreshable are trusted this long past their refresh time.
    jwks_grace_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Env) -> GatewayConfig:
        timeout = env.float("GATEWAY_GRPC_TIMEOUT_SECONDS", cls.grpc_timeout_seconds)
        if timeout <= 0:
            raise ConfigError(f"GATEWAY_GRPC_TIMEOUT_SECONDS must be above 0, got {timeout}")
        return cls(
            host=env.str("GATEWAY_HOST", cls.host),
            port=port(env, "GATEWAY_PORT", cls.port),
            auth_target=env.str("AUTH_GRPC_TARGET", cls.auth_target),
            profile_target=env.str("PROFILE_GRPC_TARGET", cls.profile_target),
            tokens=TokenSettings.from_env(env),
            grpc_timeout_seconds=timeout,
            max_body_bytes=env.int("GATEWAY_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1),
            jwks_refetch_cooldown_seconds=env.float(
                "JWKS_REFETCH_COOLDOWN_SECONDS", cls.jwks_refetch_cooldown_seconds
            ),
            readiness_timeout_seconds=min(cls.readiness_timeout_seconds, timeout),
            metrics_multiprocess_dir=env.values.get("PROMETHEUS_MULTIPROC_DIR") or None,
            upstream_tls=ClientTls.from_env(env),
            rate_limits=RateLimitSettings.from_env(env),
            trusted_proxy_count=env.int("GATEWAY_TRUSTED_PROXY_COUNT", 0, maximum=16),
            revocation=RevocationSettings.from_env(env),
            jwks_grace_seconds=env.float("JWKS_GRACE_SECONDS", cls.jwks_grace_seconds),
        )
