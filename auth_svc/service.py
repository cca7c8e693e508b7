"""The auth domain: register, log in, rotate and revoke refresh tokens, publish keys.

Knows nothing of gRPC or SQL; raises authgate_common.errors.* for the edges to map.

Choices worth knowing:
- Unknown user, wrong password, disabled user and locked account all answer the
  same Unauthenticated(INVALID_CREDENTIALS), after one argon2 verification each
  (against the dummy hash when there is no hash to check).
- Brute force: each login attempt is claimed on the lockout of its account and
  client address before its password is checked, atomically in the database, and
  refused without a check while that address (or, under a distributed attack, the
  whole account) is locked (see LockoutPolicy); a failure is counted when the
  check fails, a success takes the address's count back to zero.
- With a second factor on, a right password gives only an mfa_token; LoginMfa with
  a code gives the tokens (amr pwd, otp). Codes are throttled like passwords.
- A refresh token can be spent once. Presenting it again - including losing a
  race against a concurrent Refresh with the same token - revokes its whole
  family, since the server cannot tell the rightful client from a thief.
- Logout is idempotent in the manner of RFC 7009: an unknown, expired, spent or
  revoked token still succeeds (and a spent one still revokes its family), so
  Logout reveals nothing about the tokens it is given. Only an empty token is
  refused, as InvalidArgument.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from auth_svc import rules
from auth_svc.audit import NO_ORIGIN, EventType, NewEvent, Origin
from auth_svc.config import AuthConfig
from auth_svc.keys import KeyRing
from auth_svc.mfa import MfaChallenge
from auth_svc.passwords import PasswordHasher
from auth_svc.repository import (
    AccountRepository,
    LoginClaim,
    PasswordChangedMeanwhile,
    RefreshTokenRecord,
    RefreshTokenRepository,
    SessionRecord,
    UserRecord,
    UserRepository,
)
from auth_svc.second_factor import SecondFactor
from auth_svc.tokens import (
    MAX_REFRESH_TOKEN_LENGTH,
    AccessTokenIssuer,
    AccessTokenSubject,
    hash_refresh_token,
    new_refresh_token,
)
from authgate_common.clock import Clock, utc_now
from authgate_common.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = "invalid username or password"

# Lockout events, for metrics: a failed login locked the account; a login met a lock.
LOCK_ENGAGED = "engaged"
LOCK_REFUSED = "refused"
LockoutObserver = Callable[[str], None]
WRONG_PASSWORD = "the password is wrong"  # noqa: S105 - a message
ACCOUNT_GONE = "the account no longer exists"
CODE_REQUIRED = "code is required: this account has a second factor on"
SESSION_NOT_FOUND = "you have no live session with this id"
INVALID_REFRESH_TOKEN = "the refresh token is invalid, expired or revoked"  # noqa: S105
TOKEN_TYPE = "Bearer"  # noqa: S105 - the OAuth token_type, not a secret


class SecondFactorRequired(Exception):
    """The password was right and a second factor is due: the login's answer is the
    challenge, and no token."""

    def __init__(self, challenge: MfaChallenge) -> None:
        super().__init__("a second factor is required")
        self.challenge = challenge


@dataclass(frozen=True)
class RegisteredUser:
    user_id: str
    username: str


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: str = TOKEN_TYPE
    # Whom the pair was issued to: for logs and metrics, never sent to the client.
    user_id: str = ""


@dataclass(frozen=True)
class OpenIdConfiguration:
    issuer: str
    jwks_uri: str
    algorithms: tuple[str, ...]


class AuthService:
    """The auth use cases over repositories, a password hasher and a token issuer."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        users: UserRepository,
        refresh_tokens: RefreshTokenRepository,
        passwords: PasswordHasher,
        access_tokens: AccessTokenIssuer,
        keys: KeyRing,
        common_passwords: frozenset[str] = frozenset(),
        clock: Clock = utc_now,
        on_lockout: LockoutObserver = lambda _event: None,
        accounts: AccountRepository | None = None,
        on_account_deleted: Callable[[str], None] = lambda _user_id: None,
        second_factor: SecondFactor | None = None,
    ) -> None:
        self._config = config
        self._second_factor = second_factor
        self._accounts = accounts
        # Told the user id once a deletion has committed (wakes the profile outbox).
        self._on_account_deleted = on_account_deleted
        self._on_lockout = on_lockout
        self._users = users
        self._refresh_tokens = refresh_tokens
        self._passwords = passwords
        self._access_tokens = access_tokens
        self._keys = keys
        self._common_passwords = common_passwords
        self._clock = clock

    def register(
        self,
        username: str,
        password: str,
        *,
        email: str = "",
        display_name: str = "",
        origin: Origin = NO_ORIGIN,
    ) -> RegisteredUser:
        if not self._config.registration_enabled:
            raise PermissionDenied("registration is disabled on this server")
        rules.check_username(username)
        rules.check_password(
            password,
            username=username,
            min_length=self._config.password_min_length,
            common_passwords=self._common_passwords,
        )
        checked_email = rules.check_email(email)
        checked_name = rules.check_display_name(display_name)
        now = self._clock()
        user = UserRecord(
            id=str(uuid.uuid4()),
            username=username,
            username_normalized=rules.normalize_username(username),
            password_hash=self._passwords.hash(password),
            email=checked_email,
            display_name=checked_name,
            disabled=False,
            created_at=now,
            updated_at=now,
        )
        self._users.add(user, NewEvent(EventType.REGISTER, user.id, origin, now))
        log.info("user registered", extra={"user_id": user.id})
        return RegisteredUser(user_id=user.id, username=user.username)

    def login(self, username: str, password: str, *, origin: Origin = NO_ORIGIN) -> TokenPair:
        """The token pair; for a user with a second factor on, SecondFactorRequired with
        the challenge that `login_mfa` finishes (no token before the second factor)."""
        if not username or not password:
            raise InvalidArgument("username and password are required")
        now = self._clock()
        # The hashing slot is taken before the attempt is counted: a login refused
        # because the server is busy (429) must not count towards a lockout.
        with self._passwords.reserved():
            claim = self._checked_claim(username, password, now, origin)
        user = claim.user
        assert user is not None
        if self._passwords.needs_rehash(user.password_hash):
            self._users.replace_password_hash(
                user.id, user.password_hash, self._passwords.hash(password), now
            )
            log.info("password rehashed with current parameters", extra={"user_id": user.id})
        if self._second_factor is not None and self._second_factor.enabled(user.id):
            # The password was right but proves half: the address's failures stay.
            self._users.release_login_attempt(claim)
            log.info("login awaits its second factor", extra={"user_id": user.id})
            raise SecondFactorRequired(self._second_factor.challenge(user.id))
        return self._complete_login(claim, now, origin, amr=("pwd",))

    def login_mfa(self, mfa_token: str, code: str, *, origin: Origin = NO_ORIGIN) -> TokenPair:
        """Finish a login that answered a challenge, with a TOTP or a recovery code."""
        if not mfa_token or not code:
            raise InvalidArgument("mfa_token and code are required")
        if self._second_factor is None:
            raise Unauthenticated(INVALID_CREDENTIALS)
        claim = self._second_factor.finish(mfa_token, code, origin=origin)
        assert claim.user is not None
        if claim.user.disabled:
            self._users.fail_login_attempt(claim, self._clock(), self._config.lockout, origin)
            log.info("login refused", extra={"reason": "disabled", "user_id": claim.user.id})
            raise Unauthenticated(INVALID_CREDENTIALS)
        return self._complete_login(claim, self._clock(), origin, amr=("pwd", "otp"))

    def _complete_login(
        self, claim: LoginClaim, now: datetime, origin: Origin, *, amr: tuple[str, ...]
    ) -> TokenPair:
        user = claim.user
        assert user is not None
        token, record = self._new_session_token(user.id, now)
        self._users.complete_login(
            claim,
            record,
            session_event(EventType.LOGIN_SUCCEEDED, record, origin, now, amr=list(amr)),
            session_record=new_session(record, origin, amr),
        )
        log.info("login", extra={"user_id": user.id})
        return self._token_pair(user, token, record, now, amr=amr)

    def _checked_claim(
        self, username: str, password: str, now: datetime, origin: Origin
    ) -> LoginClaim:
        """The counted claim of the user whose password this is; Unauthenticated, alike for
        every reason, if none."""
        # Not a username at all ("" matches no user): refused and audited like an unknown one.
        name = rules.normalize_username(username) if rules.is_valid_username(username) else ""
        claim = self._users.claim_login_attempt(name, now, self._config.lockout, origin)
        user = claim.user
        if user is None:
            # Unknown or locked: pay for one verification all the same, so that
            # neither the answer nor its timing tells these apart from a wrong password.
            self._passwords.verify_dummy(password)
            self._users.record_refusal(claim, now, origin)
            if claim.locked:
                self._on_lockout(LOCK_REFUSED)
            log.info("login refused", extra={"reason": "locked" if claim.locked else "unknown"})
            raise Unauthenticated(INVALID_CREDENTIALS)
        if not self._passwords.verify(user.password_hash, password):
            engaged = self._users.fail_login_attempt(claim, now, self._config.lockout, origin)
            if engaged is not None:
                self._on_lockout(LOCK_ENGAGED)
            log.info(
                "login refused",
                extra={
                    "reason": "wrong_password",
                    "user_id": user.id,
                    "locked": engaged,
                },
            )
            raise Unauthenticated(INVALID_CREDENTIALS)
        if user.disabled:
            self._users.fail_login_attempt(claim, now, self._config.lockout, origin)
            log.info("login refused", extra={"reason": "disabled", "user_id": user.id})
            raise Unauthenticated(INVALID_CREDENTIALS)
        return claim

    def refresh(self, refresh_token: str, *, origin: Origin = NO_ORIGIN) -> TokenPair:
        if not refresh_token:
            raise InvalidArgument("refresh_token is required")
        now = self._clock()
        presented = self._find_refresh_token(refresh_token)
        if presented is None or presented.revoked_at is not None:
            raise Unauthenticated(INVALID_REFRESH_TOKEN)
        if presented.spent_at is not None:
            self._revoke_family(
                presented, now, reason="reuse of a spent refresh token", reuse_by=origin
            )
            raise Unauthenticated(INVALID_REFRESH_TOKEN)
        if presented.expires_at <= now:
            raise Unauthenticated(INVALID_REFRESH_TOKEN)
        user = self._users.by_id(presented.user_id)
        if user is None or user.disabled:
            self._revoke_family(presented, now, reason="user disabled or deleted")
            raise Unauthenticated(INVALID_REFRESH_TOKEN)
        token, child = self._new_refresh_token(
            user.id,
            now,
            family_id=presented.family_id,
            parent_id=presented.id,
            family_expires_at=presented.family_expires_at,
        )
        if not self._refresh_tokens.rotate(presented.token_hash, child, now):
            # Someone spent (or revoked) it between our read and our update.
            self._revoke_family(
                presented, now, reason="concurrent reuse of a refresh token", reuse_by=origin
            )
            raise Unauthenticated(INVALID_REFRESH_TOKEN)
        # Current roles, not those of the login: a role change shows at the next refresh.
        # How the login authenticated stays the session's (a second factor included).
        return self._token_pair(
            user,
            token,
            child,
            now,
            roles=self._users.roles_of(user.id),
            amr=self._refresh_tokens.amr_of(presented.family_id),
        )

    def logout(self, refresh_token: str, *, origin: Origin = NO_ORIGIN) -> None:
        if not refresh_token:
            raise InvalidArgument("refresh_token is required")
        presented = self._find_refresh_token(refresh_token)
        if presented is not None and presented.revoked_at is None:
            now = self._clock()
            event = session_event(EventType.LOGOUT, presented, origin, now)
            self._refresh_tokens.revoke_family(presented.family_id, now, event)
            log.info("logout", extra={"user_id": presented.user_id})

    # --- the caller's own account (AccountService); user_id comes from a verified token ---

    def change_password(
        self,
        user_id: str,
        session_id: str,
        current_password: str,
        new_password: str,
        *,
        code: str = "",
        origin: Origin = NO_ORIGIN,
    ) -> TokenPair:
        """Check the current password as a login does, and with a second factor on the code
        (a wrong one of either counts towards the lockout), set the new password, end every
        session and start a new one: its pair."""
        accounts = self._account_repository()
        rules.CURRENT_PASSWORD_RULES.check(current_password)
        user = self._account_owner(user_id)
        second_factor = self._step_up_factor(user.id, code)
        rules.check_password(
            new_password,
            username=user.username,
            min_length=self._config.password_min_length,
            common_passwords=self._common_passwords,
        )
        if new_password == current_password:
            raise InvalidArgument("new_password must differ from the current password")
        now = self._clock()
        with self._passwords.reserved():
            claim = self._checked_claim(user.username, current_password, now, origin)
            new_hash = self._passwords.hash(new_password)
        if second_factor is not None:
            second_factor.step_up(claim, code, origin=origin)
        claimed = claim.user
        assert claimed is not None
        token, record = self._new_session_token(claimed.id, now)
        event = session_event(
            EventType.PASSWORD_CHANGED, record, origin, now, previous_session_id=session_id
        )
        try:
            self._users.complete_login(
                claim,
                record,
                event,
                session_record=new_session(record, origin, ("pwd",)),
                then=accounts.password_change(
                    claimed.id, claimed.password_hash, new_hash, record.family_id, now
                ),
            )
        except PasswordChangedMeanwhile:
            raise Unauthenticated(WRONG_PASSWORD) from None
        log.info("password changed", extra={"user_id": claimed.id})
        return self._token_pair(claimed, token, record, now)

    def list_sessions(self, user_id: str) -> list[SessionRecord]:
        return self._account_repository().live_sessions(user_id, self._clock())

    def revoke_session(self, user_id: str, session_id: str, *, origin: Origin = NO_ORIGIN) -> None:
        """End one of the caller's sessions; another user's (or no) session is NotFound."""
        rules.SESSION_ID_RULES.check(session_id)
        event = NewEvent(EventType.SESSION_REVOKED, user_id, origin, self._clock())
        if not self._account_repository().revoke_session(user_id, session_id, event):
            raise NotFound(SESSION_NOT_FOUND)

    def revoke_other_sessions(
        self, user_id: str, session_id: str, *, origin: Origin = NO_ORIGIN
    ) -> int:
        event = NewEvent(
            EventType.SESSIONS_REVOKED, user_id, origin, self._clock(), {"kept": session_id}
        )
        return self._account_repository().revoke_other_sessions(user_id, session_id, event)

    def delete_account(
        self, user_id: str, password: str, *, code: str = "", origin: Origin = NO_ORIGIN
    ) -> None:
        """Check the password as a login does, and with a second factor on the code, then
        delete the user, their sessions, roles and (through the outbox) profile. The event
        keeps the user id and request id only."""
        accounts = self._account_repository()
        rules.DELETE_PASSWORD_RULES.check(password)
        user = self._account_owner(user_id)
        second_factor = self._step_up_factor(user.id, code)
        now = self._clock()
        with self._passwords.reserved():
            claim = self._checked_claim(user.username, password, now, origin)
        if second_factor is not None:
            second_factor.step_up(claim, code, origin=origin)
        # Where the owner was is personal data: not kept once the account is gone.
        event = NewEvent(
            EventType.ACCOUNT_DELETED, user.id, Origin(request_id=origin.request_id), now
        )
        if not accounts.delete_user(claim, event):
            raise Unauthenticated(ACCOUNT_GONE)
        log.info("account deleted", extra={"user_id": user.id})
        self._on_account_deleted(user.id)

    def _step_up_factor(self, user_id: str, code: str) -> SecondFactor | None:
        """The second factor a password change or deletion must pass (None: none is on),
        once it is read whether it is on. A missing code is told before the password is
        checked, so that the answer says nothing of the password."""
        rules.STEP_UP_CODE_RULES.check(code)
        if self._second_factor is None or not self._second_factor.enabled(user_id):
            return None
        if not code:
            raise InvalidArgument(CODE_REQUIRED)
        return self._second_factor

    def _account_owner(self, user_id: str) -> UserRecord:
        user = self._users.by_id(user_id)
        if user is None:
            raise Unauthenticated(ACCOUNT_GONE)
        return user

    def _account_repository(self) -> AccountRepository:
        if self._accounts is None:
            raise RuntimeError("AuthService was built without an AccountRepository")
        return self._accounts

    def jwks(self) -> list[dict[str, str]]:
        return self._keys.jwks(self._config.signing_algorithm)

    def openid_configuration(self) -> OpenIdConfiguration:
        """Issuer discovery: what a verifier needs to check this service's tokens."""
        return OpenIdConfiguration(
            issuer=self._config.tokens.issuer,
            jwks_uri=self._config.jwks_uri,
            algorithms=(self._config.signing_algorithm,),
        )

    def _find_refresh_token(self, refresh_token: str) -> RefreshTokenRecord | None:
        if len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            return None
        return self._refresh_tokens.by_hash(hash_refresh_token(refresh_token))

    def _new_session_token(self, user_id: str, now: datetime) -> tuple[str, RefreshTokenRecord]:
        """The first refresh token of a new session (a new family, with its absolute end)."""
        return self._new_refresh_token(
            user_id,
            now,
            family_id=str(uuid.uuid4()),
            parent_id=None,
            family_expires_at=now + timedelta(seconds=self._config.refresh_family_max_seconds),
        )

    def _new_refresh_token(
        self,
        user_id: str,
        now: datetime,
        *,
        family_id: str,
        parent_id: str | None,
        family_expires_at: datetime,
    ) -> tuple[str, RefreshTokenRecord]:
        token = new_refresh_token()
        expires_at = min(
            now + timedelta(seconds=self._config.refresh_token_ttl_seconds), family_expires_at
        )
        record = RefreshTokenRecord(
            id=str(uuid.uuid4()),
            token_hash=hash_refresh_token(token),
            family_id=family_id,
            user_id=user_id,
            parent_id=parent_id,
            issued_at=now,
            expires_at=expires_at,
            family_expires_at=family_expires_at,
        )
        return token, record

    def _revoke_family(
        self,
        token: RefreshTokenRecord,
        now: datetime,
        *,
        reason: str,
        reuse_by: Origin | None = None,
    ) -> None:
        """Revoke the token's family; with reuse_by, audited as refresh_reuse_detected."""
        event = None
        if reuse_by is not None:
            event = session_event(EventType.REFRESH_REUSE_DETECTED, token, reuse_by, now)
        revoked = self._refresh_tokens.revoke_family(token.family_id, now, event)
        log.warning(
            "refresh token family revoked",
            extra={
                "reason": reason,
                "family_id": token.family_id,
                "user_id": token.user_id,
                "revoked": revoked,
            },
        )

    def _token_pair(
        self,
        user: UserRecord,
        refresh_token: str,
        record: RefreshTokenRecord,
        now: datetime,
        *,
        roles: frozenset[str] | None = None,
        amr: tuple[str, ...] = ("pwd",),
    ) -> TokenPair:
        subject = AccessTokenSubject(
            user_id=user.id,
            username=user.username,
            email=user.email,
            display_name=user.display_name,
            roles=self._users.roles_of(user.id) if roles is None else roles,
            session_id=record.family_id,
            amr=amr,
        )
        return TokenPair(
            access_token=self._access_tokens.issue(subject, now),
            expires_in=self._access_tokens.ttl_seconds,
            refresh_token=refresh_token,
            refresh_expires_in=int((record.expires_at - now).total_seconds()),
            user_id=user.id,
        )


def session_event(
    kind: EventType, record: RefreshTokenRecord, origin: Origin, now: datetime, **detail: Any
) -> NewEvent:
    """An audit event about record's session (its refresh-token family), for its owner."""
    return NewEvent(kind, record.user_id, origin, now, {"session_id": record.family_id, **detail})


def new_session(record: RefreshTokenRecord, origin: Origin, amr: tuple[str, ...]) -> SessionRecord:
    """The session a login starts with its first refresh token."""
    return SessionRecord(
        id=record.family_id,
        user_id=record.user_id,
        created_at=record.issued_at,
        last_used_at=record.issued_at,
        client_ip=origin.client_ip,
        user_agent=origin.user_agent,
        amr=amr,
    )
