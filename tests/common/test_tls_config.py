"""TLS settings are read once at start; every unusable file is a ConfigError naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from auth_svc.config import AuthConfig
from authgate_common.config import ConfigError, Env
from authgate_common.tls import ClientTls, ServerTls
from gateway.config import GatewayConfig
from profile_svc.config import ProfileConfig
from tests.fixtures.tls_fixtures import TlsFiles

CERT = "AUTH_GRPC_TLS_CERT"
KEY = "AUTH_GRPC_TLS_KEY"


def server_tls(values: dict[str, str]) -> ServerTls | None:
    return ServerTls.from_env(Env(values), cert_variable=CERT, key_variable=KEY)


def test_no_tls_variables_mean_plaintext() -> None:
    assert server_tls({}) is None
    assert ClientTls.from_env(Env({})) is None


def test_server_certificate_and_key_are_read_at_start(tls_files: TlsFiles) -> None:
    tls = server_tls(tls_files.server_env("AUTH"))
    assert tls is not None
    assert tls.certificate_chain == tls_files.server_cert.read_bytes()
    assert tls.private_key == tls_files.server_key.read_bytes()
    assert not tls.requires_client_certificate


def test_client_ca_on_the_server_requires_client_certificates(tls_files: TlsFiles) -> None:
    tls = server_tls(tls_files.server_env("AUTH", mutual=True))
    assert tls is not None
    assert tls.requires_client_certificate


def test_client_tls_with_its_own_certificate(tls_files: TlsFiles) -> None:
    tls = ClientTls.from_env(Env(tls_files.client_env(with_certificate=True)))
    assert tls is not None
    assert tls.root_ca == tls_files.ca.read_bytes()
    assert tls.certificate_chain == tls_files.client_cert.read_bytes()


def test_repr_shows_no_key_material(tls_files: TlsFiles) -> None:
    shown = repr(tls_files.server_tls()) + repr(tls_files.client_tls(with_certificate=True))
    assert "PRIVATE KEY" not in shown
    assert "CERTIFICATE" not in shown


def test_missing_server_file_names_the_variable(tls_files: TlsFiles, tmp_path: Path) -> None:
    env = {**tls_files.server_env("AUTH"), KEY: str(tmp_path / "absent.key")}
    with pytest.raises(ConfigError, match=rf"^{KEY}: no file at .*absent\.key"):
        server_tls(env)


def test_unreadable_file_names_the_variable(tls_files: TlsFiles, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{CERT}: .* is a directory"):
        server_tls({**tls_files.server_env("AUTH"), CERT: str(tmp_path)})


def test_certificate_alone_is_refused(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match=f"{CERT} and {KEY} must be set together"):
        server_tls({CERT: str(tls_files.server_cert)})


def test_a_key_is_not_a_certificate(tls_files: TlsFiles) -> None:
    env = {**tls_files.server_env("AUTH"), CERT: str(tls_files.server_key)}
    with pytest.raises(ConfigError, match=f"^{CERT}: .* holds no PEM certificate"):
        server_tls(env)


def test_a_certificate_is_not_a_key_and_the_message_quotes_no_file(tls_files: TlsFiles) -> None:
    env = {**tls_files.server_env("AUTH"), KEY: str(tls_files.server_cert)}
    with pytest.raises(ConfigError, match=f"^{KEY}: .* holds no unencrypted PEM private key$"):
        server_tls(env)


def test_a_key_of_another_certificate_is_refused(tls_files: TlsFiles) -> None:
    env = {**tls_files.server_env("AUTH"), KEY: str(tls_files.client_key)}
    with pytest.raises(ConfigError, match=f"{KEY} is not the key of the certificate in {CERT}"):
        server_tls(env)


def test_client_ca_without_server_tls_is_refused(tls_files: TlsFiles) -> None:
    with pytest.raises(ConfigError, match="GRPC_TLS_CLIENT_CA needs TLS on the server"):
        server_tls({"GRPC_TLS_CLIENT_CA": str(tls_files.ca)})


def test_missing_ca_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^GRPC_TLS_CA: no file at"):
        ClientTls.from_env(Env({"GRPC_TLS_CA": str(tmp_path / "ca.crt")}))


def test_client_certificate_without_its_key_is_refused(tls_files: TlsFiles) -> None:
    env = {**tls_files.client_env(), "GRPC_TLS_CLIENT_CERT": str(tls_files.client_cert)}
    with pytest.raises(ConfigError, match="GRPC_TLS_CLIENT_CERT and GRPC_TLS_CLIENT_KEY"):
        ClientTls.from_env(Env(env))


def test_client_certificate_without_a_ca_is_refused(tls_files: TlsFiles) -> None:
    env = tls_files.client_env(with_certificate=True)
    del env["GRPC_TLS_CA"]
    with pytest.raises(ConfigError, match="GRPC_TLS_CLIENT_CERT needs TLS: set GRPC_TLS_CA"):
        ClientTls.from_env(Env(env))


@pytest.mark.parametrize(
    ("config_type", "prefix"), [(AuthConfig, "AUTH"), (ProfileConfig, "PROFILE")]
)
def test_services_read_their_own_certificate_variables(
    tls_files: TlsFiles, config_type: type[AuthConfig] | type[ProfileConfig], prefix: str
) -> None:
    config = config_type.from_env(Env(tls_files.server_env(prefix, mutual=True)))
    assert config.server.tls is not None
    assert config.server.tls.requires_client_certificate


def test_profile_service_and_gateway_read_the_client_settings(tls_files: TlsFiles) -> None:
    env = Env(tls_files.client_env(with_certificate=True))
    assert ProfileConfig.from_env(env).auth_tls == tls_files.client_tls(with_certificate=True)
    assert GatewayConfig.from_env(env).upstream_tls == tls_files.client_tls(with_certificate=True)
