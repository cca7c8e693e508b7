"""`python -m profile_svc.migrate COMMAND`: schema migrations on PROFILE_DATABASE_URL."""

from __future__ import annotations

import sys

from authgate_common.migrate_cli import main as migrate_main
from profile_svc.config import PROFILE_DATABASE_URL
from profile_svc.migrations import PROFILE_MIGRATIONS

database_url = PROFILE_DATABASE_URL.read


def main() -> int:
    return migrate_main(PROFILE_MIGRATIONS, database_url)


if __name__ == "__main__":
    sys.exit(main())
