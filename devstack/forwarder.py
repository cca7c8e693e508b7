"""A TCP port bound at once and forwarded to a target that may be named later.

The launcher needs it to start the stack on port 0: auth_svc dials the profile service (for
account deletions) and the profile service dials auth_svc, each at an address fixed when it
starts, so neither could start before the other had its port. The launcher holds one such
port for each, for the stack's life, and hands it to the other; once a service has bound its
own port, connections are passed on to it. One made before waits in the listen queue until
then (the dial just takes longer). Nothing picks a port and lets go of it, so there is no race
with other processes binding port 0.

tests/tcp_proxy.py builds its fault-injecting proxy on this class.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType
from typing import Self

_LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, like a crashed peer


def _reset(sock: socket.socket) -> None:
    """Close `sock` with a TCP reset."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


class TcpForwarder:
    """Listens on host:<ephemeral> from construction and forwards each connection to
    `target` (host, port), read when the connection is accepted: once there is one."""

    def __init__(self, target: tuple[str, int] | None = None, *, host: str = "127.0.0.1") -> None:
        self.target = target
        self._targeted = threading.Event()
        if target is not None:
            self._targeted.set()
        self._listener = socket.create_server((host, 0))
        # accept() wakes up this often to see whether close() was called.
        self._listener.settimeout(0.1)
        self.host = host
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="tcp-forwarder", daemon=True
        )
        self._acceptor.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """Sockets open through the forwarder (client and server sides)."""
        with self._lock:
            return len(self._open)

    def forward_to(self, host: str, port: int) -> None:
        """Pass the connections accepted from now on (and those waiting) to host:port."""
        self.target = (host, port)
        self._targeted.set()

    def reset_all(self) -> None:
        """Reset every open connection (both sides)."""
        with self._lock:
            doomed, self._open = self._open, set()
        for sock in doomed:
            _reset(sock)

    def close(self) -> None:
        self._closed.set()
        self._targeted.set()
        self.reset_all()
        self._acceptor.join(timeout=2)
        self._listener.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def admits(self) -> bool:
        """Whether a connection arriving now is forwarded (a subclass may refuse some)."""
        return True

    def before_send(self) -> None:
        """Called before each chunk is passed on (a subclass may hold it back here)."""

    def _accept_loop(self) -> None:
        self._targeted.wait()
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            if not self.admits():
                _reset(client)
                continue
            threading.Thread(target=self._connect, args=(client,), daemon=True).start()

    def _connect(self, client: socket.socket) -> None:
        target = self.target
        assert target is not None  # accepted only once there is one
        try:
            server = socket.create_connection(target, timeout=5)
        except OSError:
            _reset(client)
            return
        server.settimeout(None)
        with self._lock:
            if not self.admits() or self._closed.is_set():
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
                self.before_send()
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
