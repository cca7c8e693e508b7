"""Rules of a profile update, without storage: each bad field is named in the error."""

from __future__ import annotations

import pytest

from authgate_common.errors import InvalidArgument
from profile_svc.profiles import ProfileChanges, validated_changes


def test_only_present_fields_are_returned() -> None:
    assert validated_changes(ProfileChanges(bio="")) == {"bio": ""}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (ProfileChanges(display_name="x" * 101), "display_name"),
        (ProfileChanges(display_name="tab\there"), "display_name"),
        (ProfileChanges(display_name="line\nbreak"), "display_name"),
        (ProfileChanges(display_name="nul\x00"), "display_name"),
        (ProfileChanges(display_name="del\x7f"), "display_name"),
        (ProfileChanges(email="no-at-sign"), "email"),
        (ProfileChanges(email="two@@example.com"), "email"),
        (ProfileChanges(email="no-dot@localhost"), "email"),
        (ProfileChanges(email="space in@example.com"), "email"),
        (ProfileChanges(email="@example.com"), "email"),
        (ProfileChanges(email="a@example..com"), "email"),
        (ProfileChanges(email="a@example.com\n"), "email"),
        (ProfileChanges(email="a" * 64 + "@" + "b" * 186 + ".com"), "email"),
        (ProfileChanges(email="a" * 65 + "@example.com"), "email"),
        (ProfileChanges(bio="x" * 1001), "bio"),
        (ProfileChanges(bio="bell\x07"), "bio"),
        (ProfileChanges(bio="escape\x1b[31m"), "bio"),
        (ProfileChanges(bio="carriage\rreturn"), "bio"),
        (ProfileChanges(bio="c1 control\x85"), "bio"),
    ],
)
def test_invalid_field_is_named_in_the_error(changes: ProfileChanges, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validated_changes(changes)

    assert raised.value.message.startswith(f"{field} ")


@pytest.mark.parametrize(
    "changes",
    [
        ProfileChanges(display_name=""),
        ProfileChanges(display_name="Zoë O'Brien-Łukasz 日本"),
        ProfileChanges(email="first.last+tag@sub.example.co.uk"),
        ProfileChanges(bio="line one\nline two\twith a tab"),
        ProfileChanges(bio=""),
    ],
)
def test_valid_values_pass(changes: ProfileChanges) -> None:
    validated_changes(changes)
