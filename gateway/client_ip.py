"""Who the client is, for rate limiting: the socket peer, or `X-Forwarded-For` via trusted proxies.

Each proxy appends the address it received the request from to `X-Forwarded-For`,
so with N trusted proxies in front of the gateway the client is the Nth address
from the right; everything further left was written by the client and is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

UNKNOWN_CLIENT = "unknown"
# An IPv6 client usually holds a whole /64; keying on single addresses would let
# it rotate through them to escape a per-address limit.
IPV6_CLIENT_PREFIX = 64


def client_ip(
    peer_address: str | None, forwarded_for: Iterable[str], *, trusted_proxies: int
) -> str:
    """The client's address: the peer's with no trusted proxy; the peer's if the header is bad."""
    peer = _parse(peer_address or "")
    fallback = UNKNOWN_CLIENT if peer is None else str(peer)
    if trusted_proxies <= 0:
        return fallback
    # Repeated headers count as one list, in order (RFC 9110 section 5.3).
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    if len(hops) < trusted_proxies:
        return fallback
    forwarded = _parse(hops[-trusted_proxies])
    return fallback if forwarded is None else str(forwarded)


def client_key(address: str) -> str:
    """The rate-limit bucket of an address from client_ip(): IPv4 as is, IPv6 by its /64."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(parsed)


def _parse(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A bare IPv4 or IPv6 address (IPv4-mapped IPv6 as IPv4); None for anything else."""
    if not text or len(text) > 45:  # the longest textual IPv6 address
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id:  # "fe80::1%eth0": the zone says nothing about the client
            return ipaddress.IPv6Address(text.split("%", 1)[0])
    return address
