"""ProfileService over gRPC with a valid token, on SQLite and MariaDB."""

from __future__ import annotations

import uuid
from datetime import UTC

import grpc
import pytest
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

from tests.token_factory import TokenFactory

Metadata = tuple[tuple[str, str], ...]


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def user_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def auth(token_factory: TokenFactory, user_id: str) -> Metadata:
    return bearer(
        token_factory.mint(user_id, "alice", name="Alice Example", email="alice@example.com")
    )


def test_get_profile_returns_the_callers_profile_created_from_the_token(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata, user_id: str
) -> None:
    profile = profile_stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=auth, timeout=5)

    assert (profile.user_id, profile.username) == (user_id, "alice")
    assert (profile.display_name, profile.email, profile.bio) == (
        "Alice Example",
        "alice@example.com",
        "",
    )
    assert profile.created_at.ToDatetime(UTC) == profile.updated_at.ToDatetime(UTC)
    assert profile.created_at.seconds > 0


def test_update_profile_changes_only_the_fields_sent(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata
) -> None:
    before = profile_stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=auth, timeout=5)

    after = profile_stub.UpdateProfile(
        profile_pb2.UpdateProfileRequest(bio="Hello"), metadata=auth, timeout=5
    )

    assert after.bio == "Hello"
    assert (after.display_name, after.email) == (before.display_name, before.email)
    assert after.created_at == before.created_at
    assert after.updated_at.ToDatetime(UTC) >= before.updated_at.ToDatetime(UTC)


def test_an_explicitly_empty_field_is_applied_not_ignored(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata
) -> None:
    after = profile_stub.UpdateProfile(
        profile_pb2.UpdateProfileRequest(display_name="", email=""), metadata=auth, timeout=5
    )

    assert (after.display_name, after.email) == ("", "")


def test_an_invalid_update_is_invalid_argument_and_changes_nothing(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata
) -> None:
    before = profile_stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=auth, timeout=5)

    with pytest.raises(grpc.RpcError) as raised:
        profile_stub.UpdateProfile(
            profile_pb2.UpdateProfileRequest(display_name="New", email="not-an-address"),
            metadata=auth,
            timeout=5,
        )

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "email" in (raised.value.details() or "")
    after = profile_stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=auth, timeout=5)
    assert after == before


def test_matching_identity_metadata_is_accepted(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata, user_id: str
) -> None:
    metadata = (*auth, ("x-user-id", user_id), ("x-username", "alice"), ("x-request-id", "r-1"))

    profile = profile_stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=metadata, timeout=5)

    assert profile.user_id == user_id


def test_each_caller_sees_only_their_own_profile(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, token_factory: TokenFactory, auth: Metadata
) -> None:
    profile_stub.UpdateProfile(
        profile_pb2.UpdateProfileRequest(bio="alice's bio"), metadata=auth, timeout=5
    )
    bob = bearer(token_factory.mint(str(uuid.uuid4()), "bob"))

    profile = profile_stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=bob, timeout=5)

    assert (profile.username, profile.bio) == ("bob", "")


# Shows as "Alice", then a zero-width space and a line separator before "admin".
SPOOFED_NAME = "\u202eecilA\u200b\u2028admin"


def test_text_with_bidi_zero_width_or_separator_characters_is_invalid_argument(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata
) -> None:
    for request in (
        profile_pb2.UpdateProfileRequest(display_name=SPOOFED_NAME),
        profile_pb2.UpdateProfileRequest(bio="right-to-left \u202e override"),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            profile_stub.UpdateProfile(request, metadata=auth, timeout=5)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_free_text_is_stored_nfc_normalised(
    profile_stub: profile_pb2_grpc.ProfileServiceStub, auth: Metadata
) -> None:
    after = profile_stub.UpdateProfile(
        profile_pb2.UpdateProfileRequest(display_name="Zoe\u0308", bio="cafe\u0301\nline two"),
        metadata=auth,
        timeout=5,
    )

    assert (after.display_name, after.bio) == ("Zo\u00eb", "caf\u00e9\nline two")
