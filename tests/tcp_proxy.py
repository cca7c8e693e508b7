"""A small threaded TCP forwarder that a test controls, to cut a service off from a server.

    with TcpProxy("127.0.0.1", 3306) as proxy:      # listens on 127.0.0.1:<proxy.port>
        ...point the service at proxy.port...
        proxy.close()   # refuse new connections and cut the open ones: the server is "down"
        proxy.open()    # listen again on the same port: the server is "back"

Only the proxy goes down; the real server is never touched.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

_CHUNK = 65536


class TcpProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._accepting: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        """Listen (on the same port as before, if it was opened before) and forward."""
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop = threading.Event()
        self._accepting = threading.Thread(
            target=self._accept_loop, args=(listener, self._stop), name="tcp-proxy", daemon=True
        )
        self._accepting.start()

    def close(self) -> None:
        """Stop listening (new connections are refused) and cut every open connection."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stop.set()
        if self._accepting is not None:
            self._accepting.join(timeout=2)
        listener.close()
        with self._lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            _hang_up(connection)

    def __enter__(self) -> TcpProxy:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self, listener: socket.socket, stop: threading.Event) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            while not stop.is_set():
                if not selector.select(timeout=0.05):
                    continue
                try:
                    client, _ = listener.accept()
                except OSError:
                    return
                self._connect(client, stop)

    def _connect(self, client: socket.socket, stop: threading.Event) -> None:
        try:
            server = socket.create_connection(self.upstream, timeout=5)
        except OSError:
            _hang_up(client)
            return
        server.settimeout(None)
        with self._lock:
            if stop.is_set():
                _hang_up(client)
                _hang_up(server)
                return
            self._connections.update((client, server))
        for source, target in ((client, server), (server, client)):
            threading.Thread(
                target=self._pump, args=(source, target), name="tcp-proxy-pump", daemon=True
            ).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(_CHUNK):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.discard(source)
                self._connections.discard(target)
            _hang_up(source)
            _hang_up(target)


def _hang_up(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        connection.close()
