"""Rate limits come from the `rate_limit` proto option, with configuration on top."""

from __future__ import annotations

import dataclasses

import pytest
from authgate.auth.v1 import admin_pb2, mfa_pb2
from limits import RateLimitItemPerHour, RateLimitItemPerMinute

from authgate_common.config import ConfigError, Env
from gateway.config import GatewayConfig
from gateway.rate_limits import (
    InvalidRateLimit,
    RateLimitSettings,
    parse_rate_limit,
    route_limits,
)
from gateway.routes import Route, RouteError, build_routes, fronted_services

AUTH = "authgate.auth.v1.AuthService"
ADMIN = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]
MFA = mfa_pb2.DESCRIPTOR.services_by_name["MfaService"]


def real_routes() -> list[Route]:
    return build_routes(fronted_services())


def limits_by_rpc(
    routes: list[Route], overrides: tuple[tuple[str, str], ...] = ()
) -> dict[str, list[str]]:
    return {
        limit.rpc: [str(item) for item in limit.items]
        for limit in route_limits(routes, overrides).values()
    }


# --- parsing the option's text ----------------------------------------------------------------


def test_a_single_limit_is_parsed() -> None:
    assert parse_rate_limit("10/minute") == (RateLimitItemPerMinute(10),)


def test_several_limits_are_parsed() -> None:
    assert parse_rate_limit("10/minute;100/hour") == (
        RateLimitItemPerMinute(10),
        RateLimitItemPerHour(100),
    )


@pytest.mark.parametrize("text", ["off", "OFF", " none "])
def test_off_means_no_limit(text: str) -> None:
    assert parse_rate_limit(text) == ()


@pytest.mark.parametrize(
    "text", ["", "ten/minute", "10/fortnight", "-1/minute", "0/minute", "10/minute;x"]
)
def test_an_invalid_limit_is_refused(text: str) -> None:
    with pytest.raises(InvalidRateLimit):
        parse_rate_limit(text)


# --- the option on the real protos ------------------------------------------------------------


def test_register_login_and_refresh_carry_a_limit_in_the_protos() -> None:
    limited = limits_by_rpc(real_routes())
    admin_rpcs = {f"authgate.auth.v1.AdminService.{method.name}" for method in ADMIN.methods}
    account_rpcs = {
        f"authgate.auth.v1.AccountService.{name}"
        for name in (
            "ChangePassword",
            "ListSessions",
            "RevokeSession",
            "RevokeOtherSessions",
            "DeleteAccount",
        )
    }
    mfa_rpcs = {f"authgate.auth.v1.MfaService.{method.name}" for method in MFA.methods}
    assert set(limited) == {
        f"{AUTH}.Register",
        f"{AUTH}.Login",
        f"{AUTH}.LoginMfa",
        f"{AUTH}.Refresh",
        *mfa_rpcs,
        *admin_rpcs,
        *account_rpcs,
    }
    assert limited[f"{AUTH}.Login"] == ["10 per 1 minute"]


def test_routes_read_the_option_text() -> None:
    routes = {route.method.name: route for route in real_routes()}
    assert routes["Login"].rate_limit == "10/minute"
    assert routes["GetProfile"].rate_limit == ""


def test_an_override_by_rpc_name_replaces_the_option() -> None:
    limited = limits_by_rpc(real_routes(), (("Login", "2/minute;20/hour"),))
    assert limited[f"{AUTH}.Login"] == ["2 per 1 minute", "20 per 1 hour"]


def test_an_override_by_full_name_replaces_the_option() -> None:
    limited = limits_by_rpc(real_routes(), ((f"{AUTH}.Refresh", "1/second"),))
    assert limited[f"{AUTH}.Refresh"] == ["1 per 1 second"]


def test_an_override_can_switch_one_rpc_off() -> None:
    limited = limits_by_rpc(real_routes(), (("Register", "off"),))
    assert f"{AUTH}.Register" not in limited
    assert f"{AUTH}.Login" in limited


def test_an_override_can_limit_an_rpc_without_the_option() -> None:
    limited = limits_by_rpc(real_routes(), (("GetProfile", "100/minute"),))
    assert limited["authgate.profile.v1.ProfileService.GetProfile"] == ["100 per 1 minute"]


def test_an_override_naming_no_rpc_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="Logn"):
        route_limits(real_routes(), (("Logn", "1/minute"),))


def test_an_invalid_option_fails_at_start() -> None:
    login = next(route for route in real_routes() if route.method.name == "Login")
    broken = [dataclasses.replace(login, rate_limit="lots/minute")]
    with pytest.raises(RouteError, match="Login"):
        route_limits(broken)


# --- configuration ---------------------------------------------------------------------------


def test_rate_limits_are_on_and_shared_by_the_local_workers_by_default() -> None:
    config = GatewayConfig.from_env(Env({}))
    assert config.rate_limits == RateLimitSettings(
        enabled=True, storage_uri="local://", key_prefix="authgate", overrides=()
    )
    assert config.trusted_proxy_count == 0


def test_every_rate_limit_variable_is_read() -> None:
    config = GatewayConfig.from_env(
        Env(
            {
                "GATEWAY_RATE_LIMITS_ENABLED": "false",
                "GATEWAY_RATE_LIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
                "GATEWAY_RATE_LIMIT_KEY_PREFIX": "blue",
                "GATEWAY_RATE_LIMITS": "Login=100/minute;1000/hour, Register=off",
                "GATEWAY_TRUSTED_PROXY_COUNT": "2",
            }
        )
    )
    assert config.rate_limits == RateLimitSettings(
        enabled=False,
        storage_uri="redis://127.0.0.1:6379/0",
        key_prefix="blue",
        overrides=(("Login", "100/minute;1000/hour"), ("Register", "off")),
    )
    assert config.trusted_proxy_count == 2


def test_a_bad_storage_uri_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as error:
        GatewayConfig.from_env(
            Env({"GATEWAY_RATE_LIMIT_STORAGE_URI": "mongodb://user:s3cret@db:27017"})
        )
    assert "s3cret" not in str(error.value)
