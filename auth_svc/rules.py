"""Registration rules of the contract: usernames, passwords, email addresses, display names.

Each check raises InvalidArgument with a message safe to show; none echoes the password.
"""

from __future__ import annotations

import re
import unicodedata

from authgate_common.errors import InvalidArgument

MIN_USERNAME_LENGTH = 3
MAX_USERNAME_LENGTH = 64
MAX_PASSWORD_LENGTH = 128
MAX_EMAIL_LENGTH = 254
MAX_DISPLAY_NAME_LENGTH = 100

_USERNAME = re.compile(r"[A-Za-z0-9._-]{3,64}", re.ASCII)
# Deliberately simple: one @, a non-empty local part, a dotted domain, no spaces.
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


def normalize_username(username: str) -> str:
    """The case-insensitive form under which a username is unique."""
    return username.lower()


def is_valid_username(username: str) -> bool:
    return _USERNAME.fullmatch(username) is not None


def check_username(username: str) -> str:
    if not is_valid_username(username):
        raise InvalidArgument(
            f"username must be {MIN_USERNAME_LENGTH} to {MAX_USERNAME_LENGTH} characters of "
            "letters, digits, '.', '_' or '-'"
        )
    return username


def check_password(
    password: str,
    *,
    username: str,
    min_length: int,
    common_passwords: frozenset[str] = frozenset(),
) -> str:
    """The password exactly as received: no trimming, no normalization, no truncation.

    NIST SP 800-63B style: a length range, not the username, not a known common
    password (`common_passwords` holds lower-cased entries); no composition rules.
    """
    if not min_length <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidArgument(
            f"password must be {min_length} to {MAX_PASSWORD_LENGTH} characters long"
        )
    if not _encodable(password):
        raise InvalidArgument("password must be valid Unicode text")
    if username and username.casefold() in password.casefold():
        raise InvalidArgument("password must not contain the username")
    if password.lower() in common_passwords:
        raise InvalidArgument("password is too common: it appears in lists of leaked passwords")
    return password


def check_email(email: str) -> str | None:
    """None when not given (empty); the address as sent when it looks like one."""
    if not email:
        return None
    if len(email) > MAX_EMAIL_LENGTH or _EMAIL.fullmatch(email) is None or _has_controls(email):
        raise InvalidArgument(
            f"email must be an address like name@example.com of at most {MAX_EMAIL_LENGTH} "
            "characters"
        )
    return email


def check_display_name(display_name: str) -> str | None:
    """None when not given (empty or only spaces); otherwise the name without outer spaces."""
    name = display_name.strip()
    if not name:
        return None
    if len(name) > MAX_DISPLAY_NAME_LENGTH or _has_controls(name) or not _encodable(name):
        raise InvalidArgument(
            f"display_name must be at most {MAX_DISPLAY_NAME_LENGTH} printable characters"
        )
    return name


def _has_controls(text: str) -> bool:
    return any(unicodedata.category(char) in {"Cc", "Cs"} for char in text)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates cannot be stored or hashed
        return False
    return True


MAX_ROLES_PER_USER = 32
ROLE_PATTERN = r"[a-z][a-z0-9_.:-]{0,63}"
_ROLE = re.compile(ROLE_PATTERN, re.ASCII)


def is_valid_role(role: str) -> bool:
    return _ROLE.fullmatch(role) is not None


def check_role(role: str) -> str:
    if not is_valid_role(role):
        raise InvalidArgument(
            "a role name must be 1 to 64 characters: a lower-case letter, then lower-case "
            "letters, digits, '_', '.', ':' or '-'"
        )
    return role


def check_roles(roles: list[str] | tuple[str, ...]) -> frozenset[str]:
    """The set of valid role names; duplicates collapse, more than 32 distinct is refused."""
    checked = frozenset(check_role(role) for role in roles)
    if len(checked) > MAX_ROLES_PER_USER:
        raise InvalidArgument(f"a user has at most {MAX_ROLES_PER_USER} roles")
    return checked
