"""Which RPCs are rate limited and how much: the proto option, then configuration on top.

The limits are declared on the RPCs (`option (authgate.options.v1.rate_limit) = "10/minute"`)
and read from the descriptors like the routes; `GATEWAY_RATE_LIMITS` overrides them per RPC
(`Login=100/minute,Register=off`) and `GATEWAY_RATE_LIMITS_ENABLED=false` switches them off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import limits
from limits import RateLimitItem

from authgate_common.config import ConfigError
from gateway.rate_limit_storage import LOCAL_URI
from gateway.routes import Route, RouteError

# Storages that need no extra driver: `local://` (the default: one count for the workers of
# this instance, see gateway.rate_limit_storage), a SQLite file, process memory (one
# process only), and Redis (one count for every instance).
STORAGE_SCHEMES = (
    LOCAL_URI,
    "sqlite://",
    "memory://",
    "redis://",
    "rediss://",
    "redis+unix://",
)
_OFF = frozenset({"off", "none"})


class InvalidRateLimit(ValueError):
    """A rate limit text that the `limits` notation does not accept, or that allows nothing."""


def parse_rate_limit(text: str) -> tuple[RateLimitItem, ...]:
    """ "10/minute" or "10/minute;100/hour" -> limit items; "off" (or "none") -> no limit."""
    cleaned = text.strip()
    if cleaned.lower() in _OFF:
        return ()
    try:
        items = tuple(limits.parse_many(cleaned))
    except ValueError:
        raise InvalidRateLimit(
            f"{text!r} is not a rate limit such as '10/minute' or '10/minute;100/hour'"
        ) from None
    if any(item.amount < 1 for item in items):
        raise InvalidRateLimit(f"{text!r} allows no request at all; use 'off' to remove a limit")
    return items


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = True
    storage_uri: str = LOCAL_URI
    # Keys of this deployment in a storage shared with others (e.g. one Redis).
    key_prefix: str = "authgate"
    # (RPC name or full name, limit text) pairs that replace the proto options.
    overrides: tuple[tuple[str, str], ...] = ()


def parse_overrides(raw: str) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[str, str]] = []
    for entry in raw.split(","):
        if not entry.strip():
            continue
        name, separator, text = entry.partition("=")
        if not separator or not name.strip():
            raise ConfigError(
                f"GATEWAY_RATE_LIMITS entries are RPC=LIMIT (e.g. Login=10/minute), got {entry!r}"
            )
        try:
            parse_rate_limit(text)
        except InvalidRateLimit as exc:
            raise ConfigError(f"GATEWAY_RATE_LIMITS: {name.strip()}: {exc}") from None
        pairs.append((name.strip(), text.strip()))
    return tuple(pairs)


@dataclass(frozen=True)
class RouteLimit:
    """The limits of one RPC; every HTTP binding of the RPC counts against the same ones."""

    rpc: str
    items: tuple[RateLimitItem, ...]


def route_limits(
    routes: Sequence[Route], overrides: Sequence[tuple[str, str]] = ()
) -> dict[str, RouteLimit]:
    """Flask endpoint -> its limits, for the routes that have any; bad values fail at start."""
    by_name: Mapping[str, str] = dict(overrides)
    used: set[str] = set()
    table: dict[str, RouteLimit] = {}
    for route in routes:
        full_name = route.method.full_name
        name = next((n for n in (full_name, route.method.name) if n in by_name), None)
        if name is not None:
            used.add(name)
            text = by_name[name]
        else:
            text = route.rate_limit
        if not text:
            continue
        try:
            items = parse_rate_limit(text)
        except InvalidRateLimit as exc:
            raise RouteError(f"{full_name}: rate_limit: {exc}") from None
        if items:
            table[route.endpoint] = RouteLimit(rpc=full_name, items=items)
    unknown = sorted(set(by_name) - used)
    if unknown:
        raise ConfigError(f"GATEWAY_RATE_LIMITS names no RPC the gateway serves: {unknown}")
    return table
