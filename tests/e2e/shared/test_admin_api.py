"""The admin API through the gateway in front of the real services, on SQLite and MariaDB.

The first admin is made with the bootstrap command while the stack runs. Roles are taken
from the verified token only: a user's token, a forged or tampered one, or a role sent in
a header gets 401/403 and changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import requests
import sqlalchemy
from authgate.auth.v1 import admin_pb2, admin_pb2_grpc

from auth_svc.roles import main as roles_main
from authgate_common.config import Env
from tests.e2e import forgery
from tests.e2e.shared.conftest import RunningStack
from tests.gateway.rest_contract import ADMIN_USER_FIELDS

PASSWORD = "correct horse battery staple"
EVENT_FIELDS = [
    "event_id",
    "type",
    "user_id",
    "actor_id",
    "client_ip",
    "user_agent",
    "request_id",
    "detail",
    "created_at",
]
AUDITED_TABLES = ("users", "refresh_tokens", "user_roles", "audit_events")


@dataclass
class People:
    stack: RunningStack
    admin_id: str
    admin_token: str
    user_id: str
    user_name: str
    user_token: str
    user_refresh: str

    def request(
        self, method: str, path: str, token: str | None, body: object = None, **headers: str
    ) -> requests.Response:
        sent = dict(headers)
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        return requests.request(
            method, f"{self.stack.url}{path}", json=body, headers=sent, timeout=10
        )

    def as_admin(self, method: str, path: str, body: object = None, **headers: str) -> Any:
        return self.request(method, path, self.admin_token, body, **headers)

    def counts(self) -> dict[str, int]:
        with self.stack.engine(self.stack.auth_database_url).connect() as connection:
            return {
                table: connection.execute(
                    sqlalchemy.text(f"SELECT COUNT(*) FROM {table}")  # noqa: S608
                ).scalar_one()
                for table in AUDITED_TABLES
            }


def register_and_login(stack: RunningStack, name: str) -> tuple[str, dict[str, Any]]:
    registered = stack.post("/v1/auth/register", {"username": name, "password": PASSWORD})
    assert registered.status_code == 201, registered.text
    pair = stack.post("/v1/auth/login", {"username": name, "password": PASSWORD})
    assert pair.status_code == 200, pair.text
    return registered.json()["user_id"], pair.json()


@pytest.fixture
def people(running_stack: RunningStack) -> People:
    suffix = uuid.uuid4().hex[:8]
    admin_name, user_name = f"root_{suffix}", f"user_{suffix}"
    admin_id, _ = register_and_login(running_stack, admin_name)
    env = Env({"AUTH_DATABASE_URL": running_stack.auth_database_url})
    assert roles_main(["grant", admin_name, "admin"], env) == 0  # while the stack runs
    admin_pair = running_stack.post(
        "/v1/auth/login", {"username": admin_name, "password": PASSWORD}
    ).json()
    user_id, user_pair = register_and_login(running_stack, user_name)
    return People(
        stack=running_stack,
        admin_id=admin_id,
        admin_token=admin_pair["access_token"],
        user_id=user_id,
        user_name=user_name,
        user_token=user_pair["access_token"],
        user_refresh=user_pair["refresh_token"],
    )


def admin_routes(user_id: str) -> list[tuple[str, str, object]]:
    return [
        ("GET", "/v1/admin/users", None),
        ("GET", f"/v1/admin/users/{user_id}", None),
        ("POST", f"/v1/admin/users/{user_id}:disable", {}),
        ("POST", f"/v1/admin/users/{user_id}:enable", {}),
        ("POST", f"/v1/admin/users/{user_id}:unlock", {}),
        ("PUT", f"/v1/admin/users/{user_id}/roles", {"roles": ["admin"]}),
        ("POST", f"/v1/admin/users/{user_id}:revokeSessions", {}),
        ("GET", "/v1/admin/audit-events", None),
    ]


def assert_insufficient_scope(response: requests.Response) -> None:
    assert response.status_code == 403, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert response.json()["status"] == 403


def test_an_ordinary_user_gets_403_on_every_admin_route_and_nothing_changes(
    people: People,
) -> None:
    before = people.counts()
    for method, path, body in admin_routes(people.user_id):
        assert_insufficient_scope(people.request(method, path, people.user_token, body))
    # Nor by aiming at the admin, or with a role smuggled in headers.
    for method, path, body in admin_routes(people.admin_id):
        response = people.request(
            method,
            path,
            people.user_token,
            body,
            **{"X-Roles": "admin", "Roles": "admin", "X-User-Id": people.admin_id},
        )
        assert_insufficient_scope(response)
    assert people.counts() == before
    shown = people.as_admin("GET", f"/v1/admin/users/{people.user_id}").json()
    assert (shown["roles"], shown["disabled"]) == ([], False)


def test_forged_and_tampered_admin_tokens_are_401(people: People) -> None:
    foreign = forgery.signed_by_foreign_key(
        forgery.tampered_payload(people.user_token, roles=["admin"])
    )
    tampered = forgery.tampered_payload(people.user_token, roles=["admin"])
    before = people.counts()
    for token in (foreign, tampered, forgery.alg_none(people.admin_token)):
        response = people.request("GET", "/v1/admin/users", token)
        assert response.status_code == 401, response.text
        assert response.headers["Content-Type"] == "application/problem+json"
    assert people.counts() == before


def test_no_token_is_401(people: People) -> None:
    for method, path, body in admin_routes(people.user_id):
        assert people.request(method, path, None, body).status_code == 401


def test_direct_grpc_with_a_users_token_is_permission_denied(people: People) -> None:
    with grpc.insecure_channel(people.stack.auth_target) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.DisableUser(
                admin_pb2.DisableUserRequest(user_id=people.admin_id),
                timeout=10,
                metadata=(("authorization", f"Bearer {people.user_token}"), ("x-roles", "admin")),
            )
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_the_admin_lists_and_gets_users_in_the_contract_shape(people: People) -> None:
    listed = people.as_admin("GET", "/v1/admin/users?page_size=200&username_prefix=USER_")
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert list(body) == ["users", "next_page_token"]
    assert all(set(user) == set(ADMIN_USER_FIELDS) for user in body["users"])
    assert people.user_id in {user["user_id"] for user in body["users"]}
    assert people.admin_id not in {user["user_id"] for user in body["users"]}

    one = people.as_admin("GET", f"/v1/admin/users/{people.user_id}")
    assert one.status_code == 200
    assert one.json()["username"] == people.user_name
    assert one.json()["mfa_enabled"] is False


def test_disable_enable_through_the_custom_verbs(people: People) -> None:
    disabled = people.as_admin("POST", f"/v1/admin/users/{people.user_id}:disable", {})
    assert disabled.status_code == 200, disabled.text
    assert list(disabled.json()) == list(ADMIN_USER_FIELDS)
    assert disabled.json()["disabled"] is True
    login = people.stack.post(
        "/v1/auth/login", {"username": people.user_name, "password": PASSWORD}
    )
    assert login.status_code == 401
    refresh = people.stack.post("/v1/auth/refresh", {"refresh_token": people.user_refresh})
    assert refresh.status_code == 401

    enabled = people.as_admin("POST", f"/v1/admin/users/{people.user_id}:enable", {})
    assert enabled.json()["disabled"] is False
    login = people.stack.post(
        "/v1/auth/login", {"username": people.user_name, "password": PASSWORD}
    )
    assert login.status_code == 200


def test_set_roles_unlock_and_revoke_sessions(people: People) -> None:
    roles = people.as_admin(
        "PUT", f"/v1/admin/users/{people.user_id}/roles", {"roles": ["support", "auditor"]}
    )
    assert roles.status_code == 200, roles.text
    assert roles.json()["roles"] == ["auditor", "support"]
    unlocked = people.as_admin("POST", f"/v1/admin/users/{people.user_id}:unlock", {})
    assert unlocked.status_code == 200
    assert unlocked.json()["locked_until"] == ""

    revoked = people.as_admin("POST", f"/v1/admin/users/{people.user_id}:revokeSessions", {})
    assert revoked.status_code == 204
    assert revoked.content == b""
    refresh = people.stack.post("/v1/auth/refresh", {"refresh_token": people.user_refresh})
    assert refresh.status_code == 401


def test_unknown_users_404_and_self_lockout_400(people: People) -> None:
    unknown = str(uuid.uuid4())
    for method, path, body in admin_routes(unknown):
        if "/users/" in path:
            response = people.as_admin(method, path, body)
            assert response.status_code == 404, (path, response.text)
            assert response.headers["Content-Type"] == "application/problem+json"
    assert (
        people.as_admin("POST", f"/v1/admin/users/{people.admin_id}:disable", {}).status_code == 400
    )
    drop = people.as_admin("PUT", f"/v1/admin/users/{people.admin_id}/roles", {"roles": []})
    assert drop.status_code == 400
    admin = people.as_admin("GET", f"/v1/admin/users/{people.admin_id}").json()
    assert (admin["roles"], admin["disabled"]) == (["admin"], False)


def test_bad_input_to_the_admin_api_is_400(people: People) -> None:
    for method, path, body in [
        ("GET", "/v1/admin/users?page_size=-1", None),
        ("GET", "/v1/admin/users?page_token=garbage", None),
        ("GET", "/v1/admin/users?nope=1", None),
        ("GET", "/v1/admin/audit-events?type=made_up", None),
        ("PUT", f"/v1/admin/users/{people.user_id}/roles", {"roles": ["Not Valid"]}),
        ("PUT", f"/v1/admin/users/{people.user_id}/roles", {}),
        ("PUT", f"/v1/admin/users/{people.user_id}/roles", {"roles": "admin"}),
        ("POST", f"/v1/admin/users/{people.user_id}:disable", {"why": "x"}),
    ]:
        response = people.as_admin(method, path, body)
        assert response.status_code == 400, (method, path, response.text)


def test_audit_events_show_the_client_as_the_gateway_saw_it(people: People) -> None:
    people.as_admin(
        "PUT",
        f"/v1/admin/users/{people.user_id}/roles",
        {"roles": ["support"]},
        **{
            "User-Agent": "admin-console/2.0",
            "X-Request-ID": "audit-req-1",
            # No trusted proxy is configured: a client's X-Forwarded-For is not believed.
            "X-Forwarded-For": "203.0.113.50",
            # Nor is a header named like the gateway's own metadata passed through.
            "X-Client-IP": "203.0.113.51",
            "X-Client-User-Agent": "forged",
        },
    )
    listed = people.as_admin(
        "GET", f"/v1/admin/audit-events?user_id={people.user_id}&type=roles_changed"
    )
    assert listed.status_code == 200, listed.text
    [event] = listed.json()["events"]
    assert set(event) == set(EVENT_FIELDS)
    assert event["actor_id"] == people.admin_id
    assert (event["client_ip"], event["user_agent"]) == ("127.0.0.1", "admin-console/2.0")
    assert event["request_id"] == "audit-req-1"
    assert event["detail"] == {"added": ["support"], "removed": []}

    own = people.as_admin("GET", f"/v1/admin/audit-events?user_id={people.user_id}").json()
    assert [e["type"] for e in own["events"]] == ["roles_changed", "login_succeeded", "register"]
