"""The TOTP second factor, in process on SQLite and MariaDB: codes made from the secret."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from datetime import datetime, timedelta

import jwt
import pyotp
import pytest
from sqlalchemy import Engine, text

from auth_svc.audit import Origin
from auth_svc.config import AuthConfig
from auth_svc.keys import KeyRing
from auth_svc.lockout import LockoutPolicy
from auth_svc.mfa import MfaChallenge
from auth_svc.repository import AdminRepository, UserRepository
from auth_svc.revocations import RevocationLog
from auth_svc.second_factor import SecondFactor
from auth_svc.server import build_second_factor, build_service
from auth_svc.service import AuthService, SecondFactorRequired, TokenPair
from authgate_common.db import make_sessions
from authgate_common.errors import AlreadyExists, NotFound, Unauthenticated
from tests.auth.conftest import PASSWORD, SettableClock

POLICY = LockoutPolicy(threshold=3, base_seconds=30, max_seconds=100)
ORIGIN = Origin(client_ip="198.51.100.20")


@pytest.fixture
def factor(auth_config: AuthConfig, auth_engine: Engine, clock: SettableClock) -> SecondFactor:
    return build_second_factor(
        dataclasses.replace(auth_config, lockout=POLICY), auth_engine, clock=clock
    )


@pytest.fixture
def service(
    auth_config: AuthConfig,
    auth_engine: Engine,
    key_ring: KeyRing,
    clock: SettableClock,
    factor: SecondFactor,
) -> AuthService:
    service = build_service(
        dataclasses.replace(auth_config, lockout=POLICY),
        auth_engine,
        key_ring,
        clock=clock,
        second_factor=factor,
    )
    service.register("alice", PASSWORD)
    return service


def _user_id(users: UserRepository) -> str:
    user = users.by_username("alice")
    assert user is not None
    return user.id


def _code(secret: str, at: datetime) -> str:
    return pyotp.TOTP(secret).at(at)


def _challenge(service: AuthService) -> MfaChallenge:
    with pytest.raises(SecondFactorRequired) as due:
        service.login("alice", PASSWORD, origin=ORIGIN)
    return due.value.challenge


def _enabled(factor: SecondFactor, user_id: str, clock: SettableClock) -> tuple[str, list[str]]:
    enrolment = factor.enroll(user_id)
    codes = factor.confirm(user_id, _code(enrolment.secret, clock()), origin=ORIGIN)
    clock.advance(30)  # the confirming code's step is spent
    return enrolment.secret, codes


def test_the_whole_flow_enrol_confirm_login_with_a_code_and_disable(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    user_id = _user_id(users)
    enrolment = factor.enroll(user_id)
    assert enrolment.otpauth_uri.startswith("otpauth://totp/")
    assert "issuer=authgate" in enrolment.otpauth_uri
    assert "alice" in enrolment.otpauth_uri
    # Not active before it is confirmed: the password alone still logs in.
    assert isinstance(service.login("alice", PASSWORD, origin=ORIGIN), TokenPair)

    codes = factor.confirm(user_id, _code(enrolment.secret, clock()), origin=ORIGIN)
    assert len(codes) == len(set(codes)) == 10
    clock.advance(30)

    challenge = _challenge(service)
    assert challenge.expires_in == 300
    pair = service.login_mfa(challenge.mfa_token, _code(enrolment.secret, clock()), origin=ORIGIN)
    claims = jwt.decode(pair.access_token, options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp"]
    # A refresh keeps how the session's login authenticated.
    refreshed = service.refresh(pair.refresh_token, origin=ORIGIN)
    claims = jwt.decode(refreshed.access_token, options={"verify_signature": False})
    assert claims["amr"] == ["pwd", "otp"]

    clock.advance(30)
    factor.disable(user_id, _code(enrolment.secret, clock()), origin=ORIGIN)
    assert isinstance(service.login("alice", PASSWORD, origin=ORIGIN), TokenPair)


def test_a_code_and_a_recovery_code_are_accepted_once(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, recovery = _enabled(factor, _user_id(users), clock)
    code = _code(secret, clock())
    service.login_mfa(_challenge(service).mfa_token, code, origin=ORIGIN)
    with pytest.raises(Unauthenticated):
        service.login_mfa(_challenge(service).mfa_token, code, origin=ORIGIN)

    service.login_mfa(_challenge(service).mfa_token, recovery[0].upper(), origin=ORIGIN)
    with pytest.raises(Unauthenticated):
        service.login_mfa(_challenge(service).mfa_token, recovery[0], origin=ORIGIN)


def test_an_mfa_token_is_single_use_and_expires(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, _ = _enabled(factor, _user_id(users), clock)
    challenge = _challenge(service)
    service.login_mfa(challenge.mfa_token, _code(secret, clock()), origin=ORIGIN)
    clock.advance(30)
    with pytest.raises(Unauthenticated, match="mfa_token"):
        service.login_mfa(challenge.mfa_token, _code(secret, clock()), origin=ORIGIN)

    late = _challenge(service)
    clock.advance(300)
    with pytest.raises(Unauthenticated, match="mfa_token"):
        service.login_mfa(late.mfa_token, _code(secret, clock()), origin=ORIGIN)


def test_two_parallel_uses_of_one_code_give_one_login(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, _ = _enabled(factor, _user_id(users), clock)
    code = _code(secret, clock())
    tokens = [_challenge(service).mfa_token for _ in range(2)]
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def finish(token: str) -> None:
        start.wait()
        try:
            service.login_mfa(token, code, origin=ORIGIN)
            outcomes.append("ok")
        except Unauthenticated:
            outcomes.append("refused")

    threads = [threading.Thread(target=finish, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert Counter(outcomes) == {"ok": 1, "refused": 1}


def test_wrong_codes_reach_the_lockout_of_the_address(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, _ = _enabled(factor, _user_id(users), clock)
    challenge = _challenge(service)
    for _ in range(POLICY.threshold):
        with pytest.raises(Unauthenticated, match="code"):
            service.login_mfa(challenge.mfa_token, "000000", origin=ORIGIN)

    assert users.throttle_of(_user_id(users), ORIGIN.client_ip).locked_until is not None
    with pytest.raises(Unauthenticated):  # locked: even the right code is refused
        service.login_mfa(challenge.mfa_token, _code(secret, clock()), origin=ORIGIN)


def test_enrolment_conflicts_and_missing_enrolment(
    factor: SecondFactor, service: AuthService, users: UserRepository, clock: SettableClock
) -> None:
    user_id = _user_id(users)
    with pytest.raises(NotFound):
        factor.confirm(user_id, "123456", origin=ORIGIN)
    with pytest.raises(NotFound):
        factor.disable(user_id, "123456", origin=ORIGIN)
    _enabled(factor, user_id, clock)
    with pytest.raises(AlreadyExists):
        factor.enroll(user_id)


def test_the_secret_is_encrypted_at_rest_and_mfa_shows_in_the_admin_view(
    factor: SecondFactor,
    service: AuthService,
    users: UserRepository,
    auth_engine: Engine,
    clock: SettableClock,
) -> None:
    user_id = _user_id(users)
    secret, recovery = _enabled(factor, user_id, clock)
    with auth_engine.connect() as connection:
        stored = connection.execute(
            text("SELECT secret_ciphertext FROM mfa_totp WHERE user_id = :id"), {"id": user_id}
        ).scalar_one()
        hashes = (
            connection.execute(
                text("SELECT code_hash FROM mfa_recovery_codes WHERE user_id = :id"),
                {"id": user_id},
            )
            .scalars()
            .all()
        )
    assert secret not in stored
    assert secret.lower() not in stored.lower()
    assert len(hashes) == 10
    assert not set(hashes) & set(recovery)
    admin = AdminRepository(
        make_sessions(auth_engine),
        RevocationLog(make_sessions(auth_engine), token_lifetime=timedelta(seconds=60)),
    )
    view = admin.user(user_id)
    assert view is not None
    assert view.mfa_enabled
