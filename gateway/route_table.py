"""`python -m gateway.route_table` (`make routes`): the gateway's routes as a table.

One line per route: HTTP method, path, RPC, who may call it (public, any signed-in user,
or the roles of `required_roles`) and its declared rate limit, all read from the
descriptors exactly as the gateway reads them at start.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gateway.routes import Route, build_routes, fronted_services

HEADINGS = ("METHOD", "PATH", "RPC", "ACCESS", "RATE LIMIT")


def access_of(route: Route) -> str:
    if route.public:
        return "public"
    if route.required_roles:
        return "roles: " + ", ".join(route.required_roles)
    return "any user"


def rows(routes: Sequence[Route]) -> list[tuple[str, str, str, str, str]]:
    return [
        (
            route.http_method,
            route.template,
            route.grpc_path.lstrip("/"),
            access_of(route),
            route.rate_limit or "-",
        )
        for route in routes
    ]


def render(routes: Sequence[Route]) -> str:
    table = [HEADINGS, *rows(routes)]
    widths = [max(len(row[column]) for row in table) for column in range(len(HEADINGS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def main() -> int:
    print(render(build_routes(fronted_services())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
