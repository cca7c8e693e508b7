"""The auth domain on SQLite and MariaDB: register, login, refresh rotation, reuse, logout."""

from __future__ import annotations

import argon2
import jwt
import pytest
from sqlalchemy import Engine, Table, func, select

from auth_svc.config import Argon2Params
from auth_svc.keys import KeyRing
from auth_svc.models import refresh_tokens, users
from auth_svc.repository import UserRepository
from auth_svc.service import INVALID_CREDENTIALS, AuthService, RegisteredUser
from authgate_common.errors import (
    AlreadyExists,
    InvalidArgument,
    PermissionDenied,
    Unauthenticated,
)
from authgate_common.tokens import TokenSettings
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock, verifier_for


def _count(engine: Engine, table: Table) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)).scalar_one())


# --- register ---------------------------------------------------------------------------


def test_register_returns_a_uuid_and_the_username_as_sent(auth_service: AuthService) -> None:
    user = auth_service.register("Alice", PASSWORD)

    assert user.username == "Alice"
    assert len(user.user_id) == 36


def test_register_stores_an_argon2id_hash_not_the_password(
    alice: RegisteredUser, users: UserRepository
) -> None:
    stored = users.by_id(alice.user_id)

    assert stored is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert (stored.email, stored.display_name) == ("alice@example.com", "Alice Liddell")
    assert stored.created_at.tzinfo is not None


def test_username_taken_in_another_case_is_already_exists(
    auth_service: AuthService, alice: RegisteredUser, auth_engine: Engine
) -> None:
    with pytest.raises(AlreadyExists, match="username is already taken"):
        auth_service.register("ALICE", "another good password")
    assert _count(auth_engine, users) == 1


def test_invalid_registration_writes_nothing(
    auth_service: AuthService, auth_engine: Engine
) -> None:
    with pytest.raises(InvalidArgument):
        auth_service.register("bob", "bob-is-my-password")
    with pytest.raises(InvalidArgument):
        auth_service.register("bob", "short")
    with pytest.raises(InvalidArgument):
        auth_service.register("b", PASSWORD)
    with pytest.raises(InvalidArgument):
        auth_service.register("bob", PASSWORD, email="not-an-email")
    assert _count(auth_engine, users) == 0


def test_registration_can_be_switched_off(service_factory: ServiceFactory) -> None:
    with pytest.raises(PermissionDenied, match="registration is disabled"):
        service_factory(registration_enabled=False).register("alice", PASSWORD)


# --- login ------------------------------------------------------------------------------


def test_login_returns_a_bearer_pair_whose_access_token_verifies(
    auth_service: AuthService,
    alice: RegisteredUser,
    key_ring: KeyRing,
    token_settings: TokenSettings,
) -> None:
    pair = auth_service.login("Alice", PASSWORD)

    identity = verifier_for(key_ring, token_settings).verify(pair.access_token)
    assert identity.user_id == alice.user_id
    assert (pair.token_type, pair.expires_in, pair.refresh_expires_in) == ("Bearer", 900, 2592000)
    assert pair.refresh_token


def test_login_username_is_case_insensitive(
    auth_service: AuthService, alice: RegisteredUser
) -> None:
    pair = auth_service.login("aLiCe", PASSWORD)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})

    assert claims["sub"] == alice.user_id
    assert claims["preferred_username"] == "Alice"


@pytest.mark.parametrize(
    ("username", "password"),
    [("Alice", PASSWORD + "!"), ("nobody", PASSWORD), ("not a valid name", PASSWORD)],
    ids=["wrong-password", "unknown-user", "impossible-username"],
)
def test_bad_credentials_all_get_the_same_answer(
    auth_service: AuthService, alice: RegisteredUser, username: str, password: str
) -> None:
    with pytest.raises(Unauthenticated) as raised:
        auth_service.login(username, password)
    assert raised.value.message == INVALID_CREDENTIALS


def test_login_is_not_trimmed(auth_service: AuthService, alice: RegisteredUser) -> None:
    with pytest.raises(Unauthenticated):
        auth_service.login("Alice", f" {PASSWORD}")


def test_empty_login_fields_are_invalid_argument(auth_service: AuthService) -> None:
    with pytest.raises(InvalidArgument):
        auth_service.login("", PASSWORD)
    with pytest.raises(InvalidArgument):
        auth_service.login("Alice", "")


def test_disabled_user_cannot_log_in(
    auth_service: AuthService, alice: RegisteredUser, users: UserRepository, clock: SettableClock
) -> None:
    users.set_disabled(alice.user_id, True, clock())

    with pytest.raises(Unauthenticated) as raised:
        auth_service.login("Alice", PASSWORD)
    assert raised.value.message == INVALID_CREDENTIALS


def test_login_rehashes_when_parameters_changed(
    service_factory: ServiceFactory, alice: RegisteredUser, users: UserRepository
) -> None:
    stronger = Argon2Params(time_cost=2, memory_kib=19456, parallelism=1)

    service_factory(argon2=stronger).login("Alice", PASSWORD)

    stored = users.by_id(alice.user_id)
    assert stored is not None
    parameters = argon2.extract_parameters(stored.password_hash)
    assert (parameters.time_cost, parameters.memory_cost) == (2, 19456)


def test_login_keeps_a_current_hash(
    auth_service: AuthService, alice: RegisteredUser, users: UserRepository
) -> None:
    before = users.by_id(alice.user_id)
    auth_service.login("Alice", PASSWORD)
    after = users.by_id(alice.user_id)

    assert before is not None
    assert after is not None
    assert after.password_hash == before.password_hash


# --- refresh ----------------------------------------------------------------------------


def test_refresh_spends_the_token_and_returns_a_new_pair(
    auth_service: AuthService, alice: RegisteredUser
) -> None:
    first = auth_service.login("Alice", PASSWORD)

    second = auth_service.refresh(first.refresh_token)

    assert second.refresh_token != first.refresh_token
    assert second.access_token != first.access_token
    assert auth_service.refresh(second.refresh_token).refresh_token


def test_refresh_tokens_are_stored_only_as_hashes(
    auth_service: AuthService, alice: RegisteredUser, auth_engine: Engine
) -> None:
    pair = auth_service.login("Alice", PASSWORD)

    with auth_engine.connect() as connection:
        rows = connection.execute(select(refresh_tokens)).mappings().all()
    assert len(rows) == 1
    assert all(pair.refresh_token not in str(value) for value in rows[0].values())


def _assert_refresh_refused(service: AuthService, refresh_token: str) -> None:
    with pytest.raises(Unauthenticated):
        service.refresh(refresh_token)


def test_reusing_a_spent_token_revokes_the_whole_family(
    auth_service: AuthService, alice: RegisteredUser
) -> None:
    first = auth_service.login("Alice", PASSWORD)
    second = auth_service.refresh(first.refresh_token)

    _assert_refresh_refused(auth_service, first.refresh_token)
    _assert_refresh_refused(auth_service, second.refresh_token)


def test_reuse_leaves_other_sessions_alone(
    auth_service: AuthService, alice: RegisteredUser
) -> None:
    stolen = auth_service.login("Alice", PASSWORD)
    other_device = auth_service.login("Alice", PASSWORD)
    auth_service.refresh(stolen.refresh_token)

    _assert_refresh_refused(auth_service, stolen.refresh_token)
    assert auth_service.refresh(other_device.refresh_token).access_token


@pytest.mark.parametrize("token", ["garbage", "x" * 10_000, "é" * 43])
def test_unknown_refresh_token_is_unauthenticated(auth_service: AuthService, token: str) -> None:
    _assert_refresh_refused(auth_service, token)


def test_empty_refresh_token_is_invalid_argument(auth_service: AuthService) -> None:
    with pytest.raises(InvalidArgument):
        auth_service.refresh("")


def test_access_token_is_refused_as_a_refresh_token(
    auth_service: AuthService, alice: RegisteredUser
) -> None:
    pair = auth_service.login("Alice", PASSWORD)

    _assert_refresh_refused(auth_service, pair.access_token)


def test_expired_refresh_token_is_unauthenticated(
    auth_service: AuthService, alice: RegisteredUser, clock: SettableClock
) -> None:
    pair = auth_service.login("Alice", PASSWORD)
    clock.advance(pair.refresh_expires_in)

    _assert_refresh_refused(auth_service, pair.refresh_token)


def test_family_lifetime_caps_rotation(
    service_factory: ServiceFactory, alice: RegisteredUser, clock: SettableClock
) -> None:
    service = service_factory(refresh_token_ttl_seconds=600, refresh_family_max_seconds=1000)
    pair = service.login("Alice", PASSWORD)
    clock.advance(500)

    rotated = service.refresh(pair.refresh_token)
    assert rotated.refresh_expires_in == 500  # capped by the family, not 600

    clock.advance(500)
    _assert_refresh_refused(service, rotated.refresh_token)


def test_disabled_user_cannot_refresh(
    auth_service: AuthService, alice: RegisteredUser, users: UserRepository, clock: SettableClock
) -> None:
    pair = auth_service.login("Alice", PASSWORD)
    users.set_disabled(alice.user_id, True, clock())

    _assert_refresh_refused(auth_service, pair.refresh_token)


def test_deleted_user_cannot_refresh(
    auth_service: AuthService, alice: RegisteredUser, auth_engine: Engine
) -> None:
    pair = auth_service.login("Alice", PASSWORD)
    with auth_engine.begin() as connection:
        connection.execute(refresh_tokens.delete())  # FK cascades do the same on a real delete
        connection.execute(users.delete())

    _assert_refresh_refused(auth_service, pair.refresh_token)


# --- logout -----------------------------------------------------------------------------


def test_logout_revokes_the_family(auth_service: AuthService, alice: RegisteredUser) -> None:
    first = auth_service.login("Alice", PASSWORD)
    second = auth_service.refresh(first.refresh_token)

    auth_service.logout(first.refresh_token)

    _assert_refresh_refused(auth_service, second.refresh_token)


def test_logout_is_idempotent(auth_service: AuthService, alice: RegisteredUser) -> None:
    pair = auth_service.login("Alice", PASSWORD)

    auth_service.logout(pair.refresh_token)
    auth_service.logout(pair.refresh_token)


def test_logout_with_an_unknown_token_succeeds_and_changes_nothing(
    auth_service: AuthService, alice: RegisteredUser
) -> None:
    pair = auth_service.login("Alice", PASSWORD)

    auth_service.logout("not-a-token")

    assert auth_service.refresh(pair.refresh_token).access_token


def test_logout_with_an_empty_token_is_invalid_argument(auth_service: AuthService) -> None:
    with pytest.raises(InvalidArgument):
        auth_service.logout("")


# --- jwks -------------------------------------------------------------------------------


def test_jwks_publishes_the_ring(auth_service: AuthService, key_ring: KeyRing) -> None:
    assert [key["kid"] for key in auth_service.jwks()] == [key_ring.signer.kid]
