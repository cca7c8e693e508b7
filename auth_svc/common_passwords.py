"""The bundled list of common passwords (auth_svc/data), loaded once at start.

See auth_svc/data/COMMON_PASSWORDS_NOTICE.md for where the list comes from.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from auth_svc.rules import comparison_form

PACKAGED_LIST = "data/common_passwords.txt"


def load_common_passwords(path: Path | None = None) -> frozenset[str]:
    """Every entry in rules.comparison_form, from `path` or the list shipped in the package."""
    if path is None:
        text = resources.files("auth_svc").joinpath(PACKAGED_LIST).read_text(encoding="utf-8")
    else:
        text = path.read_text(encoding="utf-8")
    return frozenset(form for form in (comparison_form(line) for line in text.splitlines()) if form)
