"""Prometheus metrics of the gRPC services, and the small HTTP endpoint that serves them.

Each server gets a CollectorRegistry of its own (no process-wide default
registry), so tests can run several servers in one process. Labels carry only
bounded values: method names, status codes, fixed outcome names.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

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


# How often the endpoint's accept loop looks for a stop: prometheus_client's
# start_http_server keeps socketserver's 0.5 s, which every service stop waited out.
_STOP_POLL_SECONDS = 0.05


class _QuietHandler(WSGIRequestHandler):
    """No stderr line per scrape (the services log JSON only)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> MetricsEndpoint:
    """Serve registry over HTTP on host:port (0 picks a free port: see `.port`).

    What prometheus_client's start_http_server does (without TLS, which the services
    do not offer here), but with an accept loop that notices a stop within 50 ms.
    """

    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(
        str(address[0]), port, make_wsgi_app(registry), Server, handler_class=_QuietHandler
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": _STOP_POLL_SECONDS},
        name="metrics-endpoint",
        daemon=True,
    )
    thread.start()
    bound: int = server.server_port
    log.info("metrics endpoint listening", extra={"address": f"{host}:{bound}"})
    return MetricsEndpoint(bound, server, thread)
