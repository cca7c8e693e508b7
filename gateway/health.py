"""/healthz (the process is alive) and /readyz (both upstreams answer SERVING, and the
revocation feed is fresh: past its staleness bound every token is refused anyway)."""

from __future__ import annotations

from flask import Flask, Response, jsonify

from authgate_common.revocation import RevocationSubscriber
from gateway.errors import Problem
from gateway.upstream import Upstreams

SERVING = "SERVING"


def register_health(
    app: Flask,
    upstreams: Upstreams,
    *,
    timeout_seconds: float,
    revocations: RevocationSubscriber | None = None,
) -> None:
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
        if revocations is not None:
            revocations.ensure_started()
            if not revocations.revocations.current():
                raise Problem(503, "not ready: the revocation feed is not current")
        return jsonify(status="ready", upstreams=statuses)

    app.add_url_rule("/healthz", endpoint="healthz", view_func=healthz, methods=["GET"])
    app.add_url_rule("/readyz", endpoint="readyz", view_func=readyz, methods=["GET"])
