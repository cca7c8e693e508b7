"""`python -m authgate_common.healthcheck`: the probe the compose healthchecks run."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from authgate_common.grpc_server import RunningServer, ServerSettings, start_server
from authgate_common.healthcheck import main
from tests.fixtures.tls_fixtures import TlsFiles

TIMEOUT = ["--timeout", "2"]


@pytest.fixture
def grpc_server() -> Iterator[RunningServer]:
    running = start_server(
        ServerSettings("127.0.0.1", 0, max_workers=2),
        register=lambda server: None,
        service_names=["authgate.test.v1.TestService"],
    )
    yield running
    running.stop(0)


class _StatusHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status = 200 if self.path == "/readyz" else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet test output
        pass


@pytest.fixture
def http_base_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StatusHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nobody else takes it) but not listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_serving_grpc_server_is_healthy(grpc_server: RunningServer) -> None:
    assert main([f"127.0.0.1:{grpc_server.port}", *TIMEOUT]) == 0


def test_named_grpc_service_can_be_checked(grpc_server: RunningServer) -> None:
    target = f"127.0.0.1:{grpc_server.port}"
    assert main([target, "--service", "authgate.test.v1.TestService", *TIMEOUT]) == 0


def test_not_serving_grpc_server_is_unhealthy(
    grpc_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    grpc_server.set_serving(False)
    assert main([f"127.0.0.1:{grpc_server.port}", *TIMEOUT]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err


def test_unreachable_grpc_server_is_unhealthy(
    closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"127.0.0.1:{closed_port}", "--timeout", "1"]) == 1
    assert "unhealthy" in capsys.readouterr().err


def test_url_answering_200_is_healthy(http_base_url: str) -> None:
    assert main([f"{http_base_url}/readyz", *TIMEOUT]) == 0


def test_url_answering_503_is_unhealthy(
    http_base_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([f"{http_base_url}/not-ready", *TIMEOUT]) == 1
    assert "503" in capsys.readouterr().err


def test_unreachable_url_is_unhealthy(closed_port: int) -> None:
    assert main([f"http://127.0.0.1:{closed_port}/readyz", "--timeout", "1"]) == 1


@pytest.fixture
def mtls_grpc_server(tls_files: TlsFiles) -> Iterator[RunningServer]:
    running = start_server(
        ServerSettings("127.0.0.1", 0, max_workers=2, tls=tls_files.server_tls(mutual=True)),
        register=lambda server: None,
        service_names=[],
    )
    yield running
    running.stop(0)


def test_tls_server_is_checked_over_tls_with_the_configured_ca(
    mtls_grpc_server: RunningServer, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in tls_files.client_env(with_certificate=True).items():
        monkeypatch.setenv(name, value)
    assert main([f"127.0.0.1:{mtls_grpc_server.port}", *TIMEOUT]) == 0


def test_tls_server_name_can_differ_from_the_dialled_host(
    mtls_grpc_server: RunningServer, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in tls_files.client_env(with_certificate=True).items():
        monkeypatch.setenv(name, value)
    target = f"127.0.0.1:{mtls_grpc_server.port}"
    assert main([target, "--tls-server-name", "localhost", *TIMEOUT]) == 0
    assert main([target, "--tls-server-name", "auth.example", *TIMEOUT]) == 1


def test_tls_server_is_unhealthy_to_a_plaintext_probe(
    mtls_grpc_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GRPC_TLS_CA", raising=False)
    assert main([f"127.0.0.1:{mtls_grpc_server.port}", *TIMEOUT]) == 1


def test_unusable_tls_settings_are_reported_as_unhealthy(
    grpc_server: RunningServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GRPC_TLS_CA", str(tmp_path / "missing-ca.crt"))
    assert main([f"127.0.0.1:{grpc_server.port}", *TIMEOUT]) == 1
    assert "configuration error: GRPC_TLS_CA: no file at" in capsys.readouterr().err
