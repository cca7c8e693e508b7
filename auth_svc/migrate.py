"""`python -m auth_svc.migrate COMMAND`: schema migrations on AUTH_DATABASE_URL."""

from __future__ import annotations

import sys

from auth_svc.config import AUTH_DATABASE_URL
from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.migrate_cli import main as migrate_main

database_url = AUTH_DATABASE_URL.read


def main() -> int:
    return migrate_main(AUTH_MIGRATIONS, database_url)


if __name__ == "__main__":
    sys.exit(main())
