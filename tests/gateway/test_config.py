"""GatewayConfig.from_env reads the contract's variable names once, with clear errors."""

from __future__ import annotations

import pytest

from authgate_common.config import ConfigError, Env
from authgate_common.tokens import TokenSettings
from gateway.config import GatewayConfig
from gateway.serving import GunicornSettings


def test_defaults_match_the_contract() -> None:
    config = GatewayConfig.from_env(Env({}))
    serving = GunicornSettings.from_env(Env({}))
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
    serving = GunicornSettings.from_env(env)
    assert (serving.host, serving.port) == ("0.0.0.0", 9000)
    assert (config.auth_target, config.profile_target) == ("auth:1", "profile:2")
    assert config.grpc_timeout_seconds == 0.5
    assert config.readiness_timeout_seconds == 0.5
    assert config.max_body_bytes == 1024
    assert config.jwks_refetch_cooldown_seconds == 1.0
    assert config.tokens.issuer == "me"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GATEWAY_PORT", "70000"),
        ("GATEWAY_GRPC_TIMEOUT_SECONDS", "0"),
        ("GATEWAY_GRPC_TIMEOUT_SECONDS", "soon"),
        ("GATEWAY_MAX_BODY_BYTES", "0"),
        ("JWKS_REFETCH_COOLDOWN_SECONDS", "-1"),
        ("JWT_ALGORITHMS", "HS256"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        GatewayConfig.from_env(Env({name: value}))
