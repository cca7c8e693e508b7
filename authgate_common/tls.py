"""Optional TLS (and mutual TLS) between the gateway and the gRPC services.

Certificate and key files are named in the environment, read and parsed once
at start; a missing, unreadable or malformed file is a ConfigError naming the
variable. The PEM bytes are kept, and gRPC credentials are made from them where
a server or channel is made (after any fork).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from authgate_common import settings as shared
from authgate_common.config import ConfigError, Env

# Declared in authgate_common.settings: read by every process that dials a service ...
CA_VARIABLE = shared.GRPC_TLS_CA.name
CLIENT_CERT_VARIABLE = shared.GRPC_TLS_CLIENT_CERT.name
CLIENT_KEY_VARIABLE = shared.GRPC_TLS_CLIENT_KEY.name
# ... and by both services: when set, callers must present a certificate signed by it.
CLIENT_CA_VARIABLE = shared.GRPC_TLS_CLIENT_CA.name


@dataclass(frozen=True, repr=False)
class ServerTls:
    """A server's certificate chain and key, and the CA its clients must be signed by (mTLS)."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @property
    def requires_client_certificate(self) -> bool:
        return self.client_ca is not None

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )

    def __repr__(self) -> str:  # never the key, not even in a traceback
        return f"ServerTls(mutual={self.requires_client_certificate})"

    @classmethod
    def from_env(cls, env: Env, *, cert_variable: str, key_variable: str) -> ServerTls | None:
        """TLS when both cert_variable and key_variable are set; None when neither is."""
        cert_path = _optional_path(env, cert_variable)
        key_path = _optional_path(env, key_variable)
        if cert_path is None and key_path is None:
            if _optional_path(env, CLIENT_CA_VARIABLE) is not None:
                raise ConfigError(
                    f"{CLIENT_CA_VARIABLE} needs TLS on the server: "
                    f"set {cert_variable} and {key_variable} too"
                )
            return None
        if cert_path is None or key_path is None:
            raise ConfigError(f"{cert_variable} and {key_variable} must be set together")
        chain = read_certificates(cert_variable, cert_path)
        key = read_private_key(key_variable, key_path)
        _check_key_matches(chain, key, cert_variable, key_variable)
        client_ca_path = _optional_path(env, CLIENT_CA_VARIABLE)
        client_ca = (
            None
            if client_ca_path is None
            else read_certificates(CLIENT_CA_VARIABLE, client_ca_path)
        )
        return cls(certificate_chain=chain, private_key=key, client_ca=client_ca)


@dataclass(frozen=True, repr=False)
class ClientTls:
    """The CA that signs the services' certificates, and this client's own pair for mTLS."""

    root_ca: bytes
    certificate_chain: bytes | None = None
    private_key: bytes | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_ca,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def __repr__(self) -> str:
        return f"ClientTls(client_certificate={self.certificate_chain is not None})"

    @classmethod
    def from_env(cls, env: Env) -> ClientTls | None:
        """TLS when GRPC_TLS_CA is set; None (plaintext) when it is not."""
        ca_path = _optional_path(env, CA_VARIABLE)
        cert_path = _optional_path(env, CLIENT_CERT_VARIABLE)
        key_path = _optional_path(env, CLIENT_KEY_VARIABLE)
        if (cert_path is None) != (key_path is None):
            raise ConfigError(
                f"{CLIENT_CERT_VARIABLE} and {CLIENT_KEY_VARIABLE} must be set together"
            )
        if ca_path is None:
            if cert_path is not None:
                raise ConfigError(
                    f"{CLIENT_CERT_VARIABLE} needs TLS: set {CA_VARIABLE} to the services' CA"
                )
            return None
        root_ca = read_certificates(CA_VARIABLE, ca_path)
        if cert_path is None or key_path is None:
            return cls(root_ca=root_ca)
        chain = read_certificates(CLIENT_CERT_VARIABLE, cert_path)
        key = read_private_key(CLIENT_KEY_VARIABLE, key_path)
        _check_key_matches(chain, key, CLIENT_CERT_VARIABLE, CLIENT_KEY_VARIABLE)
        return cls(root_ca=root_ca, certificate_chain=chain, private_key=key)


def channel_credentials(tls: ClientTls | None) -> grpc.ChannelCredentials | None:
    return None if tls is None else tls.credentials()


def _optional_path(env: Env, name: str) -> Path | None:
    # The services' own certificate variables are declared in their settings tables.
    raw = env.values.get(name, "").strip()
    return Path(raw) if raw else None


def _read(variable: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{variable}: no file at {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"{variable}: {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path} ({exc.strerror})") from None


def read_certificates(variable: str, path: Path) -> bytes:
    """The file's bytes, once checked to hold at least one PEM certificate."""
    data = _read(variable, path)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{variable}: {path} holds no PEM certificate") from None
    return data


def read_private_key(variable: str, path: Path) -> bytes:
    """The file's bytes, once checked to hold an unencrypted PEM private key."""
    data = _read(variable, path)
    try:
        serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # The parser's message may quote the file: say only what is wrong.
        raise ConfigError(f"{variable}: {path} holds no unencrypted PEM private key") from None
    return data


def _check_key_matches(chain: bytes, key: bytes, cert_variable: str, key_variable: str) -> None:
    leaf = x509.load_pem_x509_certificates(chain)[0]
    public_key = serialization.load_pem_private_key(key, password=None).public_key()
    encoding = serialization.Encoding.DER
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(encoding, spki) != public_key.public_bytes(encoding, spki):
        raise ConfigError(f"{key_variable} is not the key of the certificate in {cert_variable}")
