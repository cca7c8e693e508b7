"""Entry point for gunicorn: `gunicorn 'gateway.wsgi:create_app_from_env()'`."""

from __future__ import annotations

from flask import Flask

from authgate_common.config import Env
from authgate_common.logs import configure_logging
from gateway.app import create_app
from gateway.config import GatewayConfig


def create_app_from_env() -> Flask:
    config = GatewayConfig.from_env(Env.from_os())
    configure_logging("gateway", config.log_level)
    return create_app(config)
