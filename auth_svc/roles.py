"""`python -m auth_svc.roles grant|revoke USERNAME ROLE`: roles on AUTH_DATABASE_URL.

The bootstrap of the first admin (`make grant-role USER=alice ROLE=admin`): there is no
default admin and no default password; a user registers, and whoever runs the service
grants them `admin` here. Works with the services running or not (one transaction, the
same row lock as the admin API), and writes a `roles_changed` audit event with no actor.

Exit status: 0 done, 2 for a bad role name, an unknown user or a configuration error,
1 when the database cannot be used.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import sqlalchemy.exc

from auth_svc.audit import COMMAND_LINE
from auth_svc.migrate import database_url
from auth_svc.migrations import AUTH_MIGRATIONS
from auth_svc.server import build_administration
from authgate_common.config import ConfigError, Env
from authgate_common.db import driver_reason, make_engine, redact_url
from authgate_common.errors import InvalidArgument, NotFound
from authgate_common.migrations import SchemaNotCurrent
from authgate_common.tokens import TokenSettings

PROG = "python -m auth_svc.roles"


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog=PROG, description="Grant or revoke a user's role on the configured auth database."
    )
    commands = cli.add_subparsers(dest="command", required=True)
    for name, text in (("grant", "add a role to a user"), ("revoke", "remove a role")):
        command = commands.add_parser(name, help=text)
        command.add_argument("username")
        command.add_argument("role")
    return cli


def main(argv: Sequence[str] | None = None, env: Env | None = None) -> int:
    args = parser().parse_args(argv)
    environment = env or Env.from_os()
    try:
        url = database_url(environment)
        tokens = TokenSettings.from_env(environment)
    except ConfigError as exc:
        print(f"auth_svc.roles: configuration error: {exc}", file=sys.stderr)
        return 2
    engine = make_engine(url, pool_size=1)
    try:
        AUTH_MIGRATIONS.require_current(engine)
        admin = build_administration(engine, tokens)
        change = admin.grant_role if args.command == "grant" else admin.revoke_role
        view = change(args.username, args.role, COMMAND_LINE)
    except (InvalidArgument, NotFound) as exc:
        print(f"auth_svc.roles: {exc.message}", file=sys.stderr)
        return 2
    except SchemaNotCurrent as exc:
        print(f"auth_svc.roles: {exc}", file=sys.stderr)
        return 1
    except sqlalchemy.exc.DBAPIError as exc:
        reason = driver_reason(exc)
        print(f"auth_svc.roles: database error on {redact_url(url)}: {reason}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    roles = ", ".join(sorted(view.roles)) or "none"
    print(f"auth_svc.roles: {view.user.username} ({view.user.id}) now has roles: {roles}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
