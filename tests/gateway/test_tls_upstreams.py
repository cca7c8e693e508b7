"""The gateway and the profile service reach TLS (and mutual TLS) services; without trust, 503."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient

from auth_svc.server import AuthServer, build_server
from authgate_common.grpc_server import RunningServer
from authgate_common.tls import ClientTls
from authgate_common.tokens import TokenSettings
from profile_svc.migrations import PROFILE_MIGRATIONS
from profile_svc.server import build_server as build_profile_server
from tests.fixtures.auth_fixtures import AuthConfigFactory
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.fixtures.profile_fixtures import profile_test_config
from tests.fixtures.services_fixtures import bearer, login
from tests.fixtures.tls_fixtures import TlsFiles

PASSWORD = "correct horse battery staple"
PROBLEM = "application/problem+json"


@dataclasses.dataclass(frozen=True)
class TlsServices:
    auth_target: str
    profile_target: str


@pytest.fixture
def mtls_services(
    auth_config_factory: AuthConfigFactory,
    database_url: str,
    token_settings: TokenSettings,
    tls_files: TlsFiles,
) -> Iterator[TlsServices]:
    """Both services requiring client certificates; profile_svc fetches the JWKS over mTLS."""
    auth_config = auth_config_factory()
    auth: AuthServer = build_server(
        dataclasses.replace(
            auth_config,
            server=dataclasses.replace(auth_config.server, tls=tls_files.server_tls(mutual=True)),
        )
    )
    profile: RunningServer | None = None
    try:
        PROFILE_MIGRATIONS.upgrade(database_url)
        profile_config = profile_test_config(database_url, token_settings, auth_target=auth.target)
        profile = build_profile_server(
            dataclasses.replace(
                profile_config,
                server=dataclasses.replace(
                    profile_config.server, tls=tls_files.server_tls(mutual=True)
                ),
                auth_tls=tls_files.client_tls(with_certificate=True),
            )
        )
        yield TlsServices(auth.target, f"127.0.0.1:{profile.port}")
    finally:
        if profile is not None:
            profile.stop(0)
        auth.stop(0)


def gateway(
    factory: GatewayClientFactory,
    services: TlsServices,
    tokens: TokenSettings,
    tls: ClientTls | None,
) -> FlaskClient:
    return factory(
        services.auth_target,
        services.profile_target,
        tokens,
        upstream_tls=tls,
        grpc_timeout_seconds=2.0,
    )


def test_register_login_and_profile_over_mutual_tls(
    mtls_services: TlsServices,
    gateway_client_factory: GatewayClientFactory,
    token_settings: TokenSettings,
    tls_files: TlsFiles,
) -> None:
    client = gateway(
        gateway_client_factory,
        mtls_services,
        token_settings,
        tls_files.client_tls(with_certificate=True),
    )
    assert client.get("/readyz").status_code == 200
    headers = bearer(login(client, "alice", display_name="Alice"))

    profile = client.get("/v1/profile", headers=headers)
    assert profile.status_code == 200, profile.get_data(as_text=True)
    assert profile.get_json()["display_name"] == "Alice"
    updated = client.patch("/v1/profile", json={"bio": "over TLS"}, headers=headers)
    assert updated.status_code == 200
    assert updated.get_json()["bio"] == "over TLS"


# Refusal happens before any storage is touched: SQLite alone is enough here.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "trust",
    ["plaintext", "ca without a client certificate", "another ca"],
)
def test_gateway_without_the_right_tls_settings_answers_503(
    mtls_services: TlsServices,
    gateway_client_factory: GatewayClientFactory,
    token_settings: TokenSettings,
    tls_files: TlsFiles,
    trust: str,
) -> None:
    tls = {
        "plaintext": None,
        "ca without a client certificate": tls_files.client_tls(),
        "another ca": ClientTls(
            root_ca=tls_files.other_ca.read_bytes(),
            certificate_chain=tls_files.client_cert.read_bytes(),
            private_key=tls_files.client_key.read_bytes(),
        ),
    }[trust]
    client = gateway(gateway_client_factory, mtls_services, token_settings, tls)

    refused = client.post("/v1/auth/login", json={"username": "alice", "password": PASSWORD})
    assert refused.status_code == 503, refused.get_data(as_text=True)
    assert refused.content_type == PROBLEM
    assert "ssl" not in refused.get_data(as_text=True).lower()
    assert client.get("/readyz").status_code == 503
