"""The caller's TOTP second factor: enrol, confirm, disable; codes checked for logins.

Knows nothing of gRPC or SQL. Every code check (confirm, disable, the login's second
step) is throttled like a password: claimed on the (account, address) lockout first,
a wrong code counted as a failed login (see UserRepository.claim_login_attempt).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from auth_svc import mfa
from auth_svc.audit import NO_ORIGIN, EventType, NewEvent, Origin
from auth_svc.lockout import LockoutPolicy
from auth_svc.mfa import MfaChallenge, SecretBox
from auth_svc.repository import LoginClaim, MfaRepository, UserRepository
from authgate_common.clock import Clock, utc_now
from authgate_common.errors import AlreadyExists, NotFound, Unauthenticated

log = logging.getLogger(__name__)

INVALID_CODE = "the code is wrong or was already used"
INVALID_MFA_TOKEN = "the mfa_token is invalid, expired or used"  # noqa: S105 - a message
_MFA_TOKEN_BYTES = 32
MAX_MFA_TOKEN_LENGTH = 128


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str


@dataclass(frozen=True, kw_only=True)
class SecondFactor:
    repository: MfaRepository
    users: UserRepository
    box: SecretBox
    lockout: LockoutPolicy
    issuer: str
    challenge_ttl_seconds: int
    clock: Clock = utc_now

    def enabled(self, user_id: str) -> bool:
        return self.repository.enabled(user_id)

    def enroll(self, user_id: str) -> Enrolment:
        user = self.users.by_id(user_id)
        if user is None:
            raise Unauthenticated("the user of this token no longer exists")
        secret = mfa.new_secret()
        if not self.repository.enroll(user_id, self.box.seal(user_id, secret), self.clock()):
            raise AlreadyExists("a second factor is already on; disable it first")
        log.info("totp enrolment started", extra={"user_id": user_id})
        return Enrolment(
            secret=secret,
            otpauth_uri=mfa.otpauth_uri(secret, username=user.username, issuer=self.issuer),
        )

    def confirm(self, user_id: str, code: str, *, origin: Origin = NO_ORIGIN) -> list[str]:
        """Turn the enrolment on with a current code; the recovery codes, shown this once."""
        record = self.repository.totp_of(user_id)
        if record is None:
            raise NotFound("no TOTP enrolment to confirm: enrol first")
        if record.confirmed_at is not None:
            raise AlreadyExists("the second factor is already on")
        secret = self.box.open(user_id, record.secret_ciphertext)
        codes = mfa.new_recovery_codes()

        def check(claim: LoginClaim) -> bool:
            now = self.clock()
            step = mfa.matching_step(secret, code, now)
            return step is not None and self.repository.confirm(
                user_id,
                record.secret_ciphertext,
                step,
                [mfa.recovery_code_hash(each) for each in codes],
                NewEvent(EventType.MFA_ENABLED, user_id, origin, now, {"factor": "totp"}),
            )

        self._throttled(user_id, origin, check)
        log.info("totp enabled", extra={"user_id": user_id})
        return codes

    def disable(self, user_id: str, code: str, *, origin: Origin = NO_ORIGIN) -> None:
        if not self.repository.enabled(user_id):
            raise NotFound("no second factor is on")

        def check(claim: LoginClaim) -> bool:
            if not self.spend_code(user_id, code):
                return False
            event = NewEvent(EventType.MFA_DISABLED, user_id, origin, self.clock())
            return self.repository.disable(user_id, event.with_detail(factor="totp"))

        self._throttled(user_id, origin, check)
        log.info("totp disabled", extra={"user_id": user_id})

    def challenge(self, user_id: str) -> MfaChallenge:
        """A pending login for the user, finished by `finish` with a code."""
        now = self.clock()
        token = secrets.token_urlsafe(_MFA_TOKEN_BYTES)
        self.repository.add_challenge(
            _token_hash(token), user_id, now, now + timedelta(seconds=self.challenge_ttl_seconds)
        )
        return MfaChallenge(mfa_token=token, expires_in=self.challenge_ttl_seconds, user_id=user_id)

    def finish(self, mfa_token: str, code: str, *, origin: Origin = NO_ORIGIN) -> LoginClaim:
        """The challenge spent with a right code: the claim to complete the login with
        (settled by the caller); Unauthenticated for an unknown, expired or used token or
        a wrong code (counted towards the lockout)."""
        if len(mfa_token) > MAX_MFA_TOKEN_LENGTH:
            raise Unauthenticated(INVALID_MFA_TOKEN)
        token_hash = _token_hash(mfa_token)
        user_id = self.repository.challenged_user(token_hash, self.clock())
        if user_id is None:
            raise Unauthenticated(INVALID_MFA_TOKEN)
        claim = self._claim(user_id, origin)
        if not self.spend_code(user_id, code):
            self._fail(claim, origin)
        if not self.repository.spend_challenge(token_hash, self.clock()):
            # Spent by a concurrent finish, or expired meanwhile.
            self.users.release_login_attempt(claim)
            raise Unauthenticated(INVALID_MFA_TOKEN)
        return claim

    def step_up(self, claim: LoginClaim, code: str, *, origin: Origin = NO_ORIGIN) -> None:
        """For an account change whose password the caller has just checked under `claim`,
        of a user with this factor on: spend `code`; a wrong one is counted as a failed
        login (settling the claim) and refused."""
        user = claim.user
        assert user is not None, "a claim whose password was checked"
        try:
            passed = self.spend_code(user.id, code)
        except BaseException:
            self.users.release_login_attempt(claim)
            raise
        if not passed:
            self._fail(claim, origin)

    def spend_code(self, user_id: str, code: str) -> bool:
        """Accept a current TOTP code or a recovery code, once."""
        if mfa.is_totp_code(code):
            record = self.repository.totp_of(user_id)
            if record is None or record.confirmed_at is None:
                return False
            secret = self.box.open(user_id, record.secret_ciphertext)
            step = mfa.matching_step(secret, code, self.clock())
            return step is not None and self.repository.spend_step(user_id, step)
        return self.repository.spend_recovery_code(user_id, mfa.recovery_code_hash(code))

    def _throttled(self, user_id: str, origin: Origin, check: Callable[[LoginClaim], bool]) -> None:
        """Run a code check under the lockout; Unauthenticated when it fails."""
        claim = self._claim(user_id, origin)
        try:
            passed = check(claim)
        except BaseException:
            self.users.release_login_attempt(claim)
            raise
        if not passed:
            self._fail(claim, origin)
        self.users.release_login_attempt(claim)

    def _claim(self, user_id: str, origin: Origin) -> LoginClaim:
        now = self.clock()
        claim = self.users.claim_attempt_of(user_id, now, self.lockout, origin)
        if claim.user is None:
            self.users.record_refusal(claim, now, origin)
            log.info("code refused", extra={"reason": "locked", "user_id": user_id})
            raise Unauthenticated(INVALID_CODE)
        return claim

    def _fail(self, claim: LoginClaim, origin: Origin) -> None:
        self.users.fail_login_attempt(
            claim, self.clock(), self.lockout, origin, reason="invalid_code"
        )
        user_id = claim.user.id if claim.user is not None else None
        log.info("code refused", extra={"reason": "wrong_code", "user_id": user_id})
        raise Unauthenticated(INVALID_CODE)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
