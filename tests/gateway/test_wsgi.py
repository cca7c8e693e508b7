"""The gunicorn entry point builds the app from the environment."""

from __future__ import annotations

import logging

import pytest

from authgate_common.config import ConfigError
from gateway.app import close_app
from gateway.wsgi import create_app_from_env


@pytest.fixture(autouse=True)
def _keep_logging() -> object:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)


def test_create_app_from_env_uses_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "1234")
    app = create_app_from_env()
    try:
        assert app.config["MAX_CONTENT_LENGTH"] == 1234
        assert app.test_client().get("/healthz").status_code == 200
    finally:
        close_app(app)


def test_a_bad_variable_stops_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_GRPC_TIMEOUT_SECONDS", "never")
    with pytest.raises(ConfigError, match="GATEWAY_GRPC_TIMEOUT_SECONDS"):
        create_app_from_env()
