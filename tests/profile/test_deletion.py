"""Deleting a deleted user's profile for good, on SQLite and MariaDB, and who may ask for it:
only a token for the internal audience with the `internal:profile-delete` role."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import grpc
import pytest
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc
from sqlalchemy import Engine, Table, func, select

from authgate_common.errors import InvalidArgument, Unauthenticated
from authgate_common.grpc_server import RunningServer
from authgate_common.internal import PROFILE_DELETE_ROLE, internal_token_settings
from authgate_common.tokens import TokenSettings
from profile_svc.models import deleted_users
from profile_svc.models import profiles as profiles_table
from profile_svc.profiles import ProfileChanges, Profiles
from tests.fixtures.profile_fixtures import ProfileServerFactory
from tests.profile.helpers import make_identity
from tests.token_factory import TokenFactory


def _count(engine: Engine, table: Table, user_id: str) -> int:
    query = select(func.count()).select_from(table).where(table.c.user_id == user_id)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


# --- storage -------------------------------------------------------------------------------


def test_a_deleted_profile_is_gone_and_never_made_again(
    profiles: Profiles, profile_engine: Engine
) -> None:
    alice, bob = make_identity(), make_identity(username="bob")
    profiles.update_profile(alice, ProfileChanges(bio="alice's bio"))
    profiles.get_profile(bob)

    assert profiles.delete_for_good(alice.user_id) is True

    assert _count(profile_engine, profiles_table, alice.user_id) == 0
    assert _count(profile_engine, deleted_users, alice.user_id) == 1
    # A token issued before the deletion cannot bring it back.
    with pytest.raises(Unauthenticated):
        profiles.get_profile(alice)
    with pytest.raises(Unauthenticated):
        profiles.update_profile(alice, ProfileChanges(bio="back"))
    assert _count(profile_engine, profiles_table, alice.user_id) == 0
    assert profiles.get_profile(bob).username == "bob"  # others are untouched


def test_deleting_is_idempotent_and_works_without_a_profile(
    profiles: Profiles, profile_engine: Engine
) -> None:
    never_read = str(uuid.uuid4())
    assert profiles.delete_for_good(never_read) is False
    assert profiles.delete_for_good(never_read) is False
    assert _count(profile_engine, deleted_users, never_read) == 1
    with pytest.raises(Unauthenticated):
        profiles.get_profile(make_identity(user_id=never_read))


def test_a_deletion_racing_lazy_creations_leaves_no_profile(
    profiles: Profiles, profile_engine: Engine
) -> None:
    identity = make_identity()
    start = threading.Barrier(9)
    errors: list[BaseException] = []

    def read() -> None:
        start.wait()
        for _ in range(5):
            try:
                profiles.get_profile(identity)
            except Unauthenticated:
                return
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    start.wait()
    profiles.delete_for_good(identity.user_id)
    for reader in readers:
        reader.join()

    assert errors == []
    assert _count(profile_engine, profiles_table, identity.user_id) == 0


def test_a_bad_user_id_is_refused(profiles: Profiles) -> None:
    with pytest.raises(InvalidArgument):
        profiles.delete_for_good("")
    with pytest.raises(InvalidArgument):
        profiles.delete_for_good("x" * 65)


# --- who may call DeleteUserProfile ----------------------------------------------------------


@pytest.fixture
def server(
    profile_server_factory: ProfileServerFactory, tmp_path: Path, token_factory: TokenFactory
) -> RunningServer:
    return profile_server_factory(
        f"sqlite:///{tmp_path / 'profile.db'}", jwks_source=token_factory.jwks_source()
    )


def _delete(server: RunningServer, user_id: str, token: str | None) -> grpc.StatusCode:
    metadata = () if token is None else (("authorization", f"Bearer {token}"),)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = profile_pb2_grpc.ProfileAdminServiceStub(channel)
        try:
            stub.DeleteUserProfile(
                profile_pb2.DeleteUserProfileRequest(user_id=user_id), timeout=10, metadata=metadata
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def _get_profile(server: RunningServer, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = profile_pb2_grpc.ProfileServiceStub(channel)
        try:
            stub.GetProfile(
                profile_pb2.GetProfileRequest(),
                timeout=10,
                metadata=(("authorization", f"Bearer {token}"),),
            )
        except grpc.RpcError as exc:
            return exc.code()
    return grpc.StatusCode.OK


def test_only_an_internal_token_with_the_role_may_delete_a_profile(
    server: RunningServer, token_settings: TokenSettings, token_factory: TokenFactory
) -> None:
    internal = internal_token_settings(token_settings).audience
    victim = str(uuid.uuid4())
    user_token = token_factory.mint(victim, "victim")
    assert _get_profile(server, user_token) == grpc.StatusCode.OK

    # A user's own access token, even one naming the role, is for another audience.
    assert _delete(server, victim, None) == grpc.StatusCode.UNAUTHENTICATED
    assert _delete(server, victim, user_token) == grpc.StatusCode.UNAUTHENTICATED
    with_role = token_factory.mint(victim, "victim", roles=[PROFILE_DELETE_ROLE])
    assert _delete(server, victim, with_role) == grpc.StatusCode.UNAUTHENTICATED
    # The internal audience without the role is not enough either.
    no_role = token_factory.mint("service:auth_svc", "", aud=internal, roles=[])
    assert _delete(server, victim, no_role) == grpc.StatusCode.PERMISSION_DENIED
    assert _get_profile(server, user_token) == grpc.StatusCode.OK  # nothing was deleted

    internal_token = token_factory.mint(
        "service:auth_svc", "", aud=internal, roles=[PROFILE_DELETE_ROLE]
    )
    assert _delete(server, victim, internal_token) == grpc.StatusCode.OK
    assert _delete(server, victim, internal_token) == grpc.StatusCode.OK  # idempotent
    assert _get_profile(server, user_token) == grpc.StatusCode.UNAUTHENTICATED
    # And an internal token is no user token.
    assert _get_profile(server, internal_token) == grpc.StatusCode.UNAUTHENTICATED
