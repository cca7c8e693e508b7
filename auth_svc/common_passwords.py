"""The bundled list of common passwords (auth_svc/data), loaded once at start.

See auth_svc/data/COMMON_PASSWORDS_NOTICE.md for where the list comes from.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from auth_svc.rules import comparison_form

PACKAGED_LIST = "data/common_passwords.txt"


def load_common_passwords(path: Path | None = None) -> frozenset[str]:
    """Every entry in rules.comparison_form, from `path` or the list shipped in the package."""
    if path is None:
        return _packaged_list()
    return _comparison_forms(path.read_text(encoding="utf-8"))


@functools.cache  # 80 ms of normalising, and the shipped list cannot change in a process
def _packaged_list() -> frozenset[str]:
    text = resources.files("auth_svc").joinpath(PACKAGED_LIST).read_text(encoding="utf-8")
    return _comparison_forms(text)


def _comparison_forms(text: str) -> frozenset[str]:
    return frozenset(form for form in (comparison_form(line) for line in text.splitlines()) if form)
