"""ProfileConfig.from_env: defaults, overrides and clear errors."""

from __future__ import annotations

import pytest

from authgate_common.config import ConfigError, Env
from profile_svc.config import ProfileConfig


def test_defaults_match_the_contract() -> None:
    config = ProfileConfig.from_env(Env({}))

    assert config.database_url == "sqlite:///var/profile.db"
    assert (config.server.host, config.server.port) == ("127.0.0.1", 50052)
    assert config.server.max_workers == 16
    assert config.auth_target == "127.0.0.1:50051"
    assert config.jwks_refetch_cooldown_seconds == 5.0
    assert config.tokens.algorithms == ("RS256",)


def test_environment_overrides_every_setting() -> None:
    config = ProfileConfig.from_env(
        Env(
            {
                "PROFILE_DATABASE_URL": "mysql+pymysql://root@db:3306/profiles",
                "PROFILE_GRPC_HOST": "0.0.0.0",
                "PROFILE_GRPC_PORT": "0",
                "AUTH_GRPC_TARGET": "auth:50051",
                "JWT_ISSUER": "issuer-x",
                "JWT_AUDIENCE": "audience-x",
                "JWKS_REFETCH_COOLDOWN_SECONDS": "0.5",
                "GRPC_MAX_WORKERS": "4",
                "LOG_LEVEL": "debug",
            }
        )
    )

    assert config.database_url == "mysql+pymysql://root@db:3306/profiles"
    assert (config.server.host, config.server.port, config.server.max_workers) == (
        "0.0.0.0",
        0,
        4,
    )
    assert config.auth_target == "auth:50051"
    assert (config.tokens.issuer, config.tokens.audience) == ("issuer-x", "audience-x")
    assert config.jwks_refetch_cooldown_seconds == 0.5
    assert config.log_level == "DEBUG"


def test_an_unparsable_database_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as raised:
        ProfileConfig.from_env(Env({"PROFILE_DATABASE_URL": "not a url s3cret"}))

    assert "s3cret" not in str(raised.value)


@pytest.mark.parametrize("value", ["-1", "0", "0.05", "nan"])
def test_a_jwks_cooldown_that_lets_a_kid_flood_through_is_refused(value: str) -> None:
    # Every token with a made-up kid may trigger one fetch per cooldown: 0 means one each.
    with pytest.raises(ConfigError, match=r"^JWKS_REFETCH_COOLDOWN_SECONDS must be at least 0\.1"):
        ProfileConfig.from_env(Env({"JWKS_REFETCH_COOLDOWN_SECONDS": value}))


def test_a_negative_jwks_cooldown_is_refused_when_built_in_code_too() -> None:
    base = ProfileConfig.from_env(Env({}))
    with pytest.raises(ConfigError, match="JWKS_REFETCH_COOLDOWN_SECONDS"):
        ProfileConfig(
            base.database_url,
            base.server,
            base.auth_target,
            base.tokens,
            jwks_refetch_cooldown_seconds=-1,
        )
