"""The two Flask apps the gateway is measured against, run under gunicorn by the benchmark.

static_app()     the cost floor of an HTTP JSON route: GET /v1/profile answers a constant
                 profile-sized JSON body and does nothing else.
reference_app()  issue 5.8's reference, one process doing the same work as the whole
                 gateway path without the split: verify the bearer token (the same strict
                 TokenVerifier, keys from the auth keys folder) and read the profile by its
                 primary key, then answer JSON. Settings from the environment:
                 BENCH_PROFILE_DATABASE_URL, BENCH_KEYS_DIR (and the usual JWT_* names).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, Response, request
from sqlalchemy import select

from auth_svc.keys import KeyRing
from authgate_common.config import Env
from authgate_common.db import make_engine, make_sessions
from authgate_common.jwks import JwksCache
from authgate_common.tokens import InvalidToken, TokenSettings, TokenVerifier, bearer_token
from profile_svc.models import profiles

_STATIC_PROFILE = {
    "user_id": "00000000-0000-4000-8000-000000000001",
    "username": "bench_0000001",
    "display_name": "",
    "email": "",
    "bio": "",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}
JSON_TYPE = "application/json"


def static_app() -> Flask:
    app = Flask("bench_static")
    body = json.dumps(_STATIC_PROFILE, separators=(",", ":"))

    @app.get("/v1/profile")
    def profile() -> Response:
        return Response(body, content_type=JSON_TYPE)

    return app


def reference_app() -> Flask:
    env = Env.from_os()
    settings = TokenSettings.from_env(env)
    keys = KeyRing.load(Path(os.environ["BENCH_KEYS_DIR"]), generate_if_empty=False)
    jwks = keys.jwks(settings.algorithms[0])
    verifier = TokenVerifier(
        settings, JwksCache(lambda: jwks, allowed_algorithms=settings.algorithms)
    )
    sessions = make_sessions(make_engine(os.environ["BENCH_PROFILE_DATABASE_URL"]))
    app = Flask("bench_reference")

    @app.get("/v1/profile")
    def profile() -> Response:
        token = bearer_token(request.headers.get("Authorization"))
        if token is None:
            return Response('{"status":401}', status=401, content_type=JSON_TYPE)
        try:
            identity = verifier.verify(token)
        except InvalidToken:
            return Response('{"status":401}', status=401, content_type=JSON_TYPE)
        with sessions() as session:
            row = session.execute(
                select(profiles).where(profiles.c.user_id == identity.user_id)
            ).first()
        if row is None:
            return Response('{"status":404}', status=404, content_type=JSON_TYPE)
        found = row._mapping
        body = {
            "user_id": found["user_id"],
            "username": found["username"],
            "display_name": found["display_name"],
            "email": found["email"],
            "bio": found["bio"],
            "created_at": found["created_at"].isoformat() + "Z",
            "updated_at": found["updated_at"].isoformat() + "Z",
        }
        return Response(json.dumps(body, separators=(",", ":")), content_type=JSON_TYPE)

    return app
