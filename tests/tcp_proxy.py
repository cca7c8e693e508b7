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

import socket
import threading
from concurrent import futures
from typing import Any

import grpc

from devstack.forwarder import TcpForwarder


class TcpProxy(TcpForwarder):
    """Forwards 127.0.0.1:<port> to target_host:target_port until told otherwise."""

    target: tuple[str, int]  # always given

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self._cut = False
        self._flowing = threading.Event()
        self._flowing.set()
        super().__init__((target_host, target_port), host=host)

    def cut(self) -> None:
        """Reset every open connection and refuse new ones until restore()."""
        with self._lock:
            self._cut = True
        self.reset_all()
        self._flowing.set()  # stalled pumps wake up and find their sockets gone

    def stall(self) -> None:
        """Accept and hold connections, but forward no byte until restore()."""
        self._flowing.clear()

    def restore(self) -> None:
        with self._lock:
            self._cut = False
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        super().close()

    def admits(self) -> bool:
        return not self._cut

    def before_send(self) -> None:
        self._flowing.wait()


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
