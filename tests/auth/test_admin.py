"""AdminService over real gRPC on SQLite and MariaDB: who may call it, what it changes, and the
audit events it leaves. Roles come from the verified access token and nowhere else."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import jwt
import pytest
from authgate.auth.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc
from google.protobuf import json_format

from auth_svc.audit import COMMAND_LINE
from auth_svc.revocations import RevocationKind, RevocationLog, RevocationRecord
from auth_svc.server import AuthServer, build_administration
from authgate_common.db import make_engine, make_sessions
from authgate_common.revocation import RevocationSet
from authgate_common.tokens import Identity, TokenSettings
from tests.auth.conftest import PASSWORD
from tests.gateway.rest_contract import ADMIN_USER_FIELDS
from tests.harness import wait_until
from tests.token_factory import TokenFactory

TIMEOUT = 10
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"]


@dataclass
class Admin:
    """A running auth server, its stubs, and two users: alice (admin) and bob (not)."""

    server: AuthServer
    auth: Any
    admin: Any
    alice_id: str
    bob_id: str
    alice_token: str
    bob_token: str

    def as_alice(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.alice_token}"),)

    def as_bob(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.bob_token}"),)

    def call(self, rpc: str, request: Any, metadata: Any = None) -> Any:
        return getattr(self.admin, rpc)(
            request, timeout=TIMEOUT, metadata=metadata or self.as_alice()
        )

    def error(self, rpc: str, request: Any, metadata: Any = None) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as raised:
            self.call(rpc, request, metadata)
        return raised.value

    def events(self, **filters: Any) -> list[dict[str, Any]]:
        reply = self.call("ListAuditEvents", admin_pb2.ListAuditEventsRequest(**filters))
        return [
            json_format.MessageToDict(event, preserving_proto_field_name=True)
            for event in reply.events
        ]


def grant(database_url: str, username: str, role: str) -> None:
    engine = make_engine(database_url)
    try:
        build_administration(engine, TokenSettings()).grant_role(username, role, COMMAND_LINE)
    finally:
        engine.dispose()


def login(auth: Any, username: str, password: str = PASSWORD) -> Any:
    return auth.Login(auth_pb2.LoginRequest(username=username, password=password), timeout=TIMEOUT)


@pytest.fixture
def admin(auth_server: AuthServer, auth_config: Any) -> Iterator[Admin]:
    with grpc.insecure_channel(auth_server.target) as channel:
        auth = auth_pb2_grpc.AuthServiceStub(channel)
        ids = {}
        for name in ("alice", "bob"):
            ids[name] = auth.Register(
                auth_pb2.RegisterRequest(username=name, password=PASSWORD), timeout=TIMEOUT
            ).user_id
        grant(auth_config.database_url, "alice", "admin")
        yield Admin(
            server=auth_server,
            auth=auth,
            admin=admin_pb2_grpc.AdminServiceStub(channel),
            alice_id=ids["alice"],
            bob_id=ids["bob"],
            alice_token=login(auth, "alice").access_token,
            bob_token=login(auth, "bob").access_token,
        )


def every_admin_request(user_id: str) -> list[tuple[str, Any]]:
    return [
        ("ListUsers", admin_pb2.ListUsersRequest()),
        ("GetUser", admin_pb2.GetUserRequest(user_id=user_id)),
        ("DisableUser", admin_pb2.DisableUserRequest(user_id=user_id)),
        ("EnableUser", admin_pb2.EnableUserRequest(user_id=user_id)),
        ("UnlockUser", admin_pb2.UnlockUserRequest(user_id=user_id)),
        ("SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=user_id, roles=["admin"])),
        ("RevokeUserSessions", admin_pb2.RevokeUserSessionsRequest(user_id=user_id)),
        ("ListAuditEvents", admin_pb2.ListAuditEventsRequest()),
    ]


def test_the_list_covers_every_admin_rpc() -> None:
    assert {rpc for rpc, _ in every_admin_request("x")} == {m.name for m in ADMIN_SERVICE.methods}


# --- who may call ----------------------------------------------------------------------------


def test_a_users_token_gets_permission_denied_on_every_rpc_and_changes_nothing(
    admin: Admin,
) -> None:
    before = admin.events()
    for rpc, request in every_admin_request(admin.bob_id):
        error = admin.error(rpc, request, admin.as_bob())
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED, rpc
    assert admin.events() == before
    bob = admin.call("GetUser", admin_pb2.GetUserRequest(user_id=admin.bob_id))
    assert (list(bob.roles), bob.disabled) == ([], False)


def test_no_token_is_unauthenticated(admin: Admin) -> None:
    for rpc, request in every_admin_request(admin.bob_id):
        error = admin.error(rpc, request, metadata=(("x-request-id", "r1"),))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED, rpc


def test_roles_smuggled_in_metadata_are_ignored(admin: Admin) -> None:
    smuggled = (
        *admin.as_bob(),
        ("x-roles", "admin"),
        ("roles", "admin"),
        ("x-user-roles", "admin"),
    )
    error = admin.error("ListUsers", admin_pb2.ListUsersRequest(), smuggled)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    # Claiming to be the admin in identity metadata does not make bob one either.
    claimed = (*admin.as_bob(), ("x-user-id", admin.alice_id), ("x-username", "alice"))
    error = admin.error("ListUsers", admin_pb2.ListUsersRequest(), claimed)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_token_with_admin_signed_by_a_foreign_key_is_unauthenticated(
    admin: Admin, token_settings: Any
) -> None:
    forged = TokenFactory(token_settings).mint(admin.bob_id, "bob", roles=["admin"])
    error = admin.error(
        "ListUsers", admin_pb2.ListUsersRequest(), (("authorization", f"Bearer {forged}"),)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_substring_or_prefix_of_admin_is_not_admin(admin: Admin, auth_config: Any) -> None:
    for role in ("admins", "admin:read", "sysadmin", "adm"):
        grant(auth_config.database_url, "bob", role)
    token = login(admin.auth, "bob").access_token
    error = admin.error(
        "ListUsers", admin_pb2.ListUsersRequest(), (("authorization", f"Bearer {token}"),)
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_refresh_carries_the_current_roles(admin: Admin) -> None:
    pair = login(admin.auth, "bob")
    admin.call("SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=["admin"]))
    refreshed = admin.auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT
    )
    as_new_admin = (("authorization", f"Bearer {refreshed.access_token}"),)
    assert admin.call("ListUsers", admin_pb2.ListUsersRequest(), as_new_admin).users


# --- what it does ----------------------------------------------------------------------------


def test_get_user_shows_the_contract_fields(admin: Admin) -> None:
    user = admin.call("GetUser", admin_pb2.GetUserRequest(user_id=admin.alice_id))
    shown = json_format.MessageToDict(
        user, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    assert set(shown) == set(ADMIN_USER_FIELDS)
    assert (shown["username"], shown["roles"], shown["disabled"]) == ("alice", ["admin"], False)
    assert shown["locked_until"] == ""


def test_unknown_user_ids_are_not_found(admin: Admin) -> None:
    for rpc, request in every_admin_request("00000000-0000-4000-8000-000000000000"):
        if rpc in {"ListUsers", "ListAuditEvents"}:
            continue
        assert admin.error(rpc, request).code() == grpc.StatusCode.NOT_FOUND, rpc
    too_long = admin.error("GetUser", admin_pb2.GetUserRequest(user_id="x" * 500))
    assert too_long.code() == grpc.StatusCode.NOT_FOUND


def test_an_admin_cannot_disable_themself_nor_drop_their_own_admin_role(admin: Admin) -> None:
    disable = admin.error("DisableUser", admin_pb2.DisableUserRequest(user_id=admin.alice_id))
    drop = admin.error(
        "SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.alice_id, roles=["support"])
    )
    assert disable.code() == drop.code() == grpc.StatusCode.INVALID_ARGUMENT
    alice = admin.call("GetUser", admin_pb2.GetUserRequest(user_id=admin.alice_id))
    assert (list(alice.roles), alice.disabled) == (["admin"], False)
    # Keeping admin while adding another role is fine.
    kept = admin.call(
        "SetUserRoles",
        admin_pb2.SetUserRolesRequest(user_id=admin.alice_id, roles=["support", "admin"]),
    )
    assert list(kept.roles) == ["admin", "support"]


def test_bad_role_names_and_too_many_roles_are_invalid(admin: Admin) -> None:
    for roles in (["Admin"], ["1x"], [""], ["a" * 65], ["ad min"], [f"r{i}" for i in range(33)]):
        error = admin.error(
            "SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=roles)
        )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, roles
    at_most = [f"r{i}" for i in range(32)]
    user = admin.call(
        "SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=at_most)
    )
    assert sorted(user.roles) == sorted(at_most)


def test_disable_revokes_sessions_and_refuses_login_like_a_wrong_password(admin: Admin) -> None:
    pair = login(admin.auth, "bob")

    user = admin.call("DisableUser", admin_pb2.DisableUserRequest(user_id=admin.bob_id))

    assert user.disabled
    with pytest.raises(grpc.RpcError) as refused_login:
        login(admin.auth, "bob")
    with pytest.raises(grpc.RpcError) as wrong_password:
        login(admin.auth, "bob", PASSWORD + "x")
    assert refused_login.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert refused_login.value.details() == wrong_password.value.details()
    with pytest.raises(grpc.RpcError) as refused_refresh:
        admin.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=10)
    assert refused_refresh.value.code() == grpc.StatusCode.UNAUTHENTICATED
    [event] = admin.events(type="user_disabled")
    assert (event["user_id"], event["actor_id"]) == (admin.bob_id, admin.alice_id)
    assert event["detail"]["sessions_revoked"] >= 2  # the fixture's login and this one

    admin.call("EnableUser", admin_pb2.EnableUserRequest(user_id=admin.bob_id))
    assert login(admin.auth, "bob").access_token
    with pytest.raises(grpc.RpcError):  # the old session stays revoked
        admin.auth.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=10)


def test_unlock_clears_a_lockout(admin: Admin) -> None:
    for _ in range(5):  # the default threshold
        with pytest.raises(grpc.RpcError):
            login(admin.auth, "bob", PASSWORD + "x")
    locked = admin.call("GetUser", admin_pb2.GetUserRequest(user_id=admin.bob_id))
    assert locked.locked_until.endswith("Z")
    with pytest.raises(grpc.RpcError):
        login(admin.auth, "bob")

    unlocked = admin.call("UnlockUser", admin_pb2.UnlockUserRequest(user_id=admin.bob_id))

    assert unlocked.locked_until == ""
    assert login(admin.auth, "bob").access_token
    [event] = admin.events(type="user_unlocked")
    assert event["detail"] == {"failed_logins": 5.0, "was_locked": True}


def test_revoke_sessions_refuses_every_refresh_token_of_the_user(admin: Admin) -> None:
    pairs = [login(admin.auth, "bob") for _ in range(2)]

    reply = admin.call(
        "RevokeUserSessions", admin_pb2.RevokeUserSessionsRequest(user_id=admin.bob_id)
    )

    assert reply == reply.__class__()
    for pair in pairs:
        with pytest.raises(grpc.RpcError) as refused:
            admin.auth.Refresh(
                auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    [event] = admin.events(type="sessions_revoked")
    assert event["user_id"] == admin.bob_id


def test_removing_a_role_makes_earlier_tokens_permission_denied_not_unauthenticated(
    admin: Admin, auth_config: Any
) -> None:
    grant(auth_config.database_url, "bob", "admin")
    pair = login(admin.auth, "bob")
    as_bob = (("authorization", f"Bearer {pair.access_token}"),)
    assert admin.call("ListUsers", admin_pb2.ListUsersRequest(), as_bob).users

    admin.call("SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=["ops"]))

    def code() -> grpc.StatusCode:
        try:
            admin.call("ListUsers", admin_pb2.ListUsersRequest(), as_bob)
        except grpc.RpcError as exc:
            status: grpc.StatusCode = exc.code()
            return status
        return grpc.StatusCode.OK

    # The server's own verifier hears of it through its feed (read every 200 ms).
    wait_until(lambda: code() != grpc.StatusCode.OK, within=2.0, what="the admin role gone")
    assert code() == grpc.StatusCode.PERMISSION_DENIED
    # The session lives on: a refresh gives the roles as they are now, not narrowed further.
    refreshed = admin.auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=pair.refresh_token), timeout=TIMEOUT
    )
    assert jwt.decode(refreshed.access_token, options={"verify_signature": False})["roles"] == [
        "ops"
    ]
    # Given back, the refreshed token has it again at once (no revocation for an addition).
    admin.call(
        "SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=["ops", "admin"])
    )
    again = admin.auth.Refresh(
        auth_pb2.RefreshRequest(refresh_token=refreshed.refresh_token), timeout=TIMEOUT
    )
    as_again = (("authorization", f"Bearer {again.access_token}"),)
    assert admin.call("ListUsers", admin_pb2.ListUsersRequest(), as_again).users


def test_an_added_role_writes_no_revocation(admin: Admin, auth_config: Any) -> None:
    before = _revocations(auth_config.database_url)
    admin.call(
        "SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=["ops", "qa"])
    )
    assert _revocations(auth_config.database_url) == before

    admin.call("SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=["qa"]))

    [row] = _revocations(auth_config.database_url)[len(before) :]
    assert (row.kind, row.subject, row.roles) == (
        RevocationKind.ROLES,
        admin.bob_id,
        frozenset({"qa"}),
    )
    [event] = [e for e in admin.events(type="roles_changed") if e["detail"]["removed"]]
    assert event["detail"]["removed"] == ["ops"]


def _revocations(database_url: str) -> list[RevocationRecord]:
    engine = make_engine(database_url)
    try:
        log = RevocationLog(make_sessions(engine), token_lifetime=timedelta(hours=1))
        return log.live_after(0, datetime.now(UTC), limit=1000)
    finally:
        engine.dispose()


def test_the_username_prefix_filter_is_case_insensitive_and_literal(admin: Admin) -> None:
    for name in ("carol_x", "carolyn", "caro1"):
        admin.auth.Register(
            auth_pb2.RegisterRequest(username=name, password=PASSWORD), timeout=TIMEOUT
        )
    found = admin.call("ListUsers", admin_pb2.ListUsersRequest(username_prefix="CAROL"))
    assert sorted(user.username for user in found.users) == ["carol_x", "carolyn"]
    # '_' is a character of usernames, not a LIKE wildcard.
    found = admin.call("ListUsers", admin_pb2.ListUsersRequest(username_prefix="carol_"))
    assert [user.username for user in found.users] == ["carol_x"]


def test_bad_page_tokens_and_sizes_are_invalid(admin: Admin) -> None:
    first = admin.call("ListUsers", admin_pb2.ListUsersRequest(page_size=1))
    assert first.next_page_token
    for request in (
        admin_pb2.ListUsersRequest(page_token="not a token"),
        admin_pb2.ListUsersRequest(page_size=-1),
        # A token of one filter is not valid for another.
        admin_pb2.ListUsersRequest(page_token=first.next_page_token, username_prefix="b"),
    ):
        assert admin.error("ListUsers", request).code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_type = admin.error("ListAuditEvents", admin_pb2.ListAuditEventsRequest(type="nope"))
    assert bad_type.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_paging_through_users_while_others_register_neither_skips_nor_repeats(
    admin: Admin,
) -> None:
    existing = {f"early{i:02d}" for i in range(25)}
    for name in sorted(existing):
        admin.auth.Register(
            auth_pb2.RegisterRequest(username=name, password=PASSWORD), timeout=TIMEOUT
        )
    stop = threading.Event()
    registered: list[str] = []

    def keep_registering() -> None:
        while not stop.is_set():
            name = f"late{len(registered):03d}"
            admin.auth.Register(
                auth_pb2.RegisterRequest(username=name, password=PASSWORD), timeout=TIMEOUT
            )
            registered.append(name)

    seen: list[str] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        background = pool.submit(keep_registering)
        token = ""
        while True:
            page = admin.call(
                "ListUsers", admin_pb2.ListUsersRequest(page_size=4, page_token=token)
            )
            seen += [user.username for user in page.users]
            token = page.next_page_token
            if not token:
                break
        stop.set()
        background.result()

    assert len(seen) == len(set(seen))  # nothing repeated
    assert existing | {"alice", "bob"} <= set(seen)  # nothing that existed skipped
    assert registered  # the pages really were read while users registered


def test_parallel_role_changes_leave_one_of_the_requested_sets(
    admin: Admin, auth_config: Any
) -> None:
    sets = [[f"team{i}", f"level{i % 3}"] for i in range(16)]
    start = threading.Barrier(len(sets))

    def change(roles: list[str]) -> None:
        start.wait()
        admin.call("SetUserRoles", admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=roles))

    with ThreadPoolExecutor(max_workers=len(sets)) as pool:
        list(pool.map(change, sets))

    final = sorted(admin.call("GetUser", admin_pb2.GetUserRequest(user_id=admin.bob_id)).roles)
    assert final in [sorted(roles) for roles in sets]
    # Each change's event recorded the set it replaced: replayed in order they reach the end.
    replayed: set[str] = set()
    for event in reversed(admin.events(user_id=admin.bob_id, type="roles_changed")):
        assert set(event["detail"]["removed"]) <= replayed
        replayed = (replayed - set(event["detail"]["removed"])) | set(event["detail"]["added"])
    assert sorted(replayed) == final
    # The feed's latest role removal of bob names the final set, so a verifier narrows
    # bob's earlier tokens to exactly it, whichever change committed last.
    removals = [
        row
        for row in _revocations(auth_config.database_url)
        if row.kind == RevocationKind.ROLES and row.subject == admin.bob_id
    ]
    assert sorted(max(removals, key=lambda row: row.id).roles) == final
    narrowing = RevocationSet()
    for row in removals:  # in any order, as a snapshot after a reconnect could replay them
        row.apply_to(narrowing)
    narrowing.heard(0)
    earlier = Identity(
        user_id=admin.bob_id,
        username="bob",
        email="",
        display_name="",
        token_id="t",
        expires_at=0,
        roles=frozenset(role for roles in sets for role in roles),
    )
    assert sorted(narrowing.check(earlier)) == final


# --- the audit log ---------------------------------------------------------------------------


def test_admin_changes_are_audited_with_actor_request_and_client(admin: Admin) -> None:
    metadata = (
        *admin.as_alice(),
        ("x-request-id", "req-42"),
        ("x-client-ip", "203.0.113.9"),
        ("x-client-user-agent", "curl/8 " + "x" * 400),
    )
    admin.call(
        "SetUserRoles",
        admin_pb2.SetUserRolesRequest(user_id=admin.bob_id, roles=["support"]),
        metadata,
    )
    [event] = admin.events(type="roles_changed", user_id=admin.bob_id)
    assert event["actor_id"] == admin.alice_id
    assert (event["request_id"], event["client_ip"]) == ("req-42", "203.0.113.9")
    assert len(event["user_agent"]) == 256
    assert event["detail"] == {"added": ["support"], "removed": []}


def test_events_page_newest_first_and_filter_by_user(admin: Admin) -> None:
    every = admin.events(page_size=200)
    assert [int(e["event_id"]) for e in every] == sorted(
        (int(e["event_id"]) for e in every), reverse=True
    )
    paged: list[dict[str, Any]] = []
    token = ""
    while True:
        reply = admin.call(
            "ListAuditEvents", admin_pb2.ListAuditEventsRequest(page_size=2, page_token=token)
        )
        paged += [
            json_format.MessageToDict(e, preserving_proto_field_name=True) for e in reply.events
        ]
        token = reply.next_page_token
        if not token:
            break
    assert [e["event_id"] for e in paged] == [e["event_id"] for e in every]
    bobs = admin.events(user_id=admin.bob_id)
    assert {e["type"] for e in bobs} == {"register", "login_succeeded"}
