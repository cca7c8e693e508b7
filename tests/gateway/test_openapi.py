"""The OpenAPI document is generated from the proto descriptors, and /docs shows it locally."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from flask.testing import FlaskClient
from google.api import field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import ServiceDescriptor
from openapi_spec_validator import validate

from authgate_common.tokens import TokenSettings
from gateway.openapi import build_document
from gateway.proto_comments import ProtoComments, load_proto_comments
from gateway.routes import Route, build_routes, fronted_services
from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.gateway.rest_contract import OPERATIONAL_ROUTES, RPC_ROUTES
from tests.gateway.sample_proto import add_rpc, proto_file, sample_service, service_of

# Nothing listens there: these tests never reach an upstream.
NOWHERE = "127.0.0.1:1"
SCHEMAS = "#/components/schemas/"


@pytest.fixture
def docs_client(
    gateway_client_factory: GatewayClientFactory, token_settings: TokenSettings
) -> FlaskClient:
    return gateway_client_factory(NOWHERE, NOWHERE, token_settings)


@pytest.fixture(scope="module")
def routes() -> list[Route]:
    return build_routes(fronted_services())


@pytest.fixture(scope="module")
def document(routes: list[Route]) -> dict[str, Any]:
    return build_document(routes, load_proto_comments())


def operation_of(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    operation: dict[str, Any] = document["paths"][path][method.lower()]
    return operation


def schema_named(document: dict[str, Any], ref: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in ref:
        return ref  # written inline, e.g. a body beside path variables
    schema: dict[str, Any] = document["components"]["schemas"][ref["$ref"].removeprefix(SCHEMAS)]
    return schema


def request_schema(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    body = operation_of(document, method, path)["requestBody"]
    return schema_named(document, body["content"]["application/json"]["schema"])


def response_schema(
    document: dict[str, Any], method: str, path: str, status: str
) -> dict[str, Any]:
    response = operation_of(document, method, path)["responses"][status]
    return schema_named(document, response["content"]["application/json"]["schema"])


# --- the document ------------------------------------------------------------------------------


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_has_an_operation_named_service_underscore_method(
    document: dict[str, Any], routes: list[Route]
) -> None:
    for route in routes:
        operation = operation_of(document, route.http_method, route.template)
        service = route.method.containing_service.name
        assert operation["operationId"] == f"{service}_{route.method.name}"
        assert operation["x-grpc-method"] == route.grpc_path


def test_the_contract_paths_are_all_documented(document: dict[str, Any]) -> None:
    documented = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    assert documented == RPC_ROUTES | OPERATIONAL_ROUTES


def test_required_request_fields_are_those_marked_required_in_the_proto(
    document: dict[str, Any],
) -> None:
    assert request_schema(document, "POST", "/v1/auth/register")["required"] == [
        "username",
        "password",
    ]
    assert request_schema(document, "POST", "/v1/auth/login")["required"] == [
        "username",
        "password",
    ]
    assert request_schema(document, "POST", "/v1/auth/refresh")["required"] == ["refresh_token"]
    assert request_schema(document, "POST", "/v1/auth/logout")["required"] == ["refresh_token"]
    assert "required" not in request_schema(document, "PATCH", "/v1/profile")


def test_required_strings_must_not_be_empty_as_the_gateway_checks(
    document: dict[str, Any],
) -> None:
    login = request_schema(document, "POST", "/v1/auth/login")["properties"]
    assert login["username"]["minLength"] == 1
    properties = request_schema(document, "POST", "/v1/auth/register")["properties"]
    # A declared minimum stands in for the gateway's "not empty" when it is higher.
    assert properties["username"]["minLength"] == 3
    assert "minLength" not in properties["email"]


def test_request_schemas_refuse_unknown_fields(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if "requestBody" in operation:
                assert request_schema(document, method, path)["additionalProperties"] is False


def test_public_operations_need_no_token_and_the_others_need_a_bearer_token(
    document: dict[str, Any], routes: list[Route]
) -> None:
    assert document["security"] == [{"bearerAuth": []}]
    scheme = document["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"], scheme["bearerFormat"]) == ("http", "bearer", "JWT")
    for route in routes:
        operation = operation_of(document, route.http_method, route.template)
        if route.public:
            assert operation["security"] == []
        else:
            assert operation["security"] == [{"bearerAuth": list(route.required_roles)}]
            assert "401" in operation["responses"]
    assert operation_of(document, "GET", "/healthz")["security"] == []
    assert operation_of(document, "GET", "/readyz")["security"] == []


def test_success_statuses_follow_the_proto_options(document: dict[str, Any]) -> None:
    assert "201" in operation_of(document, "POST", "/v1/auth/register")["responses"]
    assert "200" in operation_of(document, "POST", "/v1/auth/login")["responses"]
    logout = operation_of(document, "POST", "/v1/auth/logout")["responses"]["204"]
    assert "content" not in logout


def test_error_responses_are_problem_json_with_the_statuses_a_route_can_give(
    document: dict[str, Any],
) -> None:
    login = operation_of(document, "POST", "/v1/auth/login")["responses"]
    assert {"400", "401", "413", "415", "429", "503", "504", "default"} <= set(login)
    jwks = operation_of(document, "GET", "/.well-known/jwks.json")["responses"]
    assert {"401", "413", "415"}.isdisjoint(jwks)
    profile = operation_of(document, "GET", "/v1/profile")["responses"]
    assert "401" in profile
    for name, response in document["components"]["responses"].items():
        media = response["content"]["application/problem+json"]
        assert media["schema"] == {"$ref": f"{SCHEMAS}Problem"}, name
    unauthorized = document["components"]["responses"]["Unauthorized"]
    assert "WWW-Authenticate" in unauthorized["headers"]
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["properties"]) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "request_id",
    }


def test_output_only_fields_are_read_only_in_responses_and_not_accepted_in_requests(
    document: dict[str, Any],
) -> None:
    profile = response_schema(document, "GET", "/v1/profile", "200")["properties"]
    assert profile["user_id"]["readOnly"] is True
    assert profile["created_at"] == {
        "type": "string",
        "format": "date-time",
        "readOnly": True,
        "description": "When the profile was created (RFC 3339, UTC).",
    }
    assert "readOnly" not in profile["bio"]
    update = request_schema(document, "PATCH", "/v1/profile")["properties"]
    assert set(update) == {"display_name", "email", "bio"}


def test_responses_require_the_fields_the_gateway_always_writes(
    document: dict[str, Any],
) -> None:
    tokens = response_schema(document, "POST", "/v1/auth/login", "200")
    # The token fields are absent from the answer of a login waiting for its second factor.
    assert tokens["required"] == ["expires_in"]
    assert tokens["properties"]["expires_in"]["format"] == "int32"
    profile = response_schema(document, "GET", "/v1/profile", "200")
    assert "created_at" not in profile["required"]  # a message field: written only when set


def test_descriptions_are_the_proto_comments(document: dict[str, Any]) -> None:
    login = operation_of(document, "POST", "/v1/auth/login")
    assert login["summary"] == (
        "Exchanges a username and password for an access token and a refresh token."
    )
    username = request_schema(document, "POST", "/v1/auth/register")["properties"]["username"]
    assert username["description"] == (
        "3-64 letters, digits, '.', '_' or '-'; unique regardless of case."
    )
    tags = {tag["name"]: tag.get("description", "") for tag in document["tags"]}
    assert tags["AuthService"].startswith("Checks passwords, issues signed access tokens")


# --- an RPC added to a proto ------------------------------------------------------------------

ADDED_PACKAGE = "authgate.openapitest.v1"


@functools.cache
def added_file() -> descriptor_pb2.FileDescriptorProto:
    """A proto with comments, as protoc with --include_source_info would describe it."""
    file = proto_file("authgate/openapitest/v1/added.proto", ADDED_PACKAGE)
    request = file.message_type.add(name="EchoRequest")
    text = request.field.add(
        name="text", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    )
    text.json_name = "text"
    text.options.Extensions[field_behavior_pb2.field_behavior].append(field_behavior_pb2.REQUIRED)
    reply = file.message_type.add(name="EchoReply")
    reply.field.add(name="text", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    add_rpc(
        file.service.add(name="EchoService"),
        "Echo",
        f".{ADDED_PACKAGE}.EchoRequest",
        f".{ADDED_PACKAGE}.EchoReply",
        http_pb2.HttpRule(post="/v1/echo", body="*"),
        public=True,
        error_statuses=[429],
    )
    locations = file.source_code_info.location
    locations.add(
        path=[6, 0, 2, 0], leading_comments=" Answers with the text it is sent.\n More.\n"
    )
    locations.add(path=[4, 0, 2, 0], leading_comments=" Text to send back.\n")
    return file


@functools.cache
def added_service() -> ServiceDescriptor:
    return service_of(added_file(), f"{ADDED_PACKAGE}.EchoService")


def test_an_annotated_rpc_added_to_a_proto_is_documented_with_no_other_code() -> None:
    routes = build_routes({added_service(): "auth"})
    document = build_document(routes, ProtoComments.from_files([added_file()]))
    validate(document)
    echo = operation_of(document, "POST", "/v1/echo")
    assert echo["operationId"] == "EchoService_Echo"
    assert echo["summary"] == "Answers with the text it is sent."
    assert echo["description"] == "Answers with the text it is sent.\nMore."
    assert echo["security"] == []
    assert "429" in echo["responses"]
    body = request_schema(document, "POST", "/v1/echo")
    assert body["required"] == ["text"]
    assert body["properties"]["text"]["description"] == "Text to send back."


def test_every_field_kind_of_the_sample_proto_gets_the_schema_the_gateway_accepts() -> None:
    routes = build_routes({sample_service(): "auth"})
    document = build_document(routes, ProtoComments({}))
    validate(document)
    every = document["components"]["schemas"]["authgate.gatewaytest.v1.EveryInput"]
    properties = every["properties"]
    assert properties["i32"]["format"] == "int32"
    assert properties["i64"]["oneOf"][1] == {"type": "string", "pattern": "^-?[0-9]+$"}
    assert properties["u32"]["minimum"] == 0
    assert properties["flag"] == {"type": "boolean"}
    assert properties["color"]["enum"] == ["COLOR_UNSPECIFIED", "RED"]
    assert properties["tags"] == {"type": "array", "items": {"type": "string"}}
    assert properties["counts"]["additionalProperties"]["format"] == "int32"
    assert properties["inner"] == {"$ref": f"{SCHEMAS}authgate.gatewaytest.v1.InnerInput"}
    assert properties["when"]["format"] == "date-time"
    assert properties["data"]["contentEncoding"] == "base64"
    assert "id" not in properties  # OUTPUT_ONLY
    assert every["not"] == {"anyOf": [{"required": ["a", "b"]}]}  # one oneof member at most
    reply = document["components"]["schemas"]["authgate.gatewaytest.v1.Every"]
    assert reply["properties"]["i64"] == {"type": "string", "pattern": "^-?[0-9]+$"}
    assert reply["properties"]["id"]["readOnly"] is True


def test_path_and_query_parameters_come_from_the_template_and_the_request_fields() -> None:
    routes = build_routes({sample_service(): "auth"})
    document = build_document(routes, ProtoComments({}))
    get_thing = operation_of(document, "GET", "/v1/things/{thing_id}")
    parameters = {(p["in"], p["name"]): p for p in get_thing["parameters"]}
    assert set(parameters) == {("path", "thing_id"), ("query", "page_size"), ("query", "verbose")}
    assert parameters[("path", "thing_id")]["required"] is True
    assert parameters[("query", "verbose")]["schema"] == {"type": "boolean"}
    book = operation_of(document, "GET", "/v1/shelves/{shelf.name}/books/{book_id}")
    assert [p["name"] for p in book["parameters"]] == ["shelf.name", "book_id"]
    put = operation_of(document, "PUT", "/v1/things/{thing_id}")
    put_body = put["requestBody"]["content"]["application/json"]["schema"]
    assert put_body == {"$ref": f"{SCHEMAS}authgate.gatewaytest.v1.InnerInput"}
    create_ids = [
        operation_of(document, "POST", path)["operationId"]
        for path in ("/v1/every", "/v1/every:create")
    ]
    assert create_ids == ["SampleService_CreateEvery", "SampleService_CreateEvery_2"]


# --- served ---------------------------------------------------------------------------------


def test_openapi_json_is_served_without_a_token(docs_client: FlaskClient) -> None:
    response = docs_client.get("/openapi.json")
    assert response.status_code == 200
    assert response.content_type == "application/json"
    document = response.get_json()
    validate(document)
    assert "/v1/auth/login" in document["paths"]


def test_the_docs_page_is_html_that_loads_nothing_from_another_host(
    docs_client: FlaskClient,
) -> None:
    response = docs_client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert not re.search(r"(?i)(https?:)?//", page)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert 'data-openapi-url="/openapi.json"' in page


def test_every_asset_of_the_docs_page_is_served_by_the_gateway(docs_client: FlaskClient) -> None:
    page = docs_client.get("/docs").get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(assets) >= 3
    for asset in assets:
        response = docs_client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.data) > 0, asset
    script = docs_client.get("/docs/init.js").get_data(as_text=True)
    assert "validatorUrl: null" in script  # Swagger UI must not call its online validator


def test_an_unknown_docs_asset_is_a_404_problem(docs_client: FlaskClient) -> None:
    for path in ("/docs/missing.js", "/docs/../gateway/app.py"):
        response = docs_client.get(path)
        assert response.status_code == 404
        assert response.content_type == "application/problem+json"


def test_operations_show_the_roles_they_require(
    document: dict[str, Any], routes: list[Route]
) -> None:
    admin_routes = [route for route in routes if route.template.startswith("/v1/admin/")]
    assert admin_routes
    for route in admin_routes:
        operation = operation_of(document, route.http_method, route.template)
        assert operation["x-required-roles"] == ["admin"]
        assert operation["security"] == [{"bearerAuth": ["admin"]}]
        assert "403" in operation["responses"]
    profile = operation_of(document, "GET", "/v1/profile")
    assert "x-required-roles" not in profile
    assert "403" not in profile["responses"]
