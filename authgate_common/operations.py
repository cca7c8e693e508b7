"""What every gRPC service runs beside its server: the database watch and /metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from authgate_common.db_watch import DatabaseCheckSettings, watch_database
from authgate_common.grpc_server import RunningServer
from authgate_common.metrics import serve_metrics


def start_operations(
    running: RunningServer,
    engine: Engine,
    *,
    registry: CollectorRegistry,
    host: str,
    metrics_port: int | None,
    db_check: DatabaseCheckSettings,
    name: str,
) -> None:
    """Start the database watch (health follows it) and, with a port, the /metrics endpoint.

    Both stop with the server, before the closers registered earlier (the engine's).
    On failure (e.g. the metrics port is taken) the server is stopped and the error raised.
    """
    try:
        watcher = watch_database(engine, running.set_serving, db_check, name=name)
        if watcher is not None:
            running.on_stop.append(watcher.stop)
        if metrics_port is not None:
            endpoint = serve_metrics(registry, host, metrics_port)
            running.on_stop.append(endpoint.stop)
            running.metrics_port = endpoint.port
    except BaseException:
        running.stop(0)
        raise
