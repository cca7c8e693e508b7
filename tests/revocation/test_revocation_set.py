"""What a verifier does with the revocations it holds, and with keys it cannot refresh."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from authgate_common.jwks import JwksCache, KeysUnavailable
from authgate_common.revocation import (
    KEY,
    ROLES,
    SESSION,
    USER,
    RevocationSet,
    RevocationsUnavailable,
    RevokedToken,
)
from authgate_common.settings import RevocationSettings
from authgate_common.tokens import TokenSettings, TokenVerifier
from gateway.auth import Authenticator
from gateway.errors import Problem
from tests.gateway.fake_upstreams import TokenMinter
from tests.revocation.helpers import ManualClock

NOW = datetime(2026, 12, 1, 9, 0, 0, 500000, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


@dataclass(frozen=True)
class Token:
    user_id: str = "user-1"
    session_id: str = "session-1"
    key_id: str = "kid-1"
    issued_at: int = int(NOW.timestamp())
    roles: frozenset[str] = frozenset({"admin", "support"})


def _synced(clock: ManualClock, **settings: float) -> RevocationSet:
    revocations = RevocationSet(RevocationSettings(**settings), clock=clock, wall_clock=clock)
    revocations.heard(0)
    return revocations


def test_tokens_issued_at_or_before_not_before_are_refused_later_ones_are_not() -> None:
    revocations = _synced(ManualClock())
    revocations.apply(USER, "user-1", NOW, LATER)

    with pytest.raises(RevokedToken, match=USER):
        revocations.check(Token())  # iat is NOW's second, 0.5 s before the revocation
    revocations.check(Token(issued_at=int(NOW.timestamp()) + 1))
    revocations.check(Token(user_id="user-2"))


def test_a_session_revocation_refuses_that_session_only() -> None:
    revocations = _synced(ManualClock())
    revocations.apply(SESSION, "session-1", NOW, LATER)

    with pytest.raises(RevokedToken, match=SESSION):
        revocations.check(Token())
    revocations.check(Token(session_id="session-2"))
    revocations.check(Token(session_id=""))  # a token without sid matches no session


def test_a_revoked_key_refuses_its_tokens_whatever_their_iat() -> None:
    # A stolen key signs any iat it likes.
    revocations = _synced(ManualClock())
    revocations.apply(KEY, "kid-1", NOW, LATER)

    with pytest.raises(RevokedToken, match=KEY):
        revocations.check(Token(issued_at=int(LATER.timestamp()) + 100))
    revocations.check(Token(key_id="kid-2"))


def test_a_later_not_before_wins_and_an_earlier_one_never_loosens() -> None:
    revocations = _synced(ManualClock())
    revocations.apply(USER, "user-1", NOW + timedelta(seconds=10), LATER)
    revocations.apply(USER, "user-1", NOW, LATER)  # e.g. replayed by a snapshot

    with pytest.raises(RevokedToken):
        revocations.check(Token(issued_at=int(NOW.timestamp()) + 5))


def test_a_role_removal_narrows_earlier_tokens_of_the_user_and_refuses_none() -> None:
    revocations = _synced(ManualClock())
    revocations.apply(ROLES, "user-1", NOW, LATER, roles=["support", "billing"])

    # Issued in NOW's second, before the change: only the roles the user still has.
    assert revocations.check(Token()) == {"support"}
    assert revocations.check(Token(issued_at=int(NOW.timestamp()) + 1)) == {"admin", "support"}
    assert revocations.check(Token(user_id="user-2")) == {"admin", "support"}


def test_every_role_removed_leaves_earlier_tokens_with_none() -> None:
    revocations = _synced(ManualClock())
    revocations.apply(ROLES, "user-1", NOW, LATER, roles=[])

    assert revocations.check(Token()) == frozenset()


def test_the_latest_role_removal_gives_the_roles_whatever_order_they_come_in() -> None:
    # admin removed (id 7), then support removed after admin was granted again (id 9).
    revocations = _synced(ManualClock())
    revocations.apply(ROLES, "user-1", NOW, LATER, roles=["support"], revocation_id=7)
    revocations.apply(
        ROLES, "user-1", NOW + timedelta(seconds=5), LATER, roles=["admin"], revocation_id=9
    )
    revocations.apply(ROLES, "user-1", NOW, LATER, roles=["support"], revocation_id=7)  # replayed

    assert revocations.check(Token()) == {"admin"}
    # The not-before only grows: a token from between the two removals is narrowed too.
    assert revocations.check(Token(issued_at=int(NOW.timestamp()) + 3)) == {"admin"}
    assert revocations.check(Token(issued_at=int(NOW.timestamp()) + 6)) == {"admin", "support"}


def test_a_user_revocation_still_refuses_a_token_whose_roles_were_narrowed() -> None:
    revocations = _synced(ManualClock())
    revocations.apply(ROLES, "user-1", NOW, LATER, roles=["support"])
    revocations.apply(USER, "user-1", NOW + timedelta(seconds=2), LATER)

    with pytest.raises(RevokedToken, match=USER):
        revocations.check(Token(issued_at=int(NOW.timestamp()) + 1))


def test_expired_revocations_are_forgotten() -> None:
    clock = ManualClock()
    clock.now = NOW.timestamp()
    revocations = _synced(clock, max_staleness_seconds=3600)
    revocations.apply(USER, "user-1", NOW, NOW + timedelta(seconds=60))
    revocations.apply(ROLES, "user-1", NOW, NOW + timedelta(seconds=60), roles=[])

    clock.now += 61
    revocations.heard(0)

    assert revocations.check(Token()) == Token().roles


def test_before_the_first_snapshot_tokens_are_refused_after_a_bounded_wait() -> None:
    clock = ManualClock()
    revocations = RevocationSet(RevocationSettings(initial_sync_seconds=2.0), clock=clock)
    clock.now += 2.5

    with pytest.raises(RevocationsUnavailable):
        revocations.check(Token())


@pytest.mark.parametrize(("silent_for", "accepted"), [(29.9, True), (30.1, False)])
def test_a_silent_feed_is_trusted_up_to_the_staleness_bound(
    silent_for: float, accepted: bool
) -> None:
    clock = ManualClock()
    revocations = _synced(clock, max_staleness_seconds=30.0)
    clock.now += silent_for

    if accepted:
        revocations.check(Token())
    else:
        with pytest.raises(RevocationsUnavailable):
            revocations.check(Token())
    assert revocations.current() is accepted


def test_the_staleness_bound_is_read_from_the_environment() -> None:
    from authgate_common.config import ConfigError, Env

    assert RevocationSettings.from_env(Env({})).max_staleness_seconds == 30.0
    settings = RevocationSettings.from_env(Env({"REVOCATION_MAX_STALENESS_SECONDS": "45"}))
    assert settings.max_staleness_seconds == 45.0
    with pytest.raises(ConfigError, match="REVOCATION_MAX_STALENESS_SECONDS"):
        RevocationSettings.from_env(Env({"REVOCATION_MAX_STALENESS_SECONDS": "1"}))


class _Revoked:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def check(self, token: object) -> frozenset[str]:
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [(RevokedToken(USER), 401), (RevocationsUnavailable("silent"), 503)],
)
def test_the_gateway_answers_a_revoked_token_401_and_an_unknown_state_503(
    token_settings: TokenSettings, error: Exception, status: int
) -> None:
    minter = TokenMinter(token_settings)
    keys = JwksCache(lambda: [minter.jwk], allowed_algorithms=token_settings.algorithms)
    verifier = TokenVerifier(token_settings, keys, cache_size=8, revocations=_Revoked(error))
    authenticator = Authenticator(verifier, max_token_bytes=8192)

    with pytest.raises(Problem) as raised:
        authenticator.authenticate(f"Bearer {minter.mint('user-1')}")

    assert raised.value.status == status


def test_a_narrowed_token_is_authenticated_and_forbidden_only_where_a_removed_role_is_needed(
    token_settings: TokenSettings,
) -> None:
    minter = TokenMinter(token_settings)
    keys = JwksCache(lambda: [minter.jwk], allowed_algorithms=token_settings.algorithms)
    revocations = RevocationSet()
    revocations.heard(0)
    verifier = TokenVerifier(token_settings, keys, cache_size=8, revocations=revocations)
    authenticator = Authenticator(verifier, max_token_bytes=8192)
    token = minter.mint("user-1", roles=["admin", "support"])
    header = f"Bearer {token}"
    authenticator.authorize(authenticator.authenticate(header), ["admin"])  # cached now

    revocations.apply(
        ROLES,
        "user-1",
        datetime.now(UTC),
        datetime.now(UTC) + timedelta(hours=1),
        roles=["support"],
    )

    caller = authenticator.authenticate(header)  # the cached verification, narrowed
    assert caller.identity.roles == {"support"}
    authenticator.authorize(caller, [])  # routes needing no role work on
    authenticator.authorize(caller, ["support"])
    with pytest.raises(Problem) as raised:
        authenticator.authorize(caller, ["admin"])
    assert raised.value.status == 403
    assert 'error="insufficient_scope"' in raised.value.headers["WWW-Authenticate"]


class _FailingSource:
    def __init__(self, keys: list[dict[str, str]]) -> None:
        self.keys = keys
        self.failing = False

    def __call__(self) -> list[dict[str, str]]:
        if self.failing:
            raise ConnectionError("auth service down")
        return self.keys


@pytest.mark.parametrize(("unreachable_for", "trusted"), [(359.0, True), (361.0, False)])
def test_keys_that_cannot_be_refreshed_are_trusted_for_a_bounded_grace(
    token_settings: TokenSettings, unreachable_for: float, trusted: bool
) -> None:
    minter = TokenMinter(token_settings)
    source, clock = _FailingSource([minter.jwk]), ManualClock()
    keys = JwksCache(source, allowed_algorithms=["RS256"], max_age=300, grace=60, clock=clock)
    assert keys.get(minter.kid) is not None
    source.failing = True
    clock.now += unreachable_for

    if trusted:
        assert keys.get(minter.kid) is not None
    else:
        with pytest.raises(KeysUnavailable):
            keys.get(minter.kid)


def test_the_feeds_key_set_drops_removed_keys_and_confirms_the_others(
    token_settings: TokenSettings,
) -> None:
    kept, removed = TokenMinter(token_settings), TokenMinter(token_settings)
    source, clock = _FailingSource([kept.jwk, removed.jwk]), ManualClock()
    keys = JwksCache(source, allowed_algorithms=["RS256"], max_age=300, grace=60, clock=clock)
    assert keys.get(kept.kid) is not None
    source.failing = True

    keys.confirm([kept.kid, removed.kid])
    clock.now += 350
    keys.confirm([kept.kid])  # the feed: the auth service has only this key now
    clock.now += 350  # long past max_age + grace since the fetch, not since the confirmation

    assert keys.get(kept.kid) is not None
    with pytest.raises(KeysUnavailable):  # unknown now, and the source cannot be asked
        keys.get(removed.kid)
    keys.forget(kept.kid)
    with pytest.raises(KeysUnavailable):
        keys.get(kept.kid)


def test_a_cached_verification_is_rechecked_against_the_key_set(
    token_settings: TokenSettings,
) -> None:
    minter = TokenMinter(token_settings)
    keys = JwksCache(lambda: [minter.jwk], allowed_algorithms=["RS256"], cooldown=3600)
    verifier = TokenVerifier(token_settings, keys, cache_size=8)
    token = minter.mint("user-1")
    verifier.verify(token)

    keys.forget(minter.kid)

    with pytest.raises(Exception, match="unknown key"):
        verifier.verify(token)


def test_a_key_the_feed_never_reported_is_kept(token_settings: TokenSettings) -> None:
    # Rotated in on another replica first: this replica's feed does not know it yet.
    old, rotated = TokenMinter(token_settings), TokenMinter(token_settings)
    keys = JwksCache(lambda: [old.jwk, rotated.jwk], allowed_algorithms=["RS256"])
    keys.confirm([old.kid])
    assert keys.get(rotated.kid) is not None

    keys.confirm([old.kid])

    assert keys.get(rotated.kid) is not None
