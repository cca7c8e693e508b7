"""argon2id hashing: parameters, verification, rehash detection, the dummy hash."""

from __future__ import annotations

import argon2

from auth_svc.config import Argon2Params
from auth_svc.passwords import PasswordHasher
from tests.fixtures.auth_fixtures import CHEAP_ARGON2

PASSWORD = "a long enough passphrase"


def test_hash_is_argon2id_with_the_configured_parameters() -> None:
    encoded = PasswordHasher(CHEAP_ARGON2).hash(PASSWORD)

    parameters = argon2.extract_parameters(encoded)
    assert encoded.startswith("$argon2id$")
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (5, 7168, 1)
    assert PASSWORD not in encoded


def test_production_default_parameters_hash_and_verify() -> None:
    hasher = PasswordHasher(Argon2Params())
    encoded = hasher.hash(PASSWORD)

    parameters = argon2.extract_parameters(encoded)
    assert (parameters.time_cost, parameters.memory_cost, parameters.parallelism) == (3, 65536, 4)
    assert hasher.verify(encoded, PASSWORD)
    assert not hasher.needs_rehash(encoded)


def test_verify_accepts_the_right_password() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    assert hasher.verify(hasher.hash(PASSWORD), PASSWORD)


def test_verify_refuses_a_wrong_password() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    assert not hasher.verify(hasher.hash(PASSWORD), PASSWORD + "x")


def test_verify_refuses_a_malformed_hash_without_raising() -> None:
    assert not PasswordHasher(CHEAP_ARGON2).verify("not-a-hash", PASSWORD)


def test_passwords_differing_only_in_surrounding_spaces_differ() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    assert not hasher.verify(hasher.hash(PASSWORD), f" {PASSWORD} ")


def test_lone_surrogate_password_does_not_crash() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    assert not hasher.verify(hasher.hash(PASSWORD), "\ud800" * 12)


def test_hash_made_with_other_parameters_needs_rehash() -> None:
    old = PasswordHasher(CHEAP_ARGON2).hash(PASSWORD)
    stronger = PasswordHasher(Argon2Params(time_cost=2, memory_kib=19456, parallelism=1))

    assert stronger.needs_rehash(old)
    assert stronger.verify(old, PASSWORD)


def test_hash_made_with_current_parameters_needs_no_rehash() -> None:
    hasher = PasswordHasher(CHEAP_ARGON2)
    assert not hasher.needs_rehash(hasher.hash(PASSWORD))


def test_dummy_verification_accepts_nothing_and_raises_nothing() -> None:
    PasswordHasher(CHEAP_ARGON2).verify_dummy(PASSWORD)


def test_a_hash_stored_by_argon2_cffi_before_libsodium_still_verifies() -> None:
    stored = argon2.PasswordHasher(time_cost=5, memory_cost=7168, parallelism=1).hash(PASSWORD)
    hasher = PasswordHasher(CHEAP_ARGON2)

    assert hasher.verify(stored, PASSWORD)
    assert not hasher.verify(stored, PASSWORD + "x")
    assert not hasher.needs_rehash(stored)


def test_a_one_lane_hash_made_here_verifies_with_argon2_cffi() -> None:
    encoded = PasswordHasher(CHEAP_ARGON2).hash(PASSWORD)

    assert argon2.PasswordHasher().verify(encoded, PASSWORD)


def test_a_hash_of_several_lanes_verifies_and_refuses_a_wrong_password() -> None:
    hasher = PasswordHasher(Argon2Params(time_cost=5, memory_kib=7168, parallelism=4))
    encoded = hasher.hash(PASSWORD)

    assert argon2.extract_parameters(encoded).parallelism == 4
    assert hasher.verify(encoded, PASSWORD)
    assert not hasher.verify(encoded, PASSWORD + "x")
