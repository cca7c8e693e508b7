"""One scaffold for every gRPC service: start, serve, watch the database, expose metrics, stop.

A service supplies its name, its migrations and an `assemble` function that makes
its servicers from the engine (ServiceParts); `build` does everything else the same
way for all, `serve` runs the result until SIGTERM, and `main` is the whole
`python -m <service>` with one exit-code convention:

    0  stopped cleanly (SIGTERM or SIGINT)
    2  configuration error, an address that cannot be bound, or a database schema that
       is not current (one line on stderr)
    1  the database cannot be reached at start (one log line, no traceback)
"""

from __future__ import annotations

import contextlib
import gc
import logging
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import grpc
import sqlalchemy.exc
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from authgate_common.config import ConfigError, Env
from authgate_common.db import make_engine, redact_url
from authgate_common.db_watch import DatabaseCheckSettings, watch_database
from authgate_common.grpc_server import CannotBind, RunningServer, ServerSettings, start_server
from authgate_common.interceptors import RpcObserver
from authgate_common.logs import configure_logging
from authgate_common.metrics import RpcMetrics, serve_metrics
from authgate_common.migrations import MigrationSet, SchemaNotCurrent

log = logging.getLogger(__name__)

EXIT_STOPPED = 0
EXIT_DATABASE_UNREACHABLE = 1
EXIT_CONFIGURATION = 2

# The message of the line a service logs once it serves (see `build`).
LISTENING = "listening"


class ServiceConfig(Protocol):
    """The settings the scaffold reads; each service's config has them and more."""

    @property
    def database_url(self) -> str: ...
    @property
    def server(self) -> ServerSettings: ...
    @property
    def metrics_port(self) -> int | None: ...
    @property
    def db_check(self) -> DatabaseCheckSettings: ...
    @property
    def log_level(self) -> str: ...


class Background(Protocol):
    """Work a service runs beside its server, such as the key reloader."""

    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class ServiceParts:
    """What one service adds to the shared server."""

    register: Callable[[grpc.Server], None]
    service_names: Sequence[str]
    interceptors: Sequence[grpc.ServerInterceptor] = ()
    # Beside the grpc_server_* metrics every service has.
    observers: Sequence[RpcObserver] = ()
    # Started once the server serves; stopped first on stop.
    background: Sequence[Background] = ()
    # Run as the stop begins, before in-flight calls are waited for: what would hold them
    # open (server streams that never end by themselves).
    on_stopping: Sequence[Callable[[], None]] = ()
    # Run on stop (and on a failed start), newest first, before the engine is disposed.
    closers: Sequence[Callable[[], None]] = ()
    signal_handlers: Mapping[signal.Signals, Callable[[], None]] = field(default_factory=dict)
    # Extra fields of the "listening" line (never a secret).
    log_fields: Mapping[str, object] = field(default_factory=dict)


# Makes a service's parts from its engine and the registry its metrics go to.
Assemble = Callable[[Engine, CollectorRegistry], ServiceParts]


def build(
    name: str, config: ServiceConfig, *, migrations: MigrationSet, assemble: Assemble
) -> RunningServer:
    """A started service: schema checked, server serving, database watched, /metrics up.

    Port 0 binds a free port (`.port`, `.metrics_port`). Once everything runs, one
    line is logged: message "listening" with `address` ("host:port"), `port`,
    `metrics_port` (None when off) and `database` (without its password).
    Whatever was made is closed again when a step fails.
    """
    engine = make_engine(config.database_url, pool_size=config.server.max_workers)
    try:
        # Before assembling: a service that will not start must not make anything (keys).
        migrations.require_current(engine)  # `make migrate` creates and updates tables
        registry = CollectorRegistry()
        parts = assemble(engine, registry)
    except BaseException:
        engine.dispose()
        raise
    closers = [engine.dispose, *parts.closers]
    try:
        running = start_server(
            config.server,
            register=parts.register,
            service_names=parts.service_names,
            interceptors=parts.interceptors,
            observers=[RpcMetrics(registry).observe, *parts.observers],
        )
    except BaseException:
        _close(closers)
        raise
    running.on_stop.extend(closers)
    try:
        _start_operations(running, engine, registry, config, name)
        for work in parts.background:
            work.start()
            running.on_stop.append(work.stop)
    except BaseException:
        running.stop(0)
        raise
    running.signal_handlers = parts.signal_handlers
    running.on_stopping.extend(parts.on_stopping)
    log.info(
        LISTENING,
        extra={
            "address": running.target,
            "port": running.port,
            "metrics_port": running.metrics_port,
            "database": redact_url(config.database_url),
            **parts.log_fields,
        },
    )
    return running


def _start_operations(
    running: RunningServer,
    engine: Engine,
    registry: CollectorRegistry,
    config: ServiceConfig,
    name: str,
) -> None:
    """The database watch (health follows it) and, with a port, the /metrics endpoint."""
    watcher = watch_database(engine, running.set_serving, config.db_check, name=name)
    if watcher is not None:
        running.on_stop.append(watcher.stop)
    if config.metrics_port is not None:
        try:
            endpoint = serve_metrics(registry, config.server.host, config.metrics_port)
        except OSError as exc:
            address = f"{config.server.host}:{config.metrics_port}"
            raise CannotBind(f"cannot bind the metrics endpoint {address}: {exc.strerror}") from exc
        running.on_stop.append(endpoint.stop)
        running.metrics_port = endpoint.port


def _close(closers: list[Callable[[], None]]) -> None:
    while closers:
        closers.pop()()


# Signals that may come while the service starts: noted, then acted on once it serves.
_EARLY_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def note_early_signals() -> list[signal.Signals]:
    """Note the signals that come before `serve` installs its handlers, and return the list.

    The port answers before the service has finished starting (health and metrics come
    up in order): a SIGTERM or SIGHUP sent as soon as it does must not find the default
    action, which ends the process at once.
    """
    received: list[signal.Signals] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum))

    for signum in _EARLY_SIGNALS:
        signal.signal(signum, note)
    return received


_SIGNAL_CHECK_SECONDS = 0.5


def _wait_for_stop(stop: threading.Event) -> None:
    """Block the main thread until stop is set by a signal handler.

    Python runs signal handlers in the main thread, between bytecodes: a SIGTERM the
    kernel hands to one of gRPC's threads leaves a main thread blocked in a bare wait()
    asleep for good (the stop never came, seen under load), and a wait with a timeout
    runs the handler only when it wakes (half a second of every stop, on average a
    quarter). With a wakeup fd, the C-level handler writes a byte wherever the signal
    landed, which ends the select at once; the timeout stays as a safety net.
    """
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    try:
        while not stop.is_set():
            select.select([reader], [], [], _SIGNAL_CHECK_SECONDS)
            with contextlib.suppress(BlockingIOError):
                reader.recv(64)
    finally:
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()


def serve(
    running: RunningServer,
    *,
    grace_seconds: float,
    early_signals: Sequence[signal.Signals] = (),
) -> None:
    """Block until SIGTERM or SIGINT, then stop gracefully; other signals run their handlers.

    early_signals (from `note_early_signals`) are acted on first, in the order they came.
    """
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping", extra={"signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    for signum, handle in running.signal_handlers.items():
        signal.signal(signum, _calling(handle))
    for early in early_signals:
        if early in (signal.SIGTERM, signal.SIGINT):
            request_stop(early, None)
        elif early in running.signal_handlers:
            running.signal_handlers[early]()
    _wait_for_stop(stop)
    running.stop(grace_seconds)
    log.info("stopped")


def _calling(handle: Callable[[], None]) -> Callable[[int, object], None]:
    # Handlers only wake their worker (set an event): safe to run in a signal handler.
    def on_signal(_signum: int, _frame: object) -> None:
        handle()

    return on_signal


Config = TypeVar("Config", bound=ServiceConfig)


def main(
    name: str,
    load_config: Callable[[Env], Config],
    build_server: Callable[[Config], RunningServer],
) -> int:
    """`python -m <name>`: configure from the environment, serve until stopped; the exit code."""
    try:
        config = load_config(Env.from_os())
    except ConfigError as exc:
        return _refuse(name, f"configuration error: {exc}")
    configure_logging(name, config.log_level)
    early_signals = note_early_signals()
    try:
        running = build_server(config)
    except ConfigError as exc:  # found while assembling, e.g. an unusable keys folder
        return _refuse(name, f"configuration error: {exc}")
    except (SchemaNotCurrent, CannotBind) as exc:
        return _refuse(name, str(exc))
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        # The error's type only: driver messages may name hosts and users.
        log.error(
            "cannot reach the database at start",
            extra={"database": redact_url(config.database_url), "error": type(exc.orig).__name__},
        )
        return EXIT_DATABASE_UNREACHABLE
    # What start made (modules, descriptors, the engine) lives as long as the process: out
    # of the collector's sight it costs no full collection while serving, nor the one at
    # exit (0.3 s of CPU and of every stop, measured).
    gc.freeze()
    serve(running, grace_seconds=config.server.grace_seconds, early_signals=early_signals)
    return EXIT_STOPPED


def _refuse(name: str, reason: str) -> int:
    print(f"{name}: {reason}", file=sys.stderr)
    return EXIT_CONFIGURATION
