"""AIP-158 list paging: page sizes, and opaque page tokens bound to the query they page.

A token is base64url JSON of the list's name, its filters and the position after the
last item returned. It is not secret (it holds nothing the caller may not see); a token
that does not decode, or was made for another list or other filters, is refused.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from authgate_common.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_PAGE_TOKEN_LENGTH = 1024
INVALID_PAGE_TOKEN = "page_token is invalid, or was made for other filters"  # noqa: S105


def page_size(requested: int) -> int:
    """0 (unset) -> the default; above the maximum -> the maximum (AIP-158); negative: 400."""
    if requested < 0:
        raise InvalidArgument("page_size must not be negative")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def encode_page_token(listing: str, filters: Mapping[str, str], position: list[Any]) -> str:
    payload = {"l": listing, "f": dict(filters), "p": position}
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=").decode("ascii")


def decode_page_token(token: str, listing: str, filters: Mapping[str, str]) -> list[Any] | None:
    """The position a token stands for; None for "" (the first page)."""
    if not token:
        return None
    if len(token) > MAX_PAGE_TOKEN_LENGTH:
        raise InvalidArgument(INVALID_PAGE_TOKEN)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise InvalidArgument(INVALID_PAGE_TOKEN) from None
    if (
        not isinstance(payload, dict)
        or payload.get("l") != listing
        or payload.get("f") != dict(filters)
        or not isinstance(payload.get("p"), list)
    ):
        raise InvalidArgument(INVALID_PAGE_TOKEN)
    position: list[Any] = payload["p"]
    return position
