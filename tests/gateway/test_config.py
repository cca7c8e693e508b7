"""GatewayConfig.from_env reads the contract's variable names once, with clear errors."""

from __future__ import annotations

import pytest

from authgate_common.config import ConfigError, Env
from authgate_common.tokens import TokenSettings
from gateway.config import GatewayConfig
from gateway.serving import ServingSettings


def test_defaults_match_the_contract() -> None:
    config = GatewayConfig.from_env(Env({}))
    serving = ServingSettings.from_env(Env({}))
    assert (serving.host, serving.port) == ("127.0.0.1", 8080)
    assert (config.auth_target, config.profile_target) == ("127.0.0.1:50051", "127.0.0.1:50052")
    assert config.grpc_timeout_seconds == 5.0
    assert config.max_body_bytes == 65536
    assert config.jwks_refetch_cooldown_seconds == 5.0
    assert config.tokens == TokenSettings()


def test_every_variable_is_read() -> None:
    env = Env(
        {
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_PORT": "9000",
            "AUTH_GRPC_TARGET": "auth:1",
            "PROFILE_GRPC_TARGET": "profile:2",
            "GATEWAY_GRPC_TIMEOUT_SECONDS": "0.5",
            "GATEWAY_MAX_BODY_BYTES": "1024",
            "JWKS_REFETCH_COOLDOWN_SECONDS": "1",
            "JWT_ISSUER": "me",
        }
    )
    config = GatewayConfig.from_env(env)
    # The bind address is gunicorn's (gateway.serving), read from the same table.
    serving = ServingSettings.from_env(env)
    assert (serving.host, serving.port) == ("0.0.0.0", 9000)
    assert (config.auth_target, config.profile_target) == ("auth:1", "profile:2")
    assert config.grpc_timeout_seconds == 0.5
    assert config.readiness_timeout_seconds == 0.5
    assert config.max_body_bytes == 1024
    assert config.jwks_refetch_cooldown_seconds == 1.0
    assert config.tokens.issuer == "me"


@pytest.mark.parametrize("value", ["-1", "0", "0.05"])
def test_a_jwks_cooldown_that_lets_a_kid_flood_through_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^JWKS_REFETCH_COOLDOWN_SECONDS must be at least 0\.1"):
        GatewayConfig.from_env(Env({"JWKS_REFETCH_COOLDOWN_SECONDS": value}))


def test_a_negative_jwks_cooldown_is_refused_when_built_in_code_too() -> None:
    with pytest.raises(ConfigError, match="JWKS_REFETCH_COOLDOWN_SECONDS"):
        GatewayConfig(jwks_refetch_cooldown_seconds=-1)


def test_log_level_is_checked_as_in_the_services() -> None:
    assert GatewayConfig.from_env(Env({"LOG_LEVEL": "warning"})).log_level == "WARNING"
    with pytest.raises(ConfigError, match=r"^LOG_LEVEL must be one of CRITICAL, DEBUG"):
        GatewayConfig.from_env(Env({"LOG_LEVEL": "LOUD"}))


def test_the_bind_address_is_gunicorns_only() -> None:
    # GATEWAY_HOST and GATEWAY_PORT are gunicorn's (gateway.serving); the app never used them.
    assert not hasattr(GatewayConfig(), "host")
    assert not hasattr(GatewayConfig(), "port")
