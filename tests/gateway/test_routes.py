"""Routes come from the compiled descriptors' annotations, with no per-RPC code."""

from __future__ import annotations

from typing import Any

import pytest
from authgate.options.v1 import options_pb2
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor

from gateway.routes import FRONTED_SERVICES, Route, RouteError, build_routes, fronted_services
from tests.gateway.rest_contract import RPC_ROUTES
from tests.gateway.sample_proto import add_rpc, proto_file, sample_service, service_of


def _routes_by_rpc() -> dict[str, Route]:
    return {route.grpc_path: route for route in build_routes(fronted_services())}


def test_every_annotated_rpc_of_the_fronted_services_has_a_route() -> None:
    routes = _routes_by_rpc()
    annotated = {
        f"/{service.full_name}/{method.name}"
        for service in fronted_services()
        for method in service.methods
        if method.GetOptions().HasExtension(annotations_pb2.http)
    }
    assert annotated
    assert annotated == set(routes)


def test_routes_match_the_rest_contract() -> None:
    bound = {(r.http_method, r.template) for r in build_routes(fronted_services())}
    assert bound == RPC_ROUTES


def test_the_internal_profile_service_is_never_fronted() -> None:
    # The auth service's DeleteUserProfile has no HTTP binding and its service is not fronted.
    assert "authgate.profile.v1.ProfileAdminService" not in FRONTED_SERVICES
    paths = {route.grpc_path for route in build_routes(fronted_services())}
    assert not any("ProfileAdminService" in path for path in paths)


def test_every_account_route_needs_a_token_and_declares_a_rate_limit() -> None:
    account = [
        route
        for route in build_routes(fronted_services())
        if route.method.containing_service.name == "AccountService"
    ]
    assert len(account) == 5
    for route in account:
        assert not route.public, route.grpc_path
        assert route.rate_limit, route.grpc_path
        assert 429 in route.error_statuses, route.grpc_path


def test_public_flag_is_read_from_the_method_option() -> None:
    for route in build_routes(fronted_services()):
        extensions: Any = route.method.GetOptions().Extensions
        option = extensions[options_pb2.public]
        assert route.public is option
    routes = _routes_by_rpc()
    assert routes["/authgate.auth.v1.AuthService/Login"].public
    assert not routes["/authgate.profile.v1.ProfileService/GetProfile"].public


def test_success_status_comes_from_the_option_and_empty_replies_are_204() -> None:
    routes = _routes_by_rpc()
    assert routes["/authgate.auth.v1.AuthService/Register"].success_status == 201
    assert routes["/authgate.auth.v1.AuthService/Login"].success_status == 200
    assert routes["/authgate.auth.v1.AuthService/Logout"].success_status == 204


def test_services_are_routed_to_their_upstream() -> None:
    for route in build_routes(fronted_services()):
        assert route.upstream == FRONTED_SERVICES[route.method.containing_service.full_name]


def test_an_annotated_rpc_in_a_new_service_gets_a_route_without_gateway_code() -> None:
    routes = {r.endpoint: r for r in build_routes({sample_service(): "sample"})}
    names = {r.method.name for r in routes.values()}
    assert names == {"CreateEvery", "GetThing", "GetBook", "PutThing", "UpdateThing"}
    assert all(r.upstream == "sample" for r in routes.values())


def test_unannotated_rpcs_get_no_route() -> None:
    names = {r.method.name for r in build_routes({sample_service(): "sample"})}
    assert "NotExposed" not in names


def test_additional_bindings_become_routes_too() -> None:
    rules = {
        r.flask_rule
        for r in build_routes({sample_service(): "s"})
        if r.method.name == "CreateEvery"
    }
    assert rules == {"/v1/every", "/v1/every:create"}


def test_path_variables_become_flask_arguments_bound_to_field_paths() -> None:
    route = next(r for r in build_routes({sample_service(): "s"}) if r.method.name == "GetBook")
    assert route.flask_rule == "/v1/shelves/<v0>/books/<v1>"
    assert [v.field_path for v in route.path_variables] == [("shelf", "name"), ("book_id",)]


def _service_with_rule(name: str, rule: http_pb2.HttpRule) -> ServiceDescriptor:
    """A service `Bad` whose one RPC has the rule, added to the default pool."""
    file = proto_file(f"authgate/gatewaytest/bad/{name}.proto", f"authgate.gatewaytest.bad.{name}")
    message = file.message_type.add(name="Req")
    message.field.add(
        name="id",
        number=1,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    add_rpc(
        file.service.add(name="Bad"), "Call", f".{file.package}.Req", f".{file.package}.Req", rule
    )
    return service_of(file, f"{file.package}.Bad")


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("unknown_var", http_pb2.HttpRule(get="/v1/x/{nope}")),
        ("bad_body", http_pb2.HttpRule(post="/v1/x", body="nope")),
        ("complex_pattern", http_pb2.HttpRule(get="/v1/{id=shelves/*}")),
        (
            "custom_verb",
            http_pb2.HttpRule(custom=http_pb2.CustomHttpPattern(kind="HEAD", path="/x")),
        ),
        ("relative", http_pb2.HttpRule(get="v1/x")),
    ],
)
def test_annotations_the_gateway_cannot_serve_fail_at_start(
    name: str, rule: http_pb2.HttpRule
) -> None:
    service = _service_with_rule(name, rule)
    with pytest.raises(RouteError):
        build_routes({service: "x"})


def test_two_rpcs_binding_the_same_method_and_path_fail_at_start() -> None:
    services = {
        _service_with_rule("dup_a", http_pb2.HttpRule(get="/v1/same")): "a",
        _service_with_rule("dup_b", http_pb2.HttpRule(get="/v1/same")): "b",
    }
    with pytest.raises(RouteError, match="both bind"):
        build_routes(services)
