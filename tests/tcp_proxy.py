"""TCP stand-ins a test controls: a forwarder to fake an unreachable or frozen server, a
port that refuses every gRPC dial (RefusingListener), and a one-method gRPC server to bring
up on that port afterwards (`one_method_server`).

    with TcpProxy("127.0.0.1", 3306) as proxy:   # listens on 127.0.0.1:<ephemeral>
        url = ...point the service at proxy.port...
        proxy.cut()       # drop every connection (RST) and refuse new ones: server "down"
        proxy.stall()     # keep connections but pass no bytes: server "frozen"
        proxy.restore()   # forward again: server "back"

The listening port stays bound for the proxy's whole life, so the service's
URL stays valid across cut and restore, and the real server is never touched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from concurrent import futures
from types import TracebackType
from typing import Any

import grpc

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, like a crashed peer


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class TcpProxy:
    """Forwards 127.0.0.1:<port> to target_host:target_port until told otherwise."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.1)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._acceptor = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Sockets open through the proxy (client and server sides)."""
        with self._lock:
            return len(self._open)

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until restore()."""
        with self._lock:
            self._cut = True
            doomed, self._open = self._open, set()
        for sock in doomed:
            _reset(sock)
        self._flowing.set()  # stalled pumps wake up and find their sockets gone

    def stall(self) -> None:
        """Accept and hold connections, but forward no byte until restore()."""
        self._flowing.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._flowing.set()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        self._acceptor.join(timeout=2)
        self._listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                refused = self._cut
            if refused:
                _reset(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        try:
            server = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        with self._lock:
            if self._cut:
                _reset(client)
                _reset(server)
                return
            self._open.update((client, server))
        remaining = [2]  # pumps still running; the last one closes the pair

        def pump(source: socket.socket, sink: socket.socket) -> None:
            self._pump(source, sink)
            with self._lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                self._drop(client, server)

        for source, sink in ((client, server), (server, client)):
            threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy source to sink until either side ends; an error ends both directions."""
        try:
            while True:
                data = source.recv(65536)
                self._flowing.wait()
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    return
                sink.sendall(data)
        except OSError:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _drop(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._open.discard(sock)
        for sock in socks:
            sock.close()


class RefusingListener:
    """A TCP port that accepts each connection and closes it at once: every gRPC dial to it
    fails, and `dialled` is set once `count` have (the channel's reconnect backoff grows
    with each failed dial, up to the channels' maximum of a second)."""

    def __init__(self, count: int) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._count = count
        self.dialled = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        accepted = 0
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed
                return
            connection.close()
            accepted += 1
            if accepted >= self._count:
                self.dialled.set()

    def close(self) -> None:
        self._socket.close()
        self._thread.join(timeout=10)


def one_method_server(
    port: int, service: str, method: str, handler: grpc.RpcMethodHandler[Any, Any]
) -> grpc.Server:
    """A gRPC server on 127.0.0.1:port that serves service/method only (not yet started)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2),
        handlers=[grpc.method_handlers_generic_handler(service, {method: handler})],
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    return server
