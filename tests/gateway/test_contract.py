"""The route model: roles, statuses and field rules read once, and every reader agrees."""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Any

import pytest
from authgate.options.v1 import options_pb2
from google.api import field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

from gateway.openapi import build_document
from gateway.proto_comments import ProtoComments
from gateway.rate_limits import route_limits
from gateway.routes import Route, RouteError, build_routes, fronted_services, route_table
from tests.gateway.sample_proto import add_rpc, proto_file, service_of

PACKAGE = "authgate.gatewaytest.roles.v1"
_F = descriptor_pb2.FieldDescriptorProto


@functools.cache
def roles_service() -> ServiceDescriptor:
    file = proto_file("authgate/gatewaytest/roles/v1/roles.proto", PACKAGE)
    request = file.message_type.add(name="ListThingsRequest")
    prefix = request.field.add(name="name_prefix", number=1, type=_F.TYPE_STRING)
    prefix.label = _F.LABEL_OPTIONAL
    extensions: Any = prefix.options.Extensions
    extensions[options_pb2.field_rules].CopyFrom(
        options_pb2.FieldRules(max_length=8, pattern="^[a-z]*$")
    )
    create = file.message_type.add(name="CreateThingRequest")
    name = create.field.add(name="name", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
    name.options.Extensions[field_behavior_pb2.field_behavior].append(field_behavior_pb2.REQUIRED)
    name_extensions: Any = name.options.Extensions
    name_extensions[options_pb2.field_rules].CopyFrom(
        options_pb2.FieldRules(min_length=2, max_length=10, text=options_pb2.TEXT_KIND_SINGLE_LINE)
    )
    service = file.service.add(name="ThingAdminService")
    add_rpc(
        service,
        "ListThings",
        f".{PACKAGE}.ListThingsRequest",
        f".{PACKAGE}.CreateThingRequest",
        http_pb2.HttpRule(get="/v1/things"),
        roles=["admin", "auditor"],
        rate_limit="5/minute",
    )
    add_rpc(
        service,
        "CreateThing",
        f".{PACKAGE}.CreateThingRequest",
        f".{PACKAGE}.CreateThingRequest",
        http_pb2.HttpRule(post="/v1/things", body="*"),
    )
    return service_of(file, f"{PACKAGE}.ThingAdminService")


def _routes() -> dict[str, Route]:
    return {route.method.name: route for route in build_routes({roles_service(): "things"})}


def test_required_roles_are_read_from_the_method_option() -> None:
    routes = _routes()
    assert routes["ListThings"].required_roles == ("admin", "auditor")
    assert routes["ListThings"].access == "roles: admin, auditor"
    assert routes["CreateThing"].required_roles == ()
    assert routes["CreateThing"].access == "authenticated"


def test_the_real_rpcs_require_admin_only_on_the_admin_api_and_say_who_may_call() -> None:
    for route in build_routes(fronted_services()):
        admin_api = route.method.containing_service.name == "AdminService"
        assert route.required_roles == (("admin",) if admin_api else ())
        expected = "roles: admin" if admin_api else "public" if route.public else "authenticated"
        assert route.access == expected


def test_error_statuses_follow_from_the_route() -> None:
    routes = _routes()
    # No body; a token is needed (401) and a role (403).
    assert routes["ListThings"].error_statuses == (400, 401, 403, 503, 504)
    # A body (413, 415); any authenticated caller.
    assert routes["CreateThing"].error_statuses == (400, 401, 413, 415, 503, 504)
    real = {route.method.name: route for route in build_routes(fronted_services())}
    # Public, with its own declared statuses.
    assert real["Register"].error_statuses == (400, 403, 409, 413, 415, 429, 503, 504)


def test_query_fields_are_the_scalar_fields_outside_body_and_path() -> None:
    routes = _routes()
    assert routes["ListThings"].query_fields == ("name_prefix",)
    assert routes["CreateThing"].query_fields == ()


def test_a_public_rpc_that_requires_roles_fails_at_start() -> None:
    package = "authgate.gatewaytest.roles.bad"
    file = proto_file("authgate/gatewaytest/roles/bad.proto", package)
    file.message_type.add(name="Req")
    add_rpc(
        file.service.add(name="Bad"),
        "Call",
        f".{package}.Req",
        f".{package}.Req",
        http_pb2.HttpRule(get="/v1/bad"),
        roles=["admin"],
        public=True,
    )
    service = service_of(file, f"{package}.Bad")
    with pytest.raises(RouteError, match="public RPC cannot require roles"):
        build_routes({service: "x"})


def test_the_openapi_operation_names_the_required_roles() -> None:
    document = build_document(list(_routes().values()), ProtoComments({}))
    listing = document["paths"]["/v1/things"]["get"]
    assert listing["x-required-roles"] == ["admin", "auditor"]
    assert "Requires one of the roles: `admin`, `auditor`." in listing["description"]
    assert "403" in listing["responses"]
    creating = document["paths"]["/v1/things"]["post"]
    assert "x-required-roles" not in creating
    assert "403" not in creating["responses"]


def test_the_openapi_document_publishes_the_declared_field_rules() -> None:
    document = build_document(list(_routes().values()), ProtoComments({}))
    (parameter,) = document["paths"]["/v1/things"]["get"]["parameters"]
    assert parameter["schema"] == {"type": "string", "maxLength": 8, "pattern": "^[a-z]*$"}
    body = document["components"]["schemas"][f"{PACKAGE}.CreateThingRequestInput"]
    name = body["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (2, 10)
    assert name["pattern"].startswith("^[^\\u0000-")
    # Responses promise no rules: they show what is stored.
    reply = document["components"]["schemas"][f"{PACKAGE}.CreateThingRequest"]
    assert reply["properties"]["name"] == {"type": "string"}


def test_the_real_document_publishes_the_rules_of_register_and_profile() -> None:
    document = build_document(build_routes(fronted_services()), ProtoComments({}))
    schemas = document["components"]["schemas"]
    register = schemas["authgate.auth.v1.RegisterRequest"]["properties"]
    assert register["username"] == {
        "type": "string",
        "minLength": 3,
        "maxLength": 64,
        "pattern": "^[A-Za-z0-9._-]+$",
    }
    assert (register["password"]["minLength"], register["password"]["maxLength"]) == (12, 128)
    update = schemas["authgate.profile.v1.UpdateProfileRequest"]["properties"]
    assert update["bio"]["maxLength"] == 1000
    assert update["display_name"]["maxLength"] == 100
    assert "pattern" in update["email"]


def test_the_rate_limiter_reads_the_limits_of_the_route_model() -> None:
    routes = _routes()
    table = route_limits(list(routes.values()))
    assert set(table) == {routes["ListThings"].endpoint}
    assert table[routes["ListThings"].endpoint].rpc == f"{PACKAGE}.ThingAdminService.ListThings"


def test_the_route_table_lists_method_path_rpc_access_and_rate_limit() -> None:
    lines = route_table(list(_routes().values())).splitlines()
    assert lines[0].split() == ["METHOD", "PATH", "RPC", "ACCESS", "RATE", "LIMIT"]
    assert lines[1].split() == [
        "GET",
        "/v1/things",
        f"{PACKAGE}.ThingAdminService.ListThings",
        "roles:",
        "admin,",
        "auditor",
        "5/minute",
    ]
    assert lines[2].split() == [
        "POST",
        "/v1/things",
        f"{PACKAGE}.ThingAdminService.CreateThing",
        "authenticated",
        "-",
    ]


def test_python_m_gateway_routes_prints_the_gateways_route_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway.routes"], capture_output=True, text=True, check=True
    )
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["METHOD", "PATH", "RPC", "ACCESS", "RATE", "LIMIT"]
    assert [
        "POST",
        "/v1/auth/login",
        "authgate.auth.v1.AuthService.Login",
        "public",
        "10/minute",
    ] in rows
    assert [
        "GET",
        "/v1/profile",
        "authgate.profile.v1.ProfileService.GetProfile",
        "authenticated",
        "-",
    ] in rows
    assert len(rows) == 1 + len(build_routes(fronted_services()))


def test_field_rules_that_cannot_be_enforced_fail_at_start() -> None:
    package = "authgate.gatewaytest.roles.badrules"
    file = proto_file("authgate/gatewaytest/roles/badrules.proto", package)
    inner = file.message_type.add(name="Inner")
    count = inner.field.add(name="count", number=1, type=_F.TYPE_INT32, label=_F.LABEL_OPTIONAL)
    extensions: Any = count.options.Extensions
    extensions[options_pb2.field_rules].CopyFrom(options_pb2.FieldRules(max_length=3))
    outer = file.message_type.add(name="Req")
    outer.field.add(
        name="inner",
        number=1,
        type=_F.TYPE_MESSAGE,
        type_name=f".{package}.Inner",
        label=_F.LABEL_OPTIONAL,
    )
    rule = http_pb2.HttpRule(post="/v1/bad-rules", body="*")
    add_rpc(file.service.add(name="Bad"), "Call", f".{package}.Req", f".{package}.Req", rule)
    service = service_of(file, f"{package}.Bad")
    with pytest.raises(RouteError, match="field_rules apply to string fields only"):
        build_routes({service: "x"})


def test_only_the_reads_the_protos_declare_safe_to_repeat_are_sent_again_by_the_gateway() -> None:
    # Upstreams.call sends these once more when a replica died mid-answer (UNAVAILABLE).
    safe = {route.method.name for route in build_routes(fronted_services()) if route.safe_to_repeat}
    assert {"GetProfile", "GetJwks", "GetOpenIdConfiguration", "ListUsers", "GetUser"} <= safe
    assert not safe & {"Login", "Register", "Refresh", "Logout", "UpdateProfile", "DisableUser"}
