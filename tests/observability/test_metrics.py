"""Prometheus metrics of the gateway (/metrics) and of both services (their own HTTP port)."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from flask.testing import FlaskClient

from auth_svc.config import AuthConfig
from authgate_common.config import ConfigError, Env
from profile_svc.config import ProfileConfig
from tests.fixtures.services_fixtures import PASSWORD, Services, ServicesFactory, login
from tests.observability.metrics_text import sample
from tests.token_factory import TokenFactory

LOGIN = "/authgate.auth.v1.AuthService/Login"
AUTH_SERVICE = "authgate.auth.v1.AuthService"
PROFILE_SERVICE = "authgate.profile.v1.ProfileService"


@pytest.fixture
def sqlite_services(services_factory: ServicesFactory, tmp_path: Path) -> Services:
    """Both services on SQLite (metrics do not depend on the backend)."""
    return services_factory(f"sqlite:///{tmp_path / 'auth.db'}", f"sqlite:///{tmp_path / 'p.db'}")


@pytest.fixture
def metered_services(services_factory: ServicesFactory, tmp_path: Path) -> Services:
    """Both services on SQLite, each serving /metrics on a free port."""
    return services_factory(
        f"sqlite:///{tmp_path / 'auth.db'}", f"sqlite:///{tmp_path / 'p.db'}", metrics_port=0
    )


def gateway_metrics(gateway: FlaskClient) -> str:
    response = gateway.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def service_metrics(port: int | None) -> str:
    assert port is not None
    response = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


def test_requests_are_counted_and_timed_by_route_method_and_status(
    sqlite_services: Services,
) -> None:
    for _ in range(3):
        sqlite_services.gateway.get("/healthz")

    text = gateway_metrics(sqlite_services.gateway)

    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    assert sample(text, "authgate_gateway_requests_total", labels) == 3
    assert sample(text, "authgate_gateway_request_duration_seconds_count", labels) == 3
    assert sample(text, "authgate_gateway_request_duration_seconds_sum", labels) > 0


def test_unknown_paths_and_methods_are_counted_under_fixed_labels(
    sqlite_services: Services,
) -> None:
    sqlite_services.gateway.get("/v1/no/such/path-4711")
    sqlite_services.gateway.open("/healthz", method="BREW")

    text = gateway_metrics(sqlite_services.gateway)

    assert sample(text, "authgate_gateway_requests_total", {"route": "unmatched", "status": "404"})
    assert sample(text, "authgate_gateway_requests_total", {"method": "other"}) == 1
    assert "4711" not in text
    assert "BREW" not in text


def test_upstream_calls_are_timed_by_grpc_method_and_code(sqlite_services: Services) -> None:
    login(sqlite_services.gateway)

    text = gateway_metrics(sqlite_services.gateway)

    assert (
        sample(
            text,
            "authgate_gateway_upstream_duration_seconds_count",
            {"grpc_method": LOGIN, "grpc_code": "OK"},
        )
        == 1
    )
    assert (
        sample(
            text,
            "authgate_gateway_upstream_duration_seconds_count",
            {"grpc_method": "/authgate.auth.v1.AuthService/Register", "grpc_code": "OK"},
        )
        == 1
    )


def test_refused_logins_are_counted_as_login_failures(sqlite_services: Services) -> None:
    login(sqlite_services.gateway)
    for password in ("wrong password one", "wrong password two"):
        response = sqlite_services.gateway.post(
            "/v1/auth/login", json={"username": "alice", "password": password}
        )
        assert response.status_code == 401

    text = gateway_metrics(sqlite_services.gateway)

    assert sample(text, "authgate_gateway_login_failures_total") == 2
    assert (
        sample(
            text,
            "authgate_gateway_upstream_duration_seconds_count",
            {"grpc_method": LOGIN, "grpc_code": "UNAUTHENTICATED"},
        )
        == 2
    )


def test_rejected_access_tokens_are_counted_by_reason(
    sqlite_services: Services, token_factory: TokenFactory
) -> None:
    gateway = sqlite_services.gateway
    gateway.get("/v1/profile")
    gateway.get("/v1/profile", headers={"Authorization": "Bearer not-a-jwt"})
    foreign = token_factory.mint("8d6f3c1e-0000-4000-8000-000000000001", "mallory")
    gateway.get("/v1/profile", headers={"Authorization": f"Bearer {foreign}"})
    gateway.get("/v1/profile", headers={"Authorization": f"Bearer {foreign}"})

    text = gateway_metrics(gateway)

    rejections = "authgate_gateway_token_rejections_total"
    assert sample(text, rejections, {"reason": "missing"}) == 1
    assert sample(text, rejections, {"reason": "malformed"}) == 1
    assert sample(text, rejections, {"reason": "unknown_key"}) == 2
    assert foreign not in text


def test_the_auth_service_counts_its_rpcs_logins_and_registrations(
    metered_services: Services,
) -> None:
    login(metered_services.gateway)  # one registration, one good login
    metered_services.gateway.post(
        "/v1/auth/login", json={"username": "alice", "password": "x" * 12}
    )

    text = service_metrics(metered_services.auth.metrics_port)

    login_ok = {"grpc_service": AUTH_SERVICE, "grpc_method": "Login", "grpc_code": "OK"}
    assert sample(text, "grpc_server_handled_total", login_ok) == 1
    assert sample(text, "grpc_server_handling_seconds_count", login_ok) == 1
    assert sample(text, "authgate_auth_logins_total", {"result": "ok"}) == 1
    assert sample(text, "authgate_auth_logins_total", {"result": "failed"}) == 1
    assert sample(text, "authgate_auth_logins_total", {"result": "error"}) == 0
    assert sample(text, "authgate_auth_registrations_total") == 1
    assert PASSWORD not in text


def test_the_profile_service_counts_its_rpcs_by_method_and_code(
    metered_services: Services,
) -> None:
    tokens = login(metered_services.gateway)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    metered_services.gateway.get("/v1/profile", headers=bearer)
    metered_services.gateway.patch("/v1/profile", json={"bio": "hi"}, headers=bearer)

    text = service_metrics(metered_services.profile.metrics_port)

    for method in ("GetProfile", "UpdateProfile"):
        labels = {"grpc_service": PROFILE_SERVICE, "grpc_method": method, "grpc_code": "OK"}
        assert sample(text, "grpc_server_handled_total", labels) == 1
    assert tokens["access_token"] not in text


def test_the_metrics_endpoint_stops_with_the_service(metered_services: Services) -> None:
    port = metered_services.auth.metrics_port
    service_metrics(port)
    metered_services.auth.stop(0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_without_a_metrics_port_no_endpoint_is_started(
    services_factory: ServicesFactory, tmp_path: Path
) -> None:
    services = services_factory(
        f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'p.db'}", metrics_port=None
    )
    assert services.auth.metrics_port is None
    assert services.profile.metrics_port is None


@pytest.mark.parametrize(
    ("config", "variable", "default"),
    [(AuthConfig, "AUTH_METRICS_PORT", 9101), (ProfileConfig, "PROFILE_METRICS_PORT", 9102)],
)
def test_metrics_ports_default_can_be_chosen_or_turned_off(
    config: type[AuthConfig] | type[ProfileConfig], variable: str, default: int
) -> None:
    assert config.from_env(Env({})).metrics_port == default
    assert config.from_env(Env({variable: "9200"})).metrics_port == 9200
    assert config.from_env(Env({variable: "off"})).metrics_port is None
    with pytest.raises(ConfigError, match=variable):
        config.from_env(Env({variable: "70000"}))
