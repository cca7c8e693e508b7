"""Profile rules: lazy creation from the token's identity and validated partial updates.

Knows nothing of gRPC or SQL; raises authgate_common.errors for the edges to translate.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from authgate_common.clock import Clock, utc_now
from authgate_common.errors import InvalidArgument, NotFound, Unauthenticated
from authgate_common.tokens import Identity
from profile_svc.models import (
    BIO_MAX,
    DISPLAY_NAME_MAX,
    EMAIL_MAX,
    USER_ID_MAX,
    USERNAME_MAX,
    Profile,
)
from profile_svc.repository import ProfileRepository

# One "@", something on each side, a dot in the domain, no spaces: a shape check,
# not proof that the mailbox exists.
_EMAIL_SHAPE = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_BIO_ALLOWED_CONTROLS = frozenset("\n\t")


@dataclass(frozen=True)
class ProfileChanges:
    """A partial update: None means "not present, leave as it is"."""

    display_name: str | None = None
    email: str | None = None
    bio: str | None = None


class Profiles:
    """The caller's own profile: read (created on first read) and update."""

    def __init__(self, repository: ProfileRepository, *, clock: Clock = utc_now) -> None:
        self._repository = repository
        self._clock = clock

    def get_profile(self, identity: Identity) -> Profile:
        """The caller's profile, created from the token's claims if it does not exist yet."""
        existing = self._repository.find(_user_id(identity))
        if existing is not None:
            return existing
        return self._repository.get_or_create(self._new_profile(identity))

    def update_profile(self, identity: Identity, changes: ProfileChanges) -> Profile:
        """Apply the fields present in changes; all are validated before anything is written."""
        values = validated_changes(changes)
        current = self.get_profile(identity)
        if not values:
            return current
        updated = self._repository.update(current.user_id, values, self._clock())
        if updated is None:
            raise NotFound("the profile does not exist")
        return updated

    def _new_profile(self, identity: Identity) -> Profile:
        now = self._clock()
        return Profile(
            user_id=identity.user_id,
            username=_clip(identity.username, USERNAME_MAX),
            # Claims come from a token we trust, but are only copied when they fit
            # the profile's rules, so that a stored profile is always a valid one.
            display_name=_clip(_without_controls(identity.display_name), DISPLAY_NAME_MAX),
            email=identity.email if _email_error(identity.email) is None else "",
            bio="",
            created_at=now,
            updated_at=now,
        )


def validated_changes(changes: ProfileChanges) -> dict[str, str]:
    """The present fields as column values; InvalidArgument names the first bad field."""
    values: dict[str, str] = {}
    if changes.display_name is not None:
        _check_text("display_name", changes.display_name, DISPLAY_NAME_MAX, allowed=frozenset())
        values["display_name"] = changes.display_name
    if changes.email is not None:
        error = _email_error(changes.email)
        if error is not None:
            raise InvalidArgument(f"email {error}")
        values["email"] = changes.email
    if changes.bio is not None:
        _check_text("bio", changes.bio, BIO_MAX, allowed=_BIO_ALLOWED_CONTROLS)
        values["bio"] = changes.bio
    return values


def _check_text(field: str, value: str, maximum: int, *, allowed: frozenset[str]) -> None:
    if len(value) > maximum:
        raise InvalidArgument(f"{field} must be at most {maximum} characters")
    if any(_is_control(ch) and ch not in allowed for ch in value):
        extra = " other than newline and tab" if allowed else ""
        raise InvalidArgument(f"{field} must not contain control characters{extra}")


def _email_error(email: str) -> str | None:
    """Why email is not acceptable, or None; "" is acceptable (no address)."""
    if email == "":
        return None
    if len(email) > EMAIL_MAX:
        return f"must be at most {EMAIL_MAX} characters"
    if any(_is_control(ch) for ch in email) or not _EMAIL_SHAPE.fullmatch(email):
        return 'must be an e-mail address such as "name@example.com", or "" to clear it'
    return None


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) == "Cc"


def _without_controls(value: str) -> str:
    return "".join(ch for ch in value if not _is_control(ch))


def _clip(value: str, maximum: int) -> str:
    return value[:maximum]


def _user_id(identity: Identity) -> str:
    # The verifier guarantees a non-empty sub; its length must also fit the key column.
    if len(identity.user_id) > USER_ID_MAX:
        raise Unauthenticated("the access token's subject is not a valid user id")
    return identity.user_id
