"""The gateway's Prometheus metrics and its /metrics route.

Under gunicorn with several workers each worker counts in files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode, chosen when
that variable is set before the library is imported; gateway/gunicorn_conf.py
sees to it) and /metrics adds up all workers' files. Without the variable the
app's own registry is served.

Labels are bounded: route templates (never raw paths), a fixed set of HTTP
methods, status codes, gRPC method names and codes, token rejection reasons.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import grpc
from authgate.auth.v1 import auth_pb2
from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

from authgate_common.metrics import LATENCY_BUCKETS

UNMATCHED_ROUTE = "unmatched"
OTHER_METHOD = "other"
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

_AUTH_SERVICE = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
LOGIN_METHOD = f"/{_AUTH_SERVICE.full_name}/{_AUTH_SERVICE.methods_by_name['Login'].name}"


class GatewayMetrics:
    """Requests, upstream calls, token rejections and login failures of one gateway app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "authgate_gateway_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
        )
        self.request_latency = Histogram(
            "authgate_gateway_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            ("route", "method", "status"),
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.upstream_latency = Histogram(
            "authgate_gateway_upstream_duration_seconds",
            "Time of gRPC calls to the upstream services, by gRPC method and status code.",
            ("grpc_method", "grpc_code"),
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )
        self.token_rejections = Counter(
            "authgate_gateway_token_rejections",
            "Access tokens refused, by reason (missing, expired, signature, unknown_key, ...).",
            ("reason",),
            registry=registry,
        )
        self.login_failures = Counter(
            "authgate_gateway_login_failures",
            "Logins the auth service refused as bad credentials (locked accounts included: "
            "they answer the same).",
            registry=registry,
        )
        self.rate_limit_storage_failures = Counter(
            "authgate_gateway_rate_limit_storage_failures",
            "Times the rate-limit storage failed and requests went unlimited for a while "
            "(the limiter fails open).",
            registry=registry,
        )
        # The labelled children in use, looked up once each: labels() costs as much as the
        # update itself, on every request.
        self._request_children: dict[tuple[str | None, str, int], tuple[Counter, Histogram]] = {}
        self._upstream_children: dict[tuple[str, grpc.StatusCode], Histogram] = {}

    def observe_request(self, route: str | None, method: str, status: int, seconds: float) -> None:
        # Bounded like the labels: route templates, the fixed set of methods, status codes
        # (a client's made-up method is counted as OTHER_METHOD, never kept as sent).
        key = (route, method if method in _HTTP_METHODS else OTHER_METHOD, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (key[0] or UNMATCHED_ROUTE, key[1], str(status))
            children = self.requests.labels(*labels), self.request_latency.labels(*labels)
            self._request_children[key] = children
        count, latency = children
        count.inc()
        latency.observe(seconds)

    def observe_upstream(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        key = (full_method, code)
        latency = self._upstream_children.get(key)
        if latency is None:
            latency = self._upstream_children[key] = self.upstream_latency.labels(
                full_method, code.name
            )
        latency.observe(seconds)
        if full_method == LOGIN_METHOD and code == grpc.StatusCode.UNAUTHENTICATED:
            self.login_failures.inc()

    def token_rejected(self, reason: str) -> None:
        self.token_rejections.labels(reason).inc()

    def rate_limit_storage_failed(self) -> None:
        self.rate_limit_storage_failures.inc()


# Told of each upstream call: (full gRPC method, status code, seconds taken).
RpcObserver = Callable[[str, grpc.StatusCode, float], None]


class UpstreamMetricsInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Times every unary call on an upstream channel, blocking or future, until it completes."""

    def __init__(self, observe: RpcObserver) -> None:
        self._observe = observe

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        started = time.perf_counter()
        method = str(client_call_details.method)
        outcome = continuation(client_call_details, request)

        def done(call: Any) -> None:
            code = call.code() or grpc.StatusCode.UNKNOWN
            self._observe(method, code, time.perf_counter() - started)

        outcome.add_done_callback(done)
        return outcome


def recorded_files(folder: Path) -> list[str]:
    """The folder's metric files, but for any still empty (being made by its worker)."""
    files: list[str] = []
    for path in sorted(folder.glob("*.db")):
        try:
            if path.stat().st_size > 0:
                files.append(str(path))
        except FileNotFoundError:  # a dead worker's live gauges, removed meanwhile
            continue
    return files


class WorkersCollector(multiprocess.MultiProcessCollector):
    """prometheus-client's multiprocess collector, passing over a file still being made.

    The library creates a worker's file and only then sizes it (MmapedDict.__init__). A
    scrape in between read 0 bytes and raised struct.error, losing every worker's
    metrics (a 500); a worker killed in that moment left the empty file, and every later
    scrape failed (prometheus/client_python#1199, open in 0.26). An empty file holds no
    sample, so leaving it out loses none.
    """

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__(registry, path=path)  # type: ignore[no-untyped-call]
        self._folder = Path(path)

    def collect(self) -> Iterable[Metric]:
        merged: Iterable[Metric] = self.merge(recorded_files(self._folder), accumulate=True)  # type: ignore[no-untyped-call]
        return merged


def register_metrics_route(
    app: Flask, metrics: GatewayMetrics, *, multiprocess_dir: str | None
) -> None:
    """GET /metrics: every worker's metrics in multiprocess mode, else this app's registry."""
    if multiprocess_dir:
        registry = CollectorRegistry()
        WorkersCollector(registry, multiprocess_dir)
    else:
        registry = metrics.registry

    def metrics_view() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", endpoint="metrics", view_func=metrics_view, methods=["GET"])
