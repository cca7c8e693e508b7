"""In-process auth and profile services behind a gateway test client, for observability tests."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from flask.testing import FlaskClient
from grpc_health.v1 import health_pb2, health_pb2_grpc

from auth_svc.config import AuthConfig
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.server import AuthServer
from auth_svc.server import build_server as build_auth_server
from authgate_common.db_watch import DatabaseCheckSettings
from authgate_common.grpc_server import RunningServer, ServerSettings
from authgate_common.tokens import TokenSettings
from profile_svc.migrations import PROFILE_MIGRATIONS
from profile_svc.server import build_server as build_profile_server
from tests.fixtures.auth_fixtures import CHEAP_ARGON2
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.fixtures.profile_fixtures import profile_test_config

PASSWORD = "correct horse battery staple"
# Checks often, so that a test sees a database outage within a second or so.
FAST_DB_CHECK = DatabaseCheckSettings(interval_seconds=0.2, timeout_seconds=1.0)


@dataclass
class Services:
    auth: AuthServer
    profile: RunningServer
    gateway: FlaskClient

    @property
    def profile_target(self) -> str:
        return f"127.0.0.1:{self.profile.port}"


ServicesFactory = Callable[..., Services]


@pytest.fixture
def services_factory(
    auth_keys_dir: Path,
    token_settings: TokenSettings,
    gateway_client_factory: GatewayClientFactory,
) -> Iterator[ServicesFactory]:
    started: list[RunningServer] = []

    def start(
        auth_database_url: str,
        profile_database_url: str,
        *,
        db_check: DatabaseCheckSettings = FAST_DB_CHECK,
        metrics_port: int | None = None,
    ) -> Services:
        AUTH_MIGRATIONS.upgrade(auth_database_url)
        PROFILE_MIGRATIONS.upgrade(profile_database_url)
        auth = build_auth_server(
            AuthConfig(
                database_url=auth_database_url,
                keys_dir=auth_keys_dir,
                server=ServerSettings(host="127.0.0.1", port=0, max_workers=8, grace_seconds=1),
                tokens=token_settings,
                argon2=CHEAP_ARGON2,
                db_check=db_check,
                metrics_port=metrics_port,
            )
        )
        started.append(auth)
        profile_config = dataclasses.replace(
            profile_test_config(profile_database_url, token_settings, auth_target=auth.target),
            db_check=db_check,
            metrics_port=metrics_port,
        )
        profile = build_profile_server(profile_config)
        started.append(profile)
        gateway = gateway_client_factory(auth.target, f"127.0.0.1:{profile.port}", token_settings)
        return Services(auth=auth, profile=profile, gateway=gateway)

    yield start
    for running in reversed(started):
        running.stop(0)


@pytest.fixture
def services(services_factory: ServicesFactory, database_url: str) -> Services:
    """Both services on the `database_url` backend (SQLite, then MariaDB)."""
    return services_factory(database_url, database_url)


def health_status(target: str) -> str:
    """The server's grpc.health.v1 status name, or UNREACHABLE."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=2
            )
        except grpc.RpcError:
            return "UNREACHABLE"
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


def login(gateway: FlaskClient, username: str = "alice") -> dict[str, str]:
    """Register and log in username; the token response."""
    registered = gateway.post(
        "/v1/auth/register", json={"username": username, "password": PASSWORD}
    )
    assert registered.status_code == 201, registered.get_data(as_text=True)
    response = gateway.post("/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.get_data(as_text=True)
    tokens: dict[str, str] = response.get_json()
    return tokens
