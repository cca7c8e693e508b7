"""Profile rules: lazy creation from the token's identity and validated partial updates.

Knows nothing of gRPC or SQL; raises authgate_common.errors for the edges to translate.
"""

from __future__ import annotations

from dataclasses import dataclass

from authgate.profile.v1 import profile_pb2

from authgate_common import text
from authgate_common.clock import Clock, utc_now
from authgate_common.errors import InvalidArgument, NotFound, Unauthenticated
from authgate_common.field_rules import rules_for
from authgate_common.tokens import Identity
from profile_svc.models import (
    DISPLAY_NAME_MAX,
    USER_ID_MAX,
    USERNAME_MAX,
    Profile,
)
from profile_svc.repository import DeletedUser, ProfileRepository

ACCOUNT_DELETED = "the account has been deleted"
DELETE_REQUEST_RULES = rules_for(profile_pb2.DeleteUserProfileRequest, "user_id")

# Lengths, patterns and text rules are declared on the request's fields in the proto.
_UPDATE = profile_pb2.UpdateProfileRequest
DISPLAY_NAME_RULES = rules_for(_UPDATE, "display_name")
EMAIL_RULES = rules_for(_UPDATE, "email")
BIO_RULES = rules_for(_UPDATE, "bio")


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
        try:
            return self._repository.get_or_create(self._new_profile(identity))
        except DeletedUser:
            # A token issued before the deletion, in the moment before it is refused.
            raise Unauthenticated(ACCOUNT_DELETED) from None

    def delete_for_good(self, user_id: str) -> bool:
        """Remove a deleted user's profile, never to be created again; idempotent."""
        DELETE_REQUEST_RULES.check(user_id)
        return self._repository.delete_for_good(user_id, self._clock())

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
            display_name=_as_display_name(identity.display_name),
            email=_valid_email_or_empty(identity.email),
            bio="",
            created_at=now,
            updated_at=now,
        )


def validated_changes(changes: ProfileChanges) -> dict[str, str]:
    """The present fields as column values; InvalidArgument names the first bad field."""
    values: dict[str, str] = {}
    if changes.display_name is not None:
        values["display_name"] = DISPLAY_NAME_RULES.check(changes.display_name)
    if changes.email is not None:
        values["email"] = EMAIL_RULES.check(changes.email)
    if changes.bio is not None:
        values["bio"] = BIO_RULES.check(changes.bio)
    return values


def _valid_email_or_empty(email: str) -> str:
    try:
        return EMAIL_RULES.check(email)
    except InvalidArgument:
        return ""


def _as_display_name(value: str) -> str:
    """A claim made to fit the display name's rules: refused characters dropped, NFC, clipped."""
    kept = "".join(ch for ch in value if not text.is_refused(ch))
    return _clip(text.normalize(kept), DISPLAY_NAME_MAX)


def _clip(value: str, maximum: int) -> str:
    return value[:maximum]


def _user_id(identity: Identity) -> str:
    # The verifier guarantees a non-empty sub; its length must also fit the key column.
    if len(identity.user_id) > USER_ID_MAX:
        raise Unauthenticated("the access token's subject is not a valid user id")
    return identity.user_id
