"""/healthz (the process is alive) and /readyz (both upstreams answer SERVING)."""

from __future__ import annotations

from flask import Flask, Response, jsonify

from gateway.errors import Problem
from gateway.upstream import Upstreams

SERVING = "SERVING"


def register_health(app: Flask, upstreams: Upstreams, *, timeout_seconds: float) -> None:
    def healthz() -> Response:
        return jsonify(status="ok")

    def readyz() -> Response:
        statuses = upstreams.health(timeout_seconds)
        down = sorted(name for name, status in statuses.items() if status != SERVING)
        if down:
            raise Problem(
                503,
                f"not ready: {', '.join(down)} not serving",
                extensions={"upstreams": statuses},
            )
        return jsonify(status="ready", upstreams=statuses)

    app.add_url_rule("/healthz", endpoint="healthz", view_func=healthz, methods=["GET"])
    app.add_url_rule("/readyz", endpoint="readyz", view_func=readyz, methods=["GET"])
