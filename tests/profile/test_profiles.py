"""The profile domain on SQLite and MariaDB: lazy creation, reads, partial updates, validation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine

from authgate_common.errors import InvalidArgument, Unauthenticated
from profile_svc.models import Profile
from profile_svc.profiles import ProfileChanges, Profiles
from tests.profile.helpers import make_identity, profile_rows


def test_first_read_creates_the_profile_from_the_token_identity(
    profiles: Profiles, profile_engine: Engine
) -> None:
    identity = make_identity(username="alice", email="a@example.com", display_name="Alice")

    profile = profiles.get_profile(identity)

    assert (profile.user_id, profile.username) == (identity.user_id, "alice")
    assert (profile.display_name, profile.email, profile.bio) == ("Alice", "a@example.com", "")
    assert profile.created_at == profile.updated_at
    assert len(profile_rows(profile_engine)) == 1


def test_claims_that_break_the_profile_rules_are_not_copied(profiles: Profiles) -> None:
    identity = make_identity(email="not-an-address", display_name="x" * 150 + "\x00")

    profile = profiles.get_profile(identity)

    assert profile.email == ""
    assert profile.display_name == "x" * 100


@pytest.fixture
def read_twice(profiles: Profiles) -> tuple[Profile, Profile]:
    """A new user's profile as the first read created it, and as a second read returns it."""
    identity = make_identity()
    return profiles.get_profile(identity), profiles.get_profile(identity)


def test_repeated_reads_return_the_same_stored_profile(
    read_twice: tuple[Profile, Profile], profile_engine: Engine
) -> None:
    first, second = read_twice

    assert second == first
    assert len(profile_rows(profile_engine)) == 1


def test_later_reads_keep_the_stored_profile_even_if_claims_change(profiles: Profiles) -> None:
    identity = make_identity(display_name="Alice")
    profiles.get_profile(identity)

    renamed = make_identity(user_id=identity.user_id, display_name="Someone Else")

    assert profiles.get_profile(renamed).display_name == "Alice"


def test_timestamps_round_trip_as_utc_with_microseconds(
    read_twice: tuple[Profile, Profile],
) -> None:
    created, stored = read_twice

    assert stored.created_at == created.created_at
    assert stored.created_at.utcoffset() is not None
    assert stored.created_at.microsecond == 678901


def test_concurrent_first_reads_create_exactly_one_profile(
    profiles: Profiles, profile_engine: Engine
) -> None:
    identity = make_identity()
    readers = 8
    start_together = threading.Barrier(readers)

    def read() -> Profile:
        start_together.wait()
        return profiles.get_profile(identity)

    with ThreadPoolExecutor(readers) as pool:
        results = list(pool.map(lambda _: read(), range(readers)))

    assert len(profile_rows(profile_engine)) == 1
    assert len({result.created_at for result in results}) == 1


def test_update_changes_only_the_fields_present(profiles: Profiles) -> None:
    identity = make_identity(display_name="Alice", email="alice@example.com")
    before = profiles.get_profile(identity)

    after = profiles.update_profile(identity, ProfileChanges(bio="Hello\n\tworld"))

    assert after.bio == "Hello\n\tworld"
    assert (after.display_name, after.email) == ("Alice", "alice@example.com")
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at
    assert profiles.get_profile(identity) == after


def test_update_of_every_field(profiles: Profiles) -> None:
    identity = make_identity()

    after = profiles.update_profile(
        identity, ProfileChanges(display_name="Bob ✨", email="bob@example.org", bio="bio")
    )

    assert (after.display_name, after.email, after.bio) == ("Bob ✨", "bob@example.org", "bio")


def test_empty_email_clears_the_address(profiles: Profiles) -> None:
    identity = make_identity(email="alice@example.com")

    assert profiles.update_profile(identity, ProfileChanges(email="")).email == ""


def test_update_before_any_read_creates_the_profile_first(
    profiles: Profiles, profile_engine: Engine
) -> None:
    identity = make_identity(display_name="Alice")

    after = profiles.update_profile(identity, ProfileChanges(bio="first words"))

    assert (after.display_name, after.bio) == ("Alice", "first words")
    assert len(profile_rows(profile_engine)) == 1


def test_update_with_no_fields_changes_nothing(profiles: Profiles) -> None:
    identity = make_identity()
    before = profiles.get_profile(identity)

    assert profiles.update_profile(identity, ProfileChanges()) == before


def test_values_at_the_length_limits_are_stored_whole(profiles: Profiles) -> None:
    identity = make_identity()
    email = "a" * 64 + "@" + "b" * 185 + ".com"
    assert len(email) == 254

    after = profiles.update_profile(
        identity, ProfileChanges(display_name="é" * 100, email=email, bio="🙂" * 1000)
    )

    assert profiles.get_profile(identity) == after
    assert (len(after.display_name), len(after.email), len(after.bio)) == (100, 254, 1000)


def test_invalid_update_writes_nothing(profiles: Profiles, profile_engine: Engine) -> None:
    identity = make_identity(display_name="Alice")
    profiles.get_profile(identity)
    rows_before = profile_rows(profile_engine)

    # A valid display_name beside an invalid bio: nothing at all is written.
    with pytest.raises(InvalidArgument, match="bio"):
        profiles.update_profile(identity, ProfileChanges(display_name="Bob", bio="x" * 1001))

    assert profile_rows(profile_engine) == rows_before


def test_invalid_update_before_any_read_creates_nothing(
    profiles: Profiles, profile_engine: Engine
) -> None:
    with pytest.raises(InvalidArgument, match="email"):
        profiles.update_profile(make_identity(), ProfileChanges(email="nope"))

    assert profile_rows(profile_engine) == []


def test_a_subject_too_long_for_a_user_id_is_refused(
    profiles: Profiles, profile_engine: Engine
) -> None:
    with pytest.raises(Unauthenticated):
        profiles.get_profile(make_identity(user_id="u" * 65))

    assert profile_rows(profile_engine) == []
