"""AuthConfig.from_env: defaults, overrides and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth_svc.config import Argon2Params, AuthConfig, key_retirement_seconds
from authgate_common.config import ConfigError, Env


def test_defaults_match_the_contract() -> None:
    config = AuthConfig.from_env(Env({}))

    assert config.database_url == "sqlite:///var/auth.db"
    assert config.keys_dir == Path("var/keys")
    assert (config.server.host, config.server.port) == ("127.0.0.1", 50051)
    assert config.server.max_workers == 16
    assert config.access_token_ttl_seconds == 900
    assert config.refresh_token_ttl_seconds == 2592000
    assert config.argon2 == Argon2Params(time_cost=3, memory_kib=65536, parallelism=4)
    assert config.password_min_length == 12
    assert config.registration_enabled is True
    assert config.signing_algorithm == "RS256"


def test_environment_overrides_every_setting() -> None:
    env = Env(
        {
            "AUTH_DATABASE_URL": "mysql+pymysql://root@127.0.0.1:3306/auth",
            "AUTH_KEYS_DIR": "/srv/authgate/keys",
            "AUTH_GRPC_HOST": "0.0.0.0",
            "AUTH_GRPC_PORT": "6000",
            "GRPC_MAX_WORKERS": "4",
            "AUTH_ACCESS_TOKEN_TTL_SECONDS": "600",
            "AUTH_REFRESH_TOKEN_TTL_SECONDS": "3600",
            "AUTH_ARGON2_TIME_COST": "4",
            "AUTH_ARGON2_MEMORY_KIB": "131072",
            "AUTH_ARGON2_PARALLELISM": "2",
            "AUTH_PASSWORD_MIN_LENGTH": "16",
            "AUTH_REGISTRATION_ENABLED": "false",
            "JWT_ISSUER": "issuer-x",
            "LOG_LEVEL": "debug",
        }
    )

    config = AuthConfig.from_env(env)

    assert config.database_url.startswith("mysql+pymysql://")
    assert config.keys_dir == Path("/srv/authgate/keys")
    assert (config.server.host, config.server.port, config.server.max_workers) == (
        "0.0.0.0",
        6000,
        4,
    )
    assert (config.access_token_ttl_seconds, config.refresh_token_ttl_seconds) == (600, 3600)
    assert config.argon2 == Argon2Params(time_cost=4, memory_kib=131072, parallelism=2)
    assert config.password_min_length == 16
    assert config.registration_enabled is False
    assert config.tokens.issuer == "issuer-x"
    assert config.log_level == "DEBUG"


# --- bounds that refuse insecure values ---

OWASP_MINIMUMS = [(47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5)]


@pytest.mark.parametrize(("memory_kib", "time_cost"), OWASP_MINIMUMS)
def test_owasps_minimum_argon2id_parameters_are_accepted(memory_kib: int, time_cost: int) -> None:
    env = Env(
        {
            "AUTH_ARGON2_MEMORY_KIB": str(memory_kib),
            "AUTH_ARGON2_TIME_COST": str(time_cost),
            "AUTH_ARGON2_PARALLELISM": "1",
        }
    )
    assert AuthConfig.from_env(env).argon2 == Argon2Params(time_cost, memory_kib, 1)


@pytest.mark.parametrize(("memory_kib", "time_cost"), OWASP_MINIMUMS)
def test_argon2id_just_below_owasps_curve_is_refused(memory_kib: int, time_cost: int) -> None:
    env = Env(
        {"AUTH_ARGON2_MEMORY_KIB": str(memory_kib - 1), "AUTH_ARGON2_TIME_COST": str(time_cost)}
    )
    with pytest.raises(ConfigError, match=r"^AUTH_ARGON2_MEMORY_KIB must be at least") as raised:
        AuthConfig.from_env(env)
    assert str(raised.value).endswith(f"got {memory_kib - 1}")


def test_argon2id_with_one_pass_needs_owasps_46_mib() -> None:
    env = Env({"AUTH_ARGON2_MEMORY_KIB": "19456", "AUTH_ARGON2_TIME_COST": "1"})
    with pytest.raises(ConfigError) as raised:
        AuthConfig.from_env(env)
    assert str(raised.value) == (
        "AUTH_ARGON2_MEMORY_KIB must be at least 47104 with AUTH_ARGON2_TIME_COST 1 "
        "(OWASP's argon2id minimum), got 19456"
    )


def test_weak_argon2id_is_refused_when_built_in_code_too() -> None:
    # As the test fixtures once did: argon2id with 1 MiB and one pass.
    with pytest.raises(ConfigError, match="AUTH_ARGON2_MEMORY_KIB must be at least 7168"):
        Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
    with pytest.raises(ConfigError, match="AUTH_ARGON2_MEMORY_KIB must be at least 19456"):
        Argon2Params(time_cost=2, memory_kib=16384, parallelism=1)
    with pytest.raises(ConfigError, match="AUTH_ARGON2_PARALLELISM"):
        Argon2Params(time_cost=5, memory_kib=7168, parallelism=0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("JWT_MAX_LIFETIME_SECONDS", str(24 * 3600 + 1)),
        ("JWT_LEEWAY_SECONDS", "-1"),
        ("AUTH_ACCESS_TOKEN_TTL_SECONDS", "59"),
        ("AUTH_PASSWORD_MIN_LENGTH", "7"),
        ("AUTH_LOCKOUT_THRESHOLD", "0"),
        ("AUTH_KEYS_RELOAD_SECONDS", "-0.5"),
    ],
)
def test_insecure_token_and_password_values_are_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name} must be"):
        AuthConfig.from_env(Env({name: value}))


def test_a_short_minimum_password_length_is_refused_when_built_in_code_too(
    tmp_path: Path,
) -> None:
    base = AuthConfig.from_env(Env({}))
    with pytest.raises(ConfigError, match="AUTH_PASSWORD_MIN_LENGTH must be at least 8"):
        AuthConfig(base.database_url, tmp_path, base.server, base.tokens, password_min_length=4)


def test_the_key_retirement_default_follows_the_table() -> None:
    assert key_retirement_seconds(Env({})) == 900 + 30 + 30 + 1
    env = Env(
        {
            "AUTH_ACCESS_TOKEN_TTL_SECONDS": "600",
            "JWT_LEEWAY_SECONDS": "10",
            "AUTH_KEYS_RELOAD_SECONDS": "5",
        }
    )
    assert key_retirement_seconds(env) == 600 + 10 + 5 + 1


def test_the_jwks_uri_is_under_the_public_url() -> None:
    config = AuthConfig.from_env(Env({"AUTH_PUBLIC_URL": "https://api.example.com/"}))
    assert config.jwks_uri == "https://api.example.com/.well-known/jwks.json"


def test_without_a_public_url_a_url_issuer_is_the_base() -> None:
    config = AuthConfig.from_env(Env({"JWT_ISSUER": "https://auth.example.com"}))
    assert config.jwks_uri == "https://auth.example.com/.well-known/jwks.json"


def test_without_either_the_jwks_uri_is_the_local_gateway() -> None:
    assert AuthConfig.from_env(Env({})).jwks_uri == "http://127.0.0.1:8080/.well-known/jwks.json"


def test_a_public_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ConfigError, match="AUTH_PUBLIC_URL"):
        AuthConfig.from_env(Env({"AUTH_PUBLIC_URL": "auth.example.com"}))


@pytest.mark.parametrize(
    ("activation", "reload", "max_age"), [("60", "30", 30), ("10", "30", 0), ("300", "0", 300)]
)
def test_the_jwks_may_be_cached_for_the_activation_delay_less_the_reload_interval(
    activation: str, reload: str, max_age: int
) -> None:
    env = Env({"AUTH_KEY_ACTIVATION_SECONDS": activation, "AUTH_KEYS_RELOAD_SECONDS": reload})
    assert AuthConfig.from_env(env).jwks_max_age_seconds == max_age
