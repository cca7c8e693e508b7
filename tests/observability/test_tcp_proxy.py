"""The test TCP proxy forwards, cuts, stalls and restores (tests/tcp_proxy.py)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.tcp_proxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def echo_proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with TcpProxy("127.0.0.1", server.server_address[1]) as proxy:
            yield proxy
    finally:
        server.shutdown()
        server.server_close()


def echo(proxy: TcpProxy, payload: bytes = b"ping", timeout: float = 2) -> bytes:
    with socket.create_connection((proxy.host, proxy.port), timeout=timeout) as sock:
        sock.sendall(payload)
        return sock.recv(1024)


def test_bytes_pass_both_ways(echo_proxy: TcpProxy) -> None:
    assert echo(echo_proxy) == b"ping"


def is_dead(sock: socket.socket) -> bool:
    """True when the connection is reset or closed by the other end."""
    try:
        sock.sendall(b"b")
        return sock.recv(16) == b""
    except OSError:
        return True


def test_a_cut_proxy_resets_open_connections_and_refuses_new_ones(echo_proxy: TcpProxy) -> None:
    with socket.create_connection((echo_proxy.host, echo_proxy.port), timeout=2) as sock:
        sock.sendall(b"a")
        assert sock.recv(16) == b"a"

        echo_proxy.cut()

        assert is_dead(sock)
    try:
        fresh = socket.create_connection((echo_proxy.host, echo_proxy.port), timeout=2)
    except (ConnectionResetError, ConnectionRefusedError):
        return  # reset while connecting: refused, as it should be
    with fresh:
        assert is_dead(fresh)


def test_a_stalled_proxy_passes_nothing_until_restored(echo_proxy: TcpProxy) -> None:
    echo_proxy.stall()
    with socket.create_connection((echo_proxy.host, echo_proxy.port), timeout=0.3) as sock:
        sock.sendall(b"held")
        with pytest.raises(TimeoutError):
            sock.recv(16)
        echo_proxy.restore()
        sock.settimeout(2)
        assert sock.recv(16) == b"held"


def test_a_restored_proxy_forwards_again_on_the_same_port(echo_proxy: TcpProxy) -> None:
    port = echo_proxy.port
    echo_proxy.cut()
    echo_proxy.restore()
    assert echo_proxy.port == port
    assert echo(echo_proxy) == b"ping"
