"""Prometheus metrics of the gRPC services, and the small HTTP endpoint that serves them.

Each server gets a CollectorRegistry of its own (no process-wide default
registry), so tests can run several servers in one process. Labels carry only
bounded values: method names, status codes, fixed outcome names.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

# Up to 10 s: argon2 logins take tens to hundreds of milliseconds, reads a few.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def split_method(full_method: str) -> tuple[str, str]:
    """ "/pkg.Service/Method" -> ("pkg.Service", "Method")."""
    service, _, method = full_method.lstrip("/").rpartition("/")
    return service, method


class RpcMetrics:
    """Counts and times every RPC a server answers, by service, method and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_service", "grpc_method", "grpc_code")
        self.handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, by method and status code.",
            labels,
            registry=registry,
        )
        self.latency = Histogram(
            "grpc_server_handling_seconds",
            "Time to answer an RPC, by method and status code.",
            labels,
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        service, method = split_method(full_method)
        self.handled.labels(service, method, code.name).inc()
        self.latency.labels(service, method, code.name).observe(seconds)


@dataclass
class MetricsEndpoint:
    """A started HTTP server answering /metrics from one registry, on a daemon thread."""

    port: int
    _server: WSGIServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve registry over HTTP on host:port (0 picks a free port: see `.port`)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    bound: int = server.server_port
    log.info("metrics endpoint listening", extra={"address": f"{host}:{bound}"})
    return MetricsEndpoint(bound, server, thread)
