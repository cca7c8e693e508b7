"""The gateway's Flask application factory."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from werkzeug.exceptions import HTTPException

from authgate_common.jwks import JwksCache
from authgate_common.revocation import FeedMetrics, RevocationSet, RevocationSubscriber
from authgate_common.tokens import VERIFIED_TOKEN_CACHE_SIZE, TokenVerifier
from gateway.auth import Authenticator
from gateway.client_ip import client_ip
from gateway.config import GatewayConfig
from gateway.docs import register_docs
from gateway.errors import Problem, generic_detail, problem_response, title_of
from gateway.health import register_health
from gateway.metrics import GatewayMetrics, register_metrics_route
from gateway.rate_limiter import register_rate_limits
from gateway.routes import AUTH_UPSTREAM, PROFILE_UPSTREAM, build_routes, fronted_services
from gateway.upstream import Upstreams
from gateway.views import make_view

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
EXTENSION = "authgate"


def create_app(config: GatewayConfig) -> Flask:
    """A gateway app; its gRPC channels are made on first use in each process."""
    app = Flask("gateway")
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    metrics = GatewayMetrics(CollectorRegistry())
    upstreams = Upstreams(
        {AUTH_UPSTREAM: config.auth_target, PROFILE_UPSTREAM: config.profile_target},
        timeout_seconds=config.grpc_timeout_seconds,
        observe=metrics.observe_upstream,
        tls=config.upstream_tls,
    )
    keys = JwksCache(
        upstreams.jwks_source(AUTH_UPSTREAM),
        allowed_algorithms=config.tokens.algorithms,
        cooldown=config.jwks_refetch_cooldown_seconds,
        grace=config.jwks_grace_seconds,
    )
    # Its thread starts on first use in each process (after gunicorn's fork).
    revocations = RevocationSubscriber(
        lambda: upstreams.channel(AUTH_UPSTREAM),
        RevocationSet(config.revocation),
        keys=keys,
        metrics=FeedMetrics(metrics.registry),
        settings=config.revocation,
    )
    authenticator = Authenticator(
        TokenVerifier(
            config.tokens, keys, cache_size=VERIFIED_TOKEN_CACHE_SIZE, revocations=revocations
        ),
        max_token_bytes=config.tokens.max_token_bytes,
        on_rejected=metrics.token_rejected,
    )
    routes = build_routes(fronted_services())
    app.extensions[EXTENSION] = {
        "upstreams": upstreams,
        "routes": routes,
        "keys": keys,
        "metrics": metrics,
        "revocations": revocations,
    }

    _register_request_tracing(app, metrics, trusted_proxy_count=config.trusted_proxy_count)
    _register_error_handlers(app, config)
    register_health(
        app, upstreams, timeout_seconds=config.readiness_timeout_seconds, revocations=revocations
    )
    register_docs(app, routes)
    register_metrics_route(app, metrics, multiprocess_dir=config.metrics_multiprocess_dir)
    register_rate_limits(
        app,
        routes,
        config.rate_limits,
        trusted_proxy_count=config.trusted_proxy_count,
        on_storage_failure=metrics.rate_limit_storage_failed,
    )
    for route in routes:
        app.add_url_rule(
            route.flask_rule,
            endpoint=route.endpoint,
            view_func=make_view(
                route, authenticator, upstreams, max_body_bytes=config.max_body_bytes
            ),
            methods=[route.http_method],
        )
    return app


def close_app(app: Flask) -> None:
    """Close the app's gRPC channels (tests and orderly shutdown)."""
    revocations: RevocationSubscriber = app.extensions[EXTENSION]["revocations"]
    revocations.stop()
    upstreams: Upstreams = app.extensions[EXTENSION]["upstreams"]
    upstreams.close()


def _register_request_tracing(
    app: Flask, metrics: GatewayMetrics, *, trusted_proxy_count: int
) -> None:
    @app.before_request
    def assign_request_id() -> None:
        g.started = time.perf_counter()
        g.user_id = None
        # As the rate limits see it; the services audit it (x-client-ip).
        g.client_ip = client_ip(
            request.remote_addr,
            request.headers.getlist("X-Forwarded-For"),
            trusted_proxies=trusted_proxy_count,
        )
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        g.request_id = offered if _CLIENT_REQUEST_ID.fullmatch(offered) else uuid.uuid4().hex

    @app.after_request
    def finish(response: Response) -> Response:
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers.setdefault("Cache-Control", "no-store")
        # Browsers must take Content-Type as sent (JSON, problem+json), never sniff HTML.
        response.headers["X-Content-Type-Options"] = "nosniff"
        started = g.get("started")
        seconds = None if started is None else time.perf_counter() - started
        route = request.url_rule.rule if request.url_rule else None
        log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "route": route,
                "status": response.status_code,
                "latency_ms": None if seconds is None else round(seconds * 1000, 2),
                "user_id": g.get("user_id"),
            },
        )
        metrics.observe_request(route, request.method, response.status_code, seconds or 0.0)
        return response


def _register_error_handlers(app: Flask, config: GatewayConfig) -> None:
    http_details = {
        404: "no resource matches this URL",
        413: f"the request body is larger than {config.max_body_bytes} bytes",
        415: "the request body must be sent as 'Content-Type: application/json'",
    }

    def respond(problem: Problem) -> Response:
        return problem_response(
            problem, request_id=g.get("request_id") or uuid.uuid4().hex, instance=request.path
        )

    @app.errorhandler(Problem)
    def on_problem(problem: Problem) -> Response:
        return respond(problem)

    @app.errorhandler(HTTPException)
    def on_http_exception(exc: HTTPException) -> Response:
        status = exc.code or 500
        if status == 405:
            detail = f"this URL does not support the {request.method} method"
        else:
            detail = http_details.get(status) or title_of(status).lower()
        if status >= 500:
            detail = generic_detail(status)
        headers = {
            name: value for name, value in exc.get_headers() if name.lower() != "content-type"
        }
        return respond(Problem(status, detail, headers=headers))

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Response:
        log.exception("unexpected error", extra={"request_id": g.get("request_id")})
        return respond(Problem(500, generic_detail(500)))
