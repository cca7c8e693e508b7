"""Every process's settings refuse a bad value with a ConfigError that names the variable:
the one test of it, for each settings dataclass a process reads."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from auth_svc.config import AuthConfig
from authgate_common.config import ConfigError, Env
from gateway.config import GatewayConfig
from gateway.serving import ServingSettings
from profile_svc.config import ProfileConfig

Reader = Callable[[Env], object]

# (reader, variable, bad value[, the variable the error names, when another])
BAD_VALUES: list[tuple[Reader, str, str] | tuple[Reader, str, str, str]] = [
    (AuthConfig.from_env, "AUTH_GRPC_PORT", "http"),
    (AuthConfig.from_env, "AUTH_GRPC_PORT", "70000"),
    (AuthConfig.from_env, "AUTH_ARGON2_MEMORY_KIB", "16"),
    (AuthConfig.from_env, "AUTH_ARGON2_TIME_COST", "0"),
    (AuthConfig.from_env, "AUTH_PASSWORD_MIN_LENGTH", "4"),
    (AuthConfig.from_env, "AUTH_ACCESS_TOKEN_TTL_SECONDS", "7200", "JWT_MAX_LIFETIME_SECONDS"),
    (AuthConfig.from_env, "AUTH_REGISTRATION_ENABLED", "maybe"),
    (AuthConfig.from_env, "LOG_LEVEL", "LOUD"),
    (AuthConfig.from_env, "AUTH_DATABASE_URL", "  "),
    (ProfileConfig.from_env, "PROFILE_GRPC_PORT", "70000"),
    (ProfileConfig.from_env, "GRPC_MAX_WORKERS", "0"),
    (ProfileConfig.from_env, "JWKS_REFETCH_COOLDOWN_SECONDS", "soon"),
    (ProfileConfig.from_env, "PROFILE_DATABASE_URL", "postgresql://db/x"),
    (ProfileConfig.from_env, "LOG_LEVEL", "LOUD"),
    (ProfileConfig.from_env, "JWT_ALGORITHMS", "HS256"),
    (GatewayConfig.from_env, "GATEWAY_PORT", "70000"),
    (GatewayConfig.from_env, "GATEWAY_GRPC_TIMEOUT_SECONDS", "0"),
    (GatewayConfig.from_env, "GATEWAY_GRPC_TIMEOUT_SECONDS", "soon"),
    (GatewayConfig.from_env, "GATEWAY_MAX_BODY_BYTES", "0"),
    (GatewayConfig.from_env, "JWKS_REFETCH_COOLDOWN_SECONDS", "-1"),
    (GatewayConfig.from_env, "JWT_ALGORITHMS", "HS256"),
    (GatewayConfig.from_env, "GATEWAY_RATE_LIMITS_ENABLED", "maybe"),
    (GatewayConfig.from_env, "GATEWAY_RATE_LIMIT_STORAGE_URI", "memcached://127.0.0.1:11211"),
    (GatewayConfig.from_env, "GATEWAY_RATE_LIMIT_KEY_PREFIX", " "),
    (GatewayConfig.from_env, "GATEWAY_RATE_LIMITS", "Login"),
    (GatewayConfig.from_env, "GATEWAY_RATE_LIMITS", "=10/minute"),
    (GatewayConfig.from_env, "GATEWAY_RATE_LIMITS", "Login=often"),
    (GatewayConfig.from_env, "GATEWAY_TRUSTED_PROXY_COUNT", "-1"),
    (GatewayConfig.from_env, "GATEWAY_TRUSTED_PROXY_COUNT", "many"),
    (ServingSettings.from_env, "GATEWAY_WORKERS", "0"),
    (ServingSettings.from_env, "GATEWAY_THREADS", "lots"),
    (ServingSettings.from_env, "GATEWAY_TIMEOUT", "0"),
    (ServingSettings.from_env, "GATEWAY_GRACEFUL_TIMEOUT", "-1"),
    (ServingSettings.from_env, "GATEWAY_PORT", "70000"),
]


@pytest.mark.parametrize(
    ("read", "name", "value", "named"),
    [
        pytest.param(
            case[0],
            case[1],
            case[2],
            case[-1] if len(case) == 4 else case[1],
            id=f"{case[0].__qualname__.split('.')[0]}-{case[1]}={case[2]!r}",
        )
        for case in BAD_VALUES
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    read: Reader, name: str, value: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        read(Env({name: value}))
