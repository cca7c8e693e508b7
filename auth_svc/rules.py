"""Registration rules of the contract: usernames, passwords, email addresses, display names.

Lengths, patterns and text rules are declared on RegisterRequest's fields in the proto
(`authgate.options.v1.field_rules`) and read from its descriptor, so this service, a
direct gRPC call and the gateway's OpenAPI document agree. Each check raises
InvalidArgument with a message safe to show; none echoes the password.
"""

from __future__ import annotations

import re
import unicodedata

from authgate.auth.v1 import account_pb2, auth_pb2

from authgate_common.errors import InvalidArgument
from authgate_common.field_rules import rules_for

_REGISTER = auth_pb2.RegisterRequest
USERNAME_RULES = rules_for(_REGISTER, "username")
PASSWORD_RULES = rules_for(_REGISTER, "password")
EMAIL_RULES = rules_for(_REGISTER, "email")
DISPLAY_NAME_RULES = rules_for(_REGISTER, "display_name")

# The account requests' own fields (AccountService); new passwords follow check_password.
CURRENT_PASSWORD_RULES = rules_for(account_pb2.ChangePasswordRequest, "current_password")
DELETE_PASSWORD_RULES = rules_for(account_pb2.DeleteAccountRequest, "password")
SESSION_ID_RULES = rules_for(account_pb2.RevokeSessionRequest, "session_id")
# The second factor's code that both account changes ask for when one is on.
STEP_UP_CODE_RULES = rules_for(account_pb2.ChangePasswordRequest, "code")

MIN_USERNAME_LENGTH = USERNAME_RULES.min_length
MAX_USERNAME_LENGTH = USERNAME_RULES.max_length
MAX_PASSWORD_LENGTH = PASSWORD_RULES.max_length
MAX_EMAIL_LENGTH = EMAIL_RULES.max_length
MAX_DISPLAY_NAME_LENGTH = DISPLAY_NAME_RULES.max_length


def normalize_username(username: str) -> str:
    """The case-insensitive form under which a username is unique."""
    return username.lower()


def is_valid_username(username: str) -> bool:
    try:
        USERNAME_RULES.check(username)
    except InvalidArgument:
        return False
    return True


def check_username(username: str) -> str:
    return USERNAME_RULES.check(username)


def check_password(
    password: str,
    *,
    username: str,
    min_length: int,
    common_passwords: frozenset[str] = frozenset(),
) -> str:
    """The password exactly as received: no trimming, no normalization, no truncation.

    NIST SP 800-63B style: a length range, not the username, not a known common
    password; no composition rules. Both comparisons are made on `comparison_form`
    (`common_passwords` holds entries in that form), so that padding, case or
    full-width letters do not sidestep them. Register and password change both call this.
    """
    if not min_length <= len(password) <= MAX_PASSWORD_LENGTH:
        raise InvalidArgument(
            f"password must be {min_length} to {MAX_PASSWORD_LENGTH} characters long"
        )
    if not _encodable(password):
        raise InvalidArgument("password must be valid Unicode text")
    compared = comparison_form(password)
    if username and comparison_form(username) in compared:
        raise InvalidArgument("password must not contain the username")
    if compared in common_passwords:
        raise InvalidArgument("password is too common: it appears in lists of leaked passwords")
    return password


def comparison_form(text: str) -> str:
    """NFKC, case-folded, without any whitespace: the form in which two passwords that a
    guesser would try as one compare equal (full-width or padded 'password1234' and it)."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def check_email(email: str) -> str | None:
    """None when not given (empty); the address as sent when it looks like one."""
    return EMAIL_RULES.check(email) or None


def check_display_name(display_name: str) -> str | None:
    """None when not given (empty or only spaces); otherwise the NFC name without outer spaces."""
    name = DISPLAY_NAME_RULES.check(display_name).strip()
    return name or None


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
