"""TOTP secrets at rest: AES-GCM bound to the user, a key from the setting or its file."""

from __future__ import annotations

import base64
import stat
from datetime import timedelta
from pathlib import Path

import pyotp
import pytest

from auth_svc.lockout import LockoutPolicy
from auth_svc.mfa import SecretBox, load_totp_key, matching_step, recovery_code_hash
from auth_svc.repository import UserRepository
from authgate_common.config import ConfigError
from tests.auth.conftest import PASSWORD, ServiceFactory, SettableClock

KEY = bytes(range(32))


def test_a_sealed_secret_opens_for_its_user_only() -> None:
    box = SecretBox(KEY)
    sealed = box.seal("user-1", "JBSWY3DPEHPK3PXP")

    assert "JBSWY3DPEHPK3PXP" not in sealed
    assert box.open("user-1", sealed) == "JBSWY3DPEHPK3PXP"
    with pytest.raises(ValueError, match="does not open"):
        box.open("user-2", sealed)  # a ciphertext copied to another user's row
    with pytest.raises(ValueError, match="does not open"):
        SecretBox(bytes(32)).open("user-1", sealed)  # another key


def test_the_key_file_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    key_file = tmp_path / "var" / "totp.key"
    first = load_totp_key("", key_file)

    assert len(first) == 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_totp_key("", key_file) == first  # read back, not replaced


def test_the_key_setting_wins_over_the_file(tmp_path: Path) -> None:
    text = base64.b64encode(KEY).decode()
    assert load_totp_key(text, tmp_path / "absent.key") == KEY
    assert not (tmp_path / "absent.key").exists()


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_bad_key_is_a_config_error_that_does_not_echo_it(text: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_totp_key(text, tmp_path / "totp.key")
    assert text not in str(raised.value)


def test_codes_of_one_step_either_side_match_and_others_do_not(clock: SettableClock) -> None:
    secret = pyotp.random_base32()
    totp = pyotp.TOTP(secret)
    now = clock()
    step = int(now.timestamp()) // 30
    assert matching_step(secret, totp.at(now), now) == step
    assert matching_step(secret, totp.at(now - timedelta(seconds=30)), now) == step - 1
    assert matching_step(secret, totp.at(now + timedelta(seconds=30)), now) == step + 1
    assert matching_step(secret, totp.at(now + timedelta(seconds=90)), now) is None
    assert matching_step(secret, "12345a", now) is None


def test_recovery_codes_compare_in_any_case_with_or_without_the_dash() -> None:
    assert recovery_code_hash("abcde-fghij") == recovery_code_hash(" ABCDEFGHIJ ")


def test_an_attempt_left_in_flight_by_a_dead_process_expires(
    service_factory: ServiceFactory, users: UserRepository, clock: SettableClock
) -> None:
    service_factory().register("alice", PASSWORD)
    policy = LockoutPolicy(threshold=1)
    lost = users.claim_login_attempt("alice", clock(), policy)
    assert lost.user is not None  # never settled, as if its process had died

    clock.advance(61)
    claim = users.claim_login_attempt("alice", clock(), policy)

    assert claim.user is not None
    assert users.throttle_of(claim.user.id).in_flight == 1
