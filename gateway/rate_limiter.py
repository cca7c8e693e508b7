"""Per-client-IP rate limiting of the routes whose RPCs declare a limit (429 + Retry-After).

Counting uses the `limits` library's moving window. By default (`local://`) the workers of
one gateway instance share one SQLite file (gateway.rate_limit_storage), so a limit means
the same with any worker count; with Redis every gateway instance shares one count. When
the storage fails the gateway fails open: it serves the request unlimited, logs a warning
and counts it in a metric, since an outage of the limiter must not become an outage of
logins (never a 500).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

from flask import Flask, g, request
from limits import RateLimitItem
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from gateway.client_ip import client_ip, client_key
from gateway.errors import Problem
from gateway.rate_limit_storage import resolve_storage_uri
from gateway.rate_limits import RateLimitSettings, RouteLimit, route_limits
from gateway.routes import Route

log = logging.getLogger(__name__)

# A limiter that does not answer quickly is treated as down: logins must not wait on it.
STORAGE_TIMEOUT_SECONDS = 0.5
# After a storage failure, requests go unlimited this long before the storage is tried
# again, so an outage costs neither a timeout per request nor a log line per request.
OUTAGE_BACKOFF_SECONDS = 5.0


class RateLimiter:
    """Counts hits per key in a storage; answers how long to wait, or None when allowed."""

    def __init__(
        self,
        storage_uri: str,
        *,
        key_prefix: str,
        outage_backoff_seconds: float = OUTAGE_BACKOFF_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        on_storage_failure: Callable[[], None] = lambda: None,
    ) -> None:
        storage_uri = resolve_storage_uri(storage_uri)
        options: dict[str, float] = {}
        if storage_uri.startswith("redis"):
            options = {
                "socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                "socket_timeout": STORAGE_TIMEOUT_SECONDS,
            }
        # No connection is made here: redis-py connects on first use, after any fork.
        storage = storage_from_string(storage_uri, wrap_exceptions=True, **options)
        self._strategy = MovingWindowRateLimiter(storage)
        self._key_prefix = key_prefix
        self._backoff = outage_backoff_seconds
        self._monotonic = monotonic
        self._on_storage_failure = on_storage_failure
        self._unlimited_until = 0.0

    def hit(self, items: Sequence[RateLimitItem], *identifiers: str) -> int | None:
        """Count one request against every item; seconds until retry if one is exhausted."""
        if self._monotonic() < self._unlimited_until:
            return None
        keys = (self._key_prefix, *identifiers)
        try:
            for item in items:
                if not self._strategy.hit(item, *keys):
                    return self._retry_after(item, keys)
        except Exception as exc:  # any storage failure: fail open (see the module doc)
            self._unlimited_until = self._monotonic() + self._backoff
            self._on_storage_failure()
            # The exception's type only: its text may name the storage URI.
            log.warning(
                "rate limit storage failed; requests are not limited for %ss",
                self._backoff,
                extra={"error": type(exc).__name__},
            )
        return None

    def _retry_after(self, item: RateLimitItem, keys: Sequence[str]) -> int:
        try:
            reset_at = self._strategy.get_window_stats(item, *keys).reset_time
        except Exception:  # the hit was counted; only the exact wait is unknown
            return int(item.get_expiry())
        return max(1, math.ceil(reset_at - time.time()))


def register_rate_limits(
    app: Flask,
    routes: Sequence[Route],
    settings: RateLimitSettings,
    *,
    trusted_proxy_count: int,
    on_storage_failure: Callable[[], None] = lambda: None,
) -> RateLimiter | None:
    """Check the limits before the view runs; the limiter, or None when nothing is limited."""
    table = route_limits(routes, settings.overrides)  # bad values fail at start, even if off
    if not settings.enabled or not table:
        return None
    limiter = RateLimiter(
        settings.storage_uri,
        key_prefix=settings.key_prefix,
        on_storage_failure=on_storage_failure,
    )

    @app.before_request
    def enforce_rate_limit() -> None:
        limit: RouteLimit | None = table.get(request.endpoint or "")
        if limit is None:
            return
        client = client_ip(
            request.remote_addr,
            request.headers.getlist("X-Forwarded-For"),
            trusted_proxies=trusted_proxy_count,
        )
        retry_after = limiter.hit(limit.items, limit.rpc, client_key(client))
        if retry_after is None:
            return
        log.info(
            "rate limited",
            extra={"rpc": limit.rpc, "client": client, "request_id": g.get("request_id")},
        )
        raise Problem(
            429,
            f"too many requests from this client, try again in {retry_after} seconds",
            headers={"Retry-After": str(retry_after)},
        )

    return limiter
