"""`python -m auth_svc`: the auth gRPC service, configured from the environment."""

from __future__ import annotations

import logging
import sys

import sqlalchemy.exc

from auth_svc.config import AuthConfig
from auth_svc.server import serve
from authgate_common.config import ConfigError, Env
from authgate_common.logs import configure_logging
from authgate_common.migrations import SchemaNotCurrent

log = logging.getLogger("auth_svc")


def main() -> int:
    try:
        config = AuthConfig.from_env(Env.from_os())
    except ConfigError as exc:
        print(f"auth_svc: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging("auth_svc", config.log_level)
    try:
        serve(config)
    except ConfigError as exc:  # e.g. an unusable keys folder
        print(f"auth_svc: configuration error: {exc}", file=sys.stderr)
        return 2
    except SchemaNotCurrent as exc:
        print(f"auth_svc: {exc}", file=sys.stderr)
        return 2
    except sqlalchemy.exc.OperationalError as exc:
        log.error("cannot reach the database at start", extra={"error": type(exc.orig).__name__})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
