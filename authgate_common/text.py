"""The one set of rules for free text (names, bios): what every service and the API docs share.

Free text is stored NFC-normalised and may not hold control (Cc), format (Cf: bidi
overrides, zero-width characters) or line/paragraph separator (Zl, Zp) characters,
which let a value pose as another ("\u202eecilA" shows as "Alice") or break a log line.
Multi-line text may also hold newline and tab.
"""

from __future__ import annotations

import functools
import itertools
import sys
import unicodedata

# Unicode general categories refused in free text.
REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
MULTI_LINE_ALLOWED = frozenset("\n\t")


def normalize(text: str) -> str:
    """The form free text is compared and stored in (NFC: composed characters)."""
    return unicodedata.normalize("NFC", text)


def is_refused(char: str, *, multi_line: bool = False) -> bool:
    """Whether char may not appear in free text."""
    if multi_line and char in MULTI_LINE_ALLOWED:
        return False
    return unicodedata.category(char) in REFUSED_CATEGORIES


def has_refused(text: str, *, multi_line: bool = False) -> bool:
    return any(is_refused(char, multi_line=multi_line) for char in text)


@functools.cache
def _refused_codes() -> tuple[int, ...]:
    """Every code point of a refused category, in order: one scan of the code space, with the
    per-character work in C (a Python loop over the 1.1 million code points took 0.2 s)."""
    categories = map(unicodedata.category, map(chr, range(sys.maxunicode + 1)))
    refused = map(REFUSED_CATEGORIES.__contains__, categories)
    return tuple(itertools.compress(itertools.count(), refused))


@functools.cache
def allowed_pattern(*, multi_line: bool = False) -> str:
    """A regular expression (Python and ECMA-262 alike) matching text free of refused characters.

    Built from the same categories as is_refused, so the API document states exactly
    what the services accept.
    """
    ranges: list[tuple[int, int]] = []
    for code in _refused_codes():
        if not is_refused(chr(code), multi_line=multi_line):
            continue
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    parts = [
        _escaped(low) if low == high else f"{_escaped(low)}-{_escaped(high)}"
        for low, high in ranges
    ]
    return "^[^" + "".join(parts) + "]*$"


def _escaped(code: int) -> str:
    # Past the BMP both dialects take the character itself (ECMA has no \U escape).
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)
