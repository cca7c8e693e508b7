"""`python -m profile_svc`: the profile service configured from the environment."""

from __future__ import annotations

import logging
import sys

from sqlalchemy.exc import OperationalError

from authgate_common.config import ConfigError, Env
from authgate_common.db import redact_url
from authgate_common.logs import configure_logging
from authgate_common.migrations import SchemaNotCurrent
from profile_svc.config import ProfileConfig
from profile_svc.server import serve

log = logging.getLogger("profile_svc")


def main() -> None:
    try:
        config = ProfileConfig.from_env(Env.from_os())
    except ConfigError as exc:
        print(f"profile_svc: configuration error: {exc}", file=sys.stderr)
        sys.exit(2)
    configure_logging("profile", config.log_level)
    try:
        serve(config)
    except SchemaNotCurrent as exc:
        print(f"profile_svc: {exc}", file=sys.stderr)
        sys.exit(2)
    except OperationalError:
        # The database is checked at start (schema revision); say so without a traceback.
        log.error("cannot reach the database", extra={"database": redact_url(config.database_url)})
        sys.exit(1)


if __name__ == "__main__":
    main()
