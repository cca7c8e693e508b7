"""The account API through the real stack (gateway, auth_svc, profile_svc), on SQLite and
MariaDB: password change, sessions, deletion with the profile service down, and the
access tokens each of them (and logout, and refresh-token reuse) takes away, refused by
the gateway within 2 s through the revocation feed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import requests

from tests.harness import PASSWORD, RealStack, wait_until

pytestmark = pytest.mark.e2e

NEW_PASSWORD = "a brand new passphrase 42"
WITHIN = 2.0


@dataclass(frozen=True)
class Pair:
    access: str
    refresh: str


def _login(stack: RealStack, username: str, password: str = PASSWORD, agent: str = "") -> Pair:
    headers = {"User-Agent": agent} if agent else {}
    response = requests.post(
        f"{stack.url}/v1/auth/login",
        json={"username": username, "password": password},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return Pair(body["access_token"], body["refresh_token"])


def _two_sessions(stack: RealStack) -> tuple[str, Pair, Pair]:
    """A new user's name and two sessions of theirs (two logins)."""
    username = stack.register()
    return username, _login(stack, username), _login(stack, username)


def _call(
    stack: RealStack, method: str, path: str, token: str, body: object = None
) -> requests.Response:
    # A new connection each time, so that both gunicorn workers answer.
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    return requests.request(method, f"{stack.url}{path}", json=body, headers=headers, timeout=10)


def _change_password(
    stack: RealStack, token: str, new_password: str, current_password: str = PASSWORD
) -> requests.Response:
    body = {"current_password": current_password, "new_password": new_password}
    return _call(stack, "POST", "/v1/account/password", token, body)


def _refresh(stack: RealStack, refresh_token: str) -> requests.Response:
    return requests.post(
        f"{stack.url}/v1/auth/refresh", json={"refresh_token": refresh_token}, timeout=10
    )


def _profile_status(stack: RealStack, token: str) -> int:
    return _call(stack, "GET", "/v1/profile", token).status_code


def _refused_within(stack: RealStack, token: str, seconds: float = WITHIN) -> float:
    """How long until the gateway refuses the access token (failing past `seconds`)."""
    outcome, took = stack.wait_until(
        lambda: stack.request("GET", "/v1/profile", token=token), 401, within=seconds
    )
    assert outcome.status == 401, outcome
    assert took <= seconds, took
    return took


def _sessions(stack: RealStack, token: str) -> list[dict[str, Any]]:
    response = _call(stack, "GET", "/v1/account/sessions", token)
    assert response.status_code == 200, response.text
    sessions: list[dict[str, Any]] = response.json()["sessions"]
    return sessions


def _sid(stack: RealStack, token: str) -> str:
    (current,) = [s for s in _sessions(stack, token) if s["current"]]
    session_id: str = current["session_id"]
    return session_id


def _user_id(stack: RealStack, token: str) -> str:
    response = _call(stack, "GET", "/v1/profile", token)
    assert response.status_code == 200, response.text
    user_id: str = response.json()["user_id"]
    return user_id


def _events(stack: RealStack, user_id: str, event_type: str) -> list[Any]:
    return stack.rows(
        stack.auth_database_url,
        "SELECT client_ip, user_agent, detail FROM audit_events "
        "WHERE user_id = :user_id AND type = :type",
        user_id=user_id,
        type=event_type,
    )


def _count(stack: RealStack, url: str, sql: str, **params: object) -> int:
    return int(stack.scalar(url, sql, **params))


# --- sessions ------------------------------------------------------------------------------


def test_sessions_are_listed_with_the_current_one_marked(running_stack: RealStack) -> None:
    username = running_stack.register()
    first = _login(running_stack, username, agent="first-browser/1.0")
    second = _login(running_stack, username, agent="second-browser/2.0")

    listed = _sessions(running_stack, first.access)

    assert len(listed) == 2
    by_agent = {session["user_agent"]: session for session in listed}
    assert set(by_agent) == {"first-browser/1.0", "second-browser/2.0"}
    assert by_agent["first-browser/1.0"]["current"] is True
    assert by_agent["second-browser/2.0"]["current"] is False
    for session in listed:
        assert session["client_ip"] == "127.0.0.1"
        assert session["amr"] == ["pwd"]
        assert session["created_at"] <= session["last_used_at"]
    # The newest first; the session id is the token's sid.
    assert listed[0]["user_agent"] == "second-browser/2.0"
    assert _sid(running_stack, second.access) == by_agent["second-browser/2.0"]["session_id"]


def test_a_refresh_moves_last_used_on_and_keeps_the_session(running_stack: RealStack) -> None:
    username = running_stack.register()
    pair = _login(running_stack, username)
    (before,) = _sessions(running_stack, pair.access)

    refreshed = _refresh(running_stack, pair.refresh)
    assert refreshed.status_code == 200
    (after,) = _sessions(running_stack, refreshed.json()["access_token"])

    assert after["session_id"] == before["session_id"]
    assert after["created_at"] == before["created_at"]
    assert after["last_used_at"] > before["last_used_at"]


def test_revoking_one_session_refuses_its_refresh_at_once_and_its_tokens_within_2s(
    running_stack: RealStack,
) -> None:
    _, mine, other = _two_sessions(running_stack)
    other_sid = _sid(running_stack, other.access)
    assert _profile_status(running_stack, other.access) == 200

    revoked = _call(running_stack, "DELETE", f"/v1/account/sessions/{other_sid}", mine.access)

    assert revoked.status_code == 204, revoked.text
    assert _refresh(running_stack, other.refresh).status_code == 401
    _refused_within(running_stack, other.access)
    assert _profile_status(running_stack, mine.access) == 200
    assert [s["session_id"] for s in _sessions(running_stack, mine.access)] == [
        _sid(running_stack, mine.access)
    ]
    (event,) = _events(running_stack, _user_id(running_stack, mine.access), "session_revoked")
    assert other_sid in event.detail


def test_someone_elses_session_is_not_found_and_nothing_is_revoked(
    running_stack: RealStack,
) -> None:
    mallory = _login(running_stack, running_stack.register())
    victim_name = running_stack.register()
    victim = _login(running_stack, victim_name)
    victim_sid = _sid(running_stack, victim.access)
    revocations = _count(
        running_stack, running_stack.auth_database_url, "SELECT COUNT(*) FROM revocations"
    )

    answer = _call(running_stack, "DELETE", f"/v1/account/sessions/{victim_sid}", mallory.access)

    assert answer.status_code == 404, answer.text
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert (
        _count(running_stack, running_stack.auth_database_url, "SELECT COUNT(*) FROM revocations")
        == revocations
    )
    assert _profile_status(running_stack, victim.access) == 200
    assert _refresh(running_stack, victim.refresh).status_code == 200
    # An id that names no session at all answers the same.
    unknown = _call(
        running_stack,
        "DELETE",
        "/v1/account/sessions/00000000-0000-0000-0000-000000000000",
        mallory.access,
    )
    assert unknown.status_code == 404


def test_revoking_the_other_sessions_keeps_only_the_callers(running_stack: RealStack) -> None:
    username = running_stack.register()
    mine = _login(running_stack, username)
    others = [_login(running_stack, username) for _ in range(2)]

    answer = _call(running_stack, "POST", "/v1/account/sessions:revokeOthers", mine.access, {})

    assert answer.status_code == 204, answer.text
    for other in others:
        assert _refresh(running_stack, other.refresh).status_code == 401
    for other in others:
        _refused_within(running_stack, other.access)
    assert _profile_status(running_stack, mine.access) == 200
    assert len(_sessions(running_stack, mine.access)) == 1
    (event,) = _events(running_stack, _user_id(running_stack, mine.access), "sessions_revoked")
    assert '"sessions_revoked":2' in event.detail


# --- logout and reuse detection also end the session's access tokens --------------------------


def test_logout_refuses_the_sessions_access_token_within_2s(running_stack: RealStack) -> None:
    _, pair, other = _two_sessions(running_stack)
    assert _profile_status(running_stack, pair.access) == 200

    logout = requests.post(
        f"{running_stack.url}/v1/auth/logout", json={"refresh_token": pair.refresh}, timeout=10
    )

    assert logout.status_code == 204
    _refused_within(running_stack, pair.access)
    assert _profile_status(running_stack, other.access) == 200  # only that session ended


def test_refresh_token_reuse_refuses_the_sessions_access_tokens_within_2s(
    running_stack: RealStack,
) -> None:
    pair = _login(running_stack, running_stack.register())
    rotated = _refresh(running_stack, pair.refresh)
    assert rotated.status_code == 200
    newest = rotated.json()["access_token"]
    assert _profile_status(running_stack, newest) == 200

    assert _refresh(running_stack, pair.refresh).status_code == 401  # spent: a thief's replay

    _refused_within(running_stack, newest)
    _refused_within(running_stack, pair.access)


# --- change password -----------------------------------------------------------------------


def test_a_password_change_ends_every_other_session_and_answers_a_working_pair(
    running_stack: RealStack,
) -> None:
    username, mine, other = _two_sessions(running_stack)
    assert _profile_status(running_stack, other.access) == 200

    changed = _change_password(running_stack, mine.access, NEW_PASSWORD)

    assert changed.status_code == 200, changed.text
    assert changed.headers["Cache-Control"] == "no-store"
    fresh = changed.json()
    assert fresh["token_type"] == "Bearer"
    assert fresh["expires_in"] > 0
    assert _refresh(running_stack, other.refresh).status_code == 401  # at once
    _refused_within(running_stack, other.access)
    _refused_within(running_stack, mine.access)  # the caller's old session ended too
    assert _profile_status(running_stack, fresh["access_token"]) == 200
    assert len(_sessions(running_stack, fresh["access_token"])) == 1
    assert _refresh(running_stack, fresh["refresh_token"]).status_code == 200
    assert running_stack.login(username).status == 401  # the old password
    _login(running_stack, username, NEW_PASSWORD)
    user_id = _user_id(running_stack, fresh["access_token"])
    (event,) = _events(running_stack, user_id, "password_changed")
    assert PASSWORD not in event.detail
    assert NEW_PASSWORD not in event.detail


def test_a_new_password_must_meet_the_rules_and_differ(running_stack: RealStack) -> None:
    username = running_stack.register()
    pair = _login(running_stack, username)
    for new_password, reason in (
        ("short", "characters"),
        (PASSWORD, "differ"),
        ("password1234", "common"),
        (f"xx{username}xx-long-enough", "username"),
    ):
        answer = _change_password(running_stack, pair.access, new_password)
        assert answer.status_code == 400, (new_password, answer.text)
        assert reason in answer.json()["detail"]
    assert _profile_status(running_stack, pair.access) == 200  # nothing changed
    _login(running_stack, username)


def test_a_wrong_current_password_counts_towards_the_lockout(running_stack: RealStack) -> None:
    username = running_stack.register()
    pair = _login(running_stack, username)
    user_id = _user_id(running_stack, pair.access)
    for _ in range(5):  # AUTH_LOCKOUT_THRESHOLD
        answer = _change_password(
            running_stack, pair.access, NEW_PASSWORD, current_password="not the password at all"
        )
        assert answer.status_code == 401, answer.text

    # Locked like after five failed logins: even the right password is refused for now.
    assert running_stack.login(username).status == 401
    assert len(_events(running_stack, user_id, "lockout_engaged")) == 1
    assert len(_events(running_stack, user_id, "login_failed")) >= 5
    assert _events(running_stack, user_id, "password_changed") == []


# --- delete account ------------------------------------------------------------------------


def test_a_deletion_while_profile_svc_is_down_removes_the_profile_once_it_is_back(
    running_stack: RealStack,
) -> None:
    auth_db, profile_db = running_stack.auth_database_url, running_stack.profile_database_url
    username, pair, other = _two_sessions(running_stack)
    patched = _call(running_stack, "PATCH", "/v1/profile", pair.access, {"bio": "my old bio"})
    assert patched.status_code == 200
    user_id = patched.json()["user_id"]

    running_stack.kill("profile")
    try:
        deleted = _call(
            running_stack, "POST", "/v1/account:delete", pair.access, {"password": PASSWORD}
        )
        assert deleted.status_code == 204, deleted.text
        # Gone from auth_svc at once, the profile's removal queued.
        assert (
            _count(running_stack, auth_db, "SELECT COUNT(*) FROM users WHERE id = :u", u=user_id)
            == 0
        )
        for table in ("sessions", "refresh_tokens", "user_roles"):
            assert (
                _count(
                    running_stack,
                    auth_db,
                    f"SELECT COUNT(*) FROM {table} WHERE user_id = :u",  # noqa: S608
                    u=user_id,
                )
                == 0
            )
        queued = "SELECT COUNT(*) FROM profile_deletions WHERE user_id = :u"
        assert _count(running_stack, auth_db, queued, u=user_id) == 1
        # The worker keeps trying while profile_svc is down.
        wait_until(
            lambda: (
                _count(
                    running_stack,
                    auth_db,
                    "SELECT attempts FROM profile_deletions WHERE user_id = :u",
                    u=user_id,
                )
                >= 1
            ),
            within=10,
            what="a failed attempt recorded",
        )
        for token in (pair.access, other.access):
            outcome, took = running_stack.wait_until(
                lambda token=token: running_stack.request(  # type: ignore[misc]
                    "GET", "/v1/account/sessions", token=token
                ),
                401,
                within=WITHIN,
            )
            assert outcome.status == 401
            assert took <= WITHIN
        assert running_stack.login(username).status == 401
        assert _refresh(running_stack, other.refresh).status_code == 401
    finally:
        running_stack.restart("profile")

    wait_until(
        lambda: _count(running_stack, auth_db, queued, u=user_id) == 0,
        within=30,
        what="the outbox drained to profile_svc",
    )
    profiles = "SELECT COUNT(*) FROM profiles WHERE user_id = :u"
    assert _count(running_stack, profile_db, profiles, u=user_id) == 0
    deleted_ids = "SELECT COUNT(*) FROM deleted_users WHERE user_id = :u"
    assert _count(running_stack, profile_db, deleted_ids, u=user_id) == 1
    # The audit keeps the user id and nothing of where they were.
    (event,) = _events(running_stack, user_id, "account_deleted")
    assert event.client_ip is None
    assert event.user_agent is None

    # A later user with the same name is someone else, with a profile of their own.
    running_stack.register(username)
    newcomer = _login(running_stack, username)
    profile = _call(running_stack, "GET", "/v1/profile", newcomer.access).json()
    assert profile["user_id"] != user_id
    assert profile["bio"] == ""


def test_a_deletion_needs_the_password(running_stack: RealStack) -> None:
    username = running_stack.register()
    pair = _login(running_stack, username)
    answer = _call(
        running_stack, "POST", "/v1/account:delete", pair.access, {"password": "wrong wrong wrong"}
    )
    assert answer.status_code == 401
    assert _profile_status(running_stack, pair.access) == 200
    _login(running_stack, username)


# --- bad input changes nothing ---------------------------------------------------------------

BAD_BODIES: list[tuple[str, str, object]] = [
    ("POST", "/v1/account/password", {}),
    ("POST", "/v1/account/password", {"current_password": PASSWORD}),
    ("POST", "/v1/account/password", {"new_password": NEW_PASSWORD}),
    ("POST", "/v1/account/password", {"current_password": 1, "new_password": NEW_PASSWORD}),
    ("POST", "/v1/account/password", {"current_password": PASSWORD, "new_password": ["x"]}),
    (
        "POST",
        "/v1/account/password",
        {"current_password": PASSWORD, "new_password": NEW_PASSWORD, "admin": True},
    ),
    ("POST", "/v1/account/password", [PASSWORD, NEW_PASSWORD]),
    ("POST", "/v1/account/password", {"current_password": "x" * 129, "new_password": NEW_PASSWORD}),
    ("POST", "/v1/account/sessions:revokeOthers", {"keep": "all"}),
    ("POST", "/v1/account/sessions:revokeOthers", "all"),
    ("POST", "/v1/account:delete", {}),
    ("POST", "/v1/account:delete", {"password": 12345678901234}),
    ("POST", "/v1/account:delete", {"password": None}),
    ("POST", "/v1/account:delete", {"password": PASSWORD, "force": True}),
    ("DELETE", "/v1/account/sessions/NOT-A-SESSION", None),
    ("DELETE", f"/v1/account/sessions/{'a' * 37}", None),
    ("GET", "/v1/account/sessions?page_size=1", None),
]


def test_bad_input_on_every_account_route_is_400_and_writes_nothing(
    running_stack: RealStack,
) -> None:
    username = running_stack.register()
    pair = _login(running_stack, username)
    auth_db = running_stack.auth_database_url
    counted = ("users", "refresh_tokens", "sessions", "audit_events", "revocations")

    def counts() -> dict[str, int]:
        return {
            table: _count(running_stack, auth_db, f"SELECT COUNT(*) FROM {table}")  # noqa: S608
            for table in counted
        }

    before = counts()
    for method, path, body in BAD_BODIES:
        answer = _call(running_stack, method, path, pair.access, body)
        assert answer.status_code == 400, (method, path, body, answer.text)
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert PASSWORD not in answer.text
    assert counts() == before
    assert _profile_status(running_stack, pair.access) == 200
    _login(running_stack, username)


def test_every_account_route_needs_an_access_token(running_stack: RealStack) -> None:
    for method, path, body in (
        (
            "POST",
            "/v1/account/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        ),
        ("GET", "/v1/account/sessions", None),
        ("DELETE", "/v1/account/sessions/00000000-0000-0000-0000-000000000000", None),
        ("POST", "/v1/account/sessions:revokeOthers", {}),
        ("POST", "/v1/account:delete", {"password": PASSWORD}),
    ):
        answer = running_stack.request(method, path, body=body)
        assert answer.status == 401, (method, path)
    # The refresh token is not an access token.
    pair = _login(running_stack, running_stack.register())
    assert _call(running_stack, "GET", "/v1/account/sessions", pair.refresh).status_code == 401
