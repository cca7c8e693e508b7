"""Serve the gateway under granian (WSGI) instead of gunicorn: `python -m gateway.granian_serve`.

What gateway/gunicorn_conf.py and its hooks do for gunicorn, done here for granian:
the whole settings table is validated first (one line and status 2 on a bad value); the
Prometheus multiprocess folder and the instance's shared folder are prepared before the
workers fork and removed at exit (gateway.metrics_dir, gateway.instance_dir); a worker
that died and was replaced has its live gauges marked dead; SIGTERM stops accepting and
lets requests in flight finish (within GATEWAY_GRACEFUL_TIMEOUT); and the socket is bound
here, so a GATEWAY_PORT of 0 is reported: granian's own "Listening at:" line names the
port the OS gave.

granian has no option to take a bound socket (emmett-framework/granian#786), so one
private method of its multiprocess server is replaced (`_init_shared_socket`, as granian
itself shares one socket off Linux); pyproject.toml holds granian to the release this was
written against.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from granian._granian import SocketHolder
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.server import MPServer

from gateway import instance_dir, metrics_dir, serving
from gateway.server_name import SERVER_NAME

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

# Loaded by each worker (a factory: called there, after the fork).
APP = "gateway.granian_serve:create_app"
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Queued connections not yet accepted (gunicorn's default backlog).
BACKLOG = 2048


def create_app() -> Flask:
    """The gateway app, answering `Server: authgate` as under gunicorn.

    granian sends `server: granian` unless the application names one, and passes
    SERVER_SOFTWARE "Granian"; both are replaced. (granian's own refusals of malformed
    or oversized requests carry no Server header.)
    """
    # Imported here, in the worker: the app imports prometheus_client, which must not be
    # imported before the main process has set PROMETHEUS_MULTIPROC_DIR.
    from gateway.wsgi import create_app_from_env

    relay_stop_signals()
    app = create_app_from_env()
    app.wsgi_app = with_server_name(app.wsgi_app)  # type: ignore[method-assign,assignment]
    return app


def with_server_name(inner: WSGIApplication) -> WSGIApplication:
    def named(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["SERVER_SOFTWARE"] = SERVER_NAME

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("Server", SERVER_NAME))
            return start_response(status, headers, exc_info)

        return inner(environ, start)

    return named


def relay_stop_signals() -> None:
    """Run the worker's SIGTERM/SIGINT handler whichever thread the signal reached.

    A granian worker's main thread waits for its stop event in a lock acquire; Python runs
    signal handlers only in the main thread, and a signal the kernel hands another thread
    (gRPC's, granian's) does not wake that wait. Seen in tests/e2e/test_graceful_stop.py:
    2 SIGTERMs in 7 left a worker serving (main thread still in its wait, no "Stopping
    worker" line) until killed at the timeout; with this relay, 24 in 24 stopped at once.
    The C-level handler writes the signal's number to the wakeup fd from any thread; a
    thread of ours reads it and calls the handler granian set
    (its stop event is idempotent: the main thread running it too does no harm). One that
    comes while the app is still being made waits for granian's handler, which is set once
    the worker serves: the worker then stops at once instead of being killed later.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def booting(number: int, frame: object) -> None:
        """Until granian sets its own: the relay below acts on the signal."""

    for number in _STOP_SIGNALS:
        signal.signal(number, booting)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def relay() -> None:
        while True:
            for number in os.read(read_end, 64):
                if number not in _STOP_SIGNALS:
                    continue
                while (handler := signal.getsignal(number)) is booting:
                    time.sleep(0.01)
                if callable(handler):
                    handler(number, None)

    threading.Thread(target=relay, name="stop-signal-relay", daemon=True).start()


def bind(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A listening TCP socket on host and port (0: a free port the OS picks), inheritable."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(backlog)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def http1_settings(settings: serving.ServingSettings) -> HTTP1Settings:
    """granian's HTTP/1 settings for the serving settings.

    header_read_timeout bounds the wait for a request's headers, the next request's on a
    kept-alive connection included (gunicorn's keepalive); max_buffer_size bounds the
    request head, so a header of max_header_field_bytes fits and a much larger one is
    refused with 431.
    """
    keepalive = settings.keepalive_seconds > 0
    return HTTP1Settings(
        header_read_timeout=1000 * (settings.keepalive_seconds if keepalive else 30),
        keep_alive=keepalive,
        max_buffer_size=2 * settings.max_header_field_bytes,
    )


class GatewayServer(MPServer):
    """granian's multiprocess server, serving on a socket bound beforehand."""

    def __init__(self, listener: socket.socket, settings: serving.ServingSettings) -> None:
        host, port = listener.getsockname()[:2]
        self._listener = listener
        super().__init__(
            APP,
            address=host,
            port=port,
            interface=Interfaces.WSGI,
            factory=True,
            workers=settings.workers,
            blocking_threads=settings.threads,
            backlog=BACKLOG,
            http1_settings=http1_settings(settings),
            websockets=False,
            respawn_failed_workers=True,
            # Workers still busy this long after SIGTERM are killed; granian reads 0 as
            # "wait for ever", so 0 s is 1 s here.
            workers_kill_timeout=max(1, settings.graceful_timeout_seconds),
            log_access=False,
        )

    def _init_shared_socket(self) -> None:
        # What granian does with a socket it bound itself where SO_REUSEPORT is not used:
        # every worker inherits and accepts on this one.
        # (granian's stub gives SocketHolder no constructor; it takes fd, is_uds, backlog.)
        holder = SocketHolder(self._listener.fileno(), False, self.backlog)  # type: ignore[call-arg]
        self._ssp = None
        self._shd = holder  # type: ignore[assignment]
        self._sfd = holder.get_fd()
        self._sso = self._listener

    def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
        # Replaced workers (a crash, SIGHUP): their live gauges no longer count, as
        # gunicorn's child_exit hook does (gateway.metrics_dir).
        retired = [self.wrks[index].inner.pid for index in workers]
        super()._respawn_workers(workers, *args, **kwargs)
        for pid in retired:
            metrics_dir.mark_process_dead(pid)


def main() -> int:
    settings = serving.settings_or_exit()
    try:
        listener = bind(settings.host, settings.port)
    except OSError as exc:
        print(f"gateway: cannot listen on {settings.bind}: {exc}", file=sys.stderr)
        return 1
    server = GatewayServer(listener, settings)
    # Before any worker forks: the workers inherit the variables these set.
    metrics_dir.on_starting(server)
    instance_dir.on_starting(server)
    try:
        server.serve()
    finally:
        metrics_dir.on_exit(server)
        instance_dir.on_exit(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
