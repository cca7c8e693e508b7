"""The TOTP second factor, in process on SQLite and MariaDB: codes made from the secret."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Callable
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
from auth_svc.second_factor import INVALID_CODE, SecondFactor
from auth_svc.server import build_second_factor, build_service
from auth_svc.service import CODE_REQUIRED, AuthService, SecondFactorRequired, TokenPair
from authgate_common.db import make_sessions
from authgate_common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
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


# --- step-up: with a second factor on, a password change or deletion needs a code too -------

NEW_PASSWORD = "a brand new passphrase 2"


def _change(service: AuthService, users: UserRepository, code: str = "", **kw: str) -> TokenPair:
    current = kw.get("current", PASSWORD)
    return service.change_password(
        _user_id(users), "session-1", current, NEW_PASSWORD, code=code, origin=ORIGIN
    )


def _password_hash(users: UserRepository) -> str:
    user = users.by_username("alice")
    assert user is not None
    return user.password_hash


def _refusal(attempt: Callable[[], object]) -> str:
    """The message of the Unauthenticated that attempt() raises."""
    with pytest.raises(Unauthenticated) as refused:
        attempt()
    return str(refused.value)


def _refused_without_a_right_code(attempt: Callable[[str], object]) -> None:
    """With the right password: no code is 400 (CODE_REQUIRED), a wrong one 401."""
    with pytest.raises(InvalidArgument, match=CODE_REQUIRED):
        attempt("")
    with pytest.raises(Unauthenticated, match=INVALID_CODE):
        attempt("000000")


def test_with_a_second_factor_a_password_change_needs_a_code(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, _ = _enabled(factor, _user_id(users), clock)
    before = _password_hash(users)

    _refused_without_a_right_code(lambda code: _change(service, users, code=code))
    assert _password_hash(users) == before

    pair = _change(service, users, code=_code(secret, clock()))
    assert jwt.decode(pair.access_token, options={"verify_signature": False})["sub"] == (
        _user_id(users)
    )
    assert _password_hash(users) != before


def test_with_a_second_factor_a_deletion_needs_a_code_and_takes_a_recovery_code(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    _, recovery_codes = _enabled(factor, _user_id(users), clock)
    user_id = _user_id(users)

    _refused_without_a_right_code(
        lambda code: service.delete_account(user_id, PASSWORD, code=code, origin=ORIGIN)
    )
    assert users.by_id(user_id) is not None

    service.delete_account(user_id, PASSWORD, code=recovery_codes[0], origin=ORIGIN)
    assert users.by_id(user_id) is None


def test_a_missing_code_is_told_before_the_password_is_checked(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    _enabled(factor, _user_id(users), clock)

    with pytest.raises(InvalidArgument, match=CODE_REQUIRED):
        _change(service, users, current="not the password")

    # Nothing was counted: the answer says nothing of the password.
    assert users.throttle_of(_user_id(users), ORIGIN.client_ip).failures == 0


def test_wrong_step_up_codes_reach_the_lockout_like_wrong_passwords(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, _ = _enabled(factor, _user_id(users), clock)
    before = _password_hash(users)

    wrong = [
        _refusal(lambda: _change(service, users, code="000000")) for _ in range(POLICY.threshold)
    ]

    assert wrong == [INVALID_CODE] * POLICY.threshold
    assert users.throttle_of(_user_id(users), ORIGIN.client_ip).locked_until is not None
    with pytest.raises(Unauthenticated):  # locked: the right password and code are refused
        _change(service, users, code=_code(secret, clock()))
    assert _password_hash(users) == before


def test_a_step_up_code_is_spent_once(
    service: AuthService, factor: SecondFactor, users: UserRepository, clock: SettableClock
) -> None:
    secret, _ = _enabled(factor, _user_id(users), clock)
    code = _code(secret, clock())
    _change(service, users, code=code)

    with pytest.raises(Unauthenticated, match=INVALID_CODE):
        service.delete_account(_user_id(users), NEW_PASSWORD, code=code, origin=ORIGIN)


def test_without_a_second_factor_the_code_is_not_read(
    service: AuthService, users: UserRepository
) -> None:
    before = _password_hash(users)

    _change(service, users, code="anything at all")

    assert _password_hash(users) != before


def test_a_code_longer_than_the_contract_is_invalid_with_or_without_a_second_factor(
    service: AuthService, users: UserRepository
) -> None:
    with pytest.raises(InvalidArgument, match="code"):
        _change(service, users, code="1" * 33)
    with pytest.raises(InvalidArgument, match="code"):
        service.delete_account(_user_id(users), PASSWORD, code="1" * 33, origin=ORIGIN)
