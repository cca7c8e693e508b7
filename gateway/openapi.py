"""The OpenAPI 3.1 document of the gateway, built from the same routes and descriptors it serves.

Nothing here knows a particular RPC: paths, parameters and schemas come from the
route model (gateway.routes) and the message descriptors (gateway.contract), descriptions
from the proto comments, `required` from `google.api.field_behavior`, security from the
`public` and `required_roles` options, error statuses from the route model, and
minLength, maxLength and pattern from the declared field rules.
The schemas describe what the gateway enforces: request objects refuse unknown fields
(`additionalProperties: false`) and never contain OUTPUT_ONLY fields, which responses
mark `readOnly`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from gateway.contract import (
    FLOAT_TYPES,
    INT32_TYPES,
    INT64_TYPES,
    INTEGER_RANGES,
    field_contract,
    message_type,
)
from gateway.errors import PROBLEM_CONTENT_TYPE, title_of
from gateway.proto_comments import ProtoComments
from gateway.routes import Route

OPENAPI_VERSION = "3.1.0"
JSON_CONTENT_TYPE = "application/json"
BEARER_SCHEME = "bearerAuth"
PROBLEM_SCHEMA = "Problem"
REQUEST_ID_HEADER = "X-Request-ID"
OPERATIONS_TAG = "Operations"

Direction = Literal["request", "response"]
Schema = dict[str, Any]

# What each error status means at this gateway, whichever RPC answers it.
_ERROR_MEANINGS: Mapping[int, str] = {
    400: "The request does not fit the contract: a missing, unknown or mistyped field, "
    "a bad query parameter, or a value the service refuses.",
    401: "No valid access token, or credentials the service does not accept.",
    403: "The caller may not do this.",
    404: "Nothing matches.",
    409: "The request conflicts with the current state, e.g. a name already taken.",
    413: "The request body is larger than the configured limit.",
    415: "The request body is not sent as `Content-Type: application/json`.",
    429: "Too many requests; try again later (see `Retry-After` when present).",
    503: "An upstream service, or the key set that checks access tokens, is unavailable; "
    "try again later.",
    504: "An upstream service did not answer in time; try again later.",
}
_DEFAULT_ERROR_MEANING = (
    "Any other error: the upstream's gRPC status mapped to HTTP by the google.rpc.Code table."
)
_DECIMAL_TEXT = "^-?[0-9]+$"
_NON_FINITE = ("NaN", "Infinity", "-Infinity")
# proto3 JSON of the well-known types, the same both ways.
_WELL_KNOWN: Mapping[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1},
    "google.protobuf.Int64Value": {"type": ["string", "integer"], "format": "int64"},
    "google.protobuf.UInt64Value": {"type": ["string", "integer"]},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
}


def build_document(
    routes: Sequence[Route],
    comments: ProtoComments,
    *,
    title: str = "authgate API",
    version: str = "1",
    description: str = "",
) -> dict[str, Any]:
    """The OpenAPI document of routes (the gateway's generic RPC routes) plus /healthz, /readyz."""
    schemas = _Schemas(comments, routes)
    paths: dict[str, dict[str, Any]] = {}
    operation_ids: dict[str, int] = {}
    tags: dict[str, str] = {}
    for route in routes:
        service = route.method.containing_service
        tags.setdefault(service.name, comments.of(service.full_name))
        base_id = f"{service.name}_{route.method.name}"
        operation_ids[base_id] = operation_ids.get(base_id, 0) + 1
        operation_id = (
            base_id if operation_ids[base_id] == 1 else f"{base_id}_{operation_ids[base_id]}"
        )
        path = paths.setdefault(route.openapi_path, {})
        path[route.http_method.lower()] = _operation(route, operation_id, schemas, comments)
    paths.update(_operational_paths())
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "tags": [
            *(
                {"name": name, "description": text} if text else {"name": name}
                for name, text in tags.items()
            ),
            {"name": OPERATIONS_TAG, "description": "Health of the gateway and its upstreams."},
        ],
        # Default deny, as the gateway: operations of public RPCs say `security: []`.
        "security": [{BEARER_SCHEME: []}],
        "paths": paths,
        "components": {
            "schemas": {PROBLEM_SCHEMA: _problem_schema(), **schemas.components},
            "responses": _error_responses(routes),
            "headers": _headers(),
            "securitySchemes": {
                BEARER_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from the login or refresh operation, "
                    "sent as `Authorization: Bearer <token>`.",
                }
            },
        },
    }
    if description:
        document["info"]["description"] = description
    return document


# --- operations ---------------------------------------------------------------------------


def _operation(
    route: Route, operation_id: str, schemas: _Schemas, comments: ProtoComments
) -> dict[str, Any]:
    method = route.method
    text = comments.of(method.full_name)
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "tags": [method.containing_service.name],
        "summary": _summary(text) or method.name,
    }
    if route.required_roles:
        roles = ", ".join(f"`{role}`" for role in route.required_roles)
        text = (text + "\n\n" if text else "") + f"Requires one of the roles: {roles}."
    if text and text != operation["summary"]:
        operation["description"] = text
    # OpenAPI 3.1: for a non-OAuth scheme the array lists the roles required (any one).
    operation["security"] = [] if route.public else [{BEARER_SCHEME: list(route.required_roles)}]
    if route.required_roles:
        operation["x-required-roles"] = list(route.required_roles)
    parameters = _parameters(route, schemas)
    if parameters:
        operation["parameters"] = parameters
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON_CONTENT_TYPE: {"schema": schemas.body(route)}},
        }
    operation["responses"] = {
        str(route.success_status): _success_response(route, schemas),
        **{str(status): _error_ref(status) for status in route.error_statuses},
        "default": _error_ref(None),
    }
    operation["x-grpc-method"] = route.grpc_path
    return operation


def _summary(text: str) -> str:
    """The first sentence of a comment."""
    paragraph = " ".join(text.split("\n\n", 1)[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return match.group(1) if match else paragraph


def _parameters(route: Route, schemas: _Schemas) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for variable in route.path_variables:
        field = variable.field
        schema = _text_schema(field)
        if field.type == FieldDescriptor.TYPE_STRING:
            # One path segment, unless the template says `**`.
            if not variable.multi_segment and "pattern" not in schema:
                schema["pattern"] = "^[^/]+$"
            schema["minLength"] = max(1, schema.get("minLength", 0))
        parameters.append(
            {
                "name": variable.name,
                "in": "path",
                "required": True,
                "schema": schema,
                **_described(schemas.comments.of(field.full_name)),
            }
        )
    fields = route.method.input_type.fields_by_name
    for name in route.query_fields:
        field = fields[name]
        schema = _text_schema(field)
        required = field_contract(field).required
        if required and field.type == FieldDescriptor.TYPE_STRING:
            schema["minLength"] = max(1, schema.get("minLength", 0))
        parameters.append(
            {
                "name": field.name,
                "in": "query",
                "required": required,
                "schema": schema,
                **_described(schemas.comments.of(field.full_name)),
            }
        )
    return parameters


def _text_schema(field: FieldDescriptor) -> Schema:
    """A scalar sent as URL text (path segment or query value)."""
    if field.type in INTEGER_RANGES:
        low, high = INTEGER_RANGES[field.type]
        schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
        if field.type in INT32_TYPES:
            schema["format"] = "int32"
        return schema
    return _scalar_schema(field, "request")


def _success_response(route: Route, schemas: _Schemas) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": title_of(route.success_status),
        "headers": {REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}},
    }
    if route.success_status != 204:
        response["content"] = {
            JSON_CONTENT_TYPE: {"schema": schemas.ref(route.method.output_type, "response")}
        }
    return response


def _error_ref(status: int | None) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{_error_response_name(status)}"}


def _error_response_name(status: int | None) -> str:
    if status is None:
        return "Error"
    return "".join(part for part in re.split(r"[^A-Za-z0-9]", title_of(status)) if part)


def _error_responses(routes: Iterable[Route]) -> dict[str, Any]:
    statuses = {status for route in routes for status in route.error_statuses}
    responses = {
        _error_response_name(status): _error_response(status, _ERROR_MEANINGS.get(status))
        for status in sorted(statuses | {503})
    }
    responses[_error_response_name(None)] = _error_response(None, _DEFAULT_ERROR_MEANING)
    return responses


def _error_response(status: int | None, meaning: str | None) -> dict[str, Any]:
    headers: dict[str, Any] = {
        REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}
    }
    if status in (401, 403):
        headers["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
    if status == 429:
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    return {
        "description": meaning or (title_of(status) if status else _DEFAULT_ERROR_MEANING),
        "headers": headers,
        "content": {
            PROBLEM_CONTENT_TYPE: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}
        },
    }


def _headers() -> dict[str, Any]:
    return {
        REQUEST_ID_HEADER: {
            "description": "The request's id: the client's own if it sent a valid one "
            "(1-128 of `A-Z a-z 0-9 . _ -`), else a new one. It is in the gateway's logs.",
            "required": True,
            "schema": {"type": "string"},
        },
        "WWW-Authenticate": {
            "description": "An RFC 6750 Bearer challenge.",
            "required": True,
            "schema": {"type": "string"},
        },
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "schema": {"type": "integer", "minimum": 0},
        },
    }


def _problem_schema() -> Schema:
    return {
        "type": "object",
        "description": "An error, as RFC 9457 problem details.",
        "properties": {
            "type": {
                "type": "string",
                "format": "uri-reference",
                "description": "`about:blank`: the status says what kind of error it is.",
                "examples": ["about:blank"],
            },
            "title": {"type": "string", "description": "The HTTP status phrase."},
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": {
                "type": "string",
                "description": "What was wrong, for a person; never secrets or internals.",
            },
            "instance": {"type": "string", "description": "The path of the request."},
            "request_id": {"type": "string", "description": "The `X-Request-ID` of the request."},
        },
        "required": ["type", "title", "status", "detail", "request_id"],
    }


def _operational_paths() -> dict[str, Any]:
    request_id = {REQUEST_ID_HEADER: {"$ref": f"#/components/headers/{REQUEST_ID_HEADER}"}}

    def operation(operation_id: str, summary: str, body: Schema, **more: Any) -> dict[str, Any]:
        return {
            "get": {
                "operationId": operation_id,
                "tags": [OPERATIONS_TAG],
                "summary": summary,
                "security": [],
                "responses": {
                    "200": {
                        "description": "OK",
                        "headers": request_id,
                        "content": {JSON_CONTENT_TYPE: {"schema": body}},
                    },
                    **more,
                },
            }
        }

    return {
        "/healthz": operation(
            "Gateway_Healthz",
            "The gateway process is alive.",
            _closed_object({"status": {"const": "ok"}}),
        ),
        "/readyz": operation(
            "Gateway_Readyz",
            "Both upstream services answer SERVING on grpc.health.v1.",
            _closed_object(
                {
                    "status": {"const": "ready"},
                    "upstreams": {
                        "type": "object",
                        "description": "Health status of each upstream, by name.",
                        "additionalProperties": {"type": "string"},
                    },
                }
            ),
            **{"503": _error_ref(503)},
        ),
    }


def _closed_object(properties: Mapping[str, Schema]) -> Schema:
    return {"type": "object", "properties": dict(properties), "required": list(properties)}


# --- message schemas ----------------------------------------------------------------------


class _Schemas:
    """Component schemas of the messages routes use, one per message and direction.

    A request schema refuses unknown and OUTPUT_ONLY fields and requires the REQUIRED ones;
    a response schema lists every field, marks OUTPUT_ONLY ones readOnly and requires those
    the gateway always writes (fields without presence). A message used both ways gets
    both; its request schema's name ends in `Input`.
    """

    def __init__(self, comments: ProtoComments, routes: Sequence[Route]) -> None:
        self.comments = comments
        self.components: dict[str, Schema] = {}
        used: dict[Direction, set[str]] = {"request": set(), "response": set()}
        for route in routes:
            for message in _body_messages(route):
                _collect(message, used["request"])
            if route.success_status != 204:
                _collect(route.method.output_type, used["response"])
        self._both = used["request"] & used["response"]

    def name(self, message: Descriptor, direction: Direction) -> str:
        if direction == "request" and message.full_name in self._both:
            return f"{message.full_name}Input"
        return message.full_name

    def ref(self, message: Descriptor, direction: Direction) -> Schema:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        name = self.name(message, direction)
        if name not in self.components:
            self.components[name] = {}  # placed first: a recursive message refers to itself
            self.components[name] = self.object_schema(message, direction)
        return {"$ref": f"#/components/schemas/{name}"}

    def body(self, route: Route) -> Schema:
        """The request body: the whole request message but the path's fields, or one field."""
        message = route.method.input_type
        if route.body != "*":
            return self.field_schema(message.fields_by_name[route.body], "request")
        bound = frozenset(variable.field_path[0] for variable in route.path_variables)
        if not bound:
            return self.ref(message, "request")
        return self.object_schema(message, "request", leave_out=bound)

    def object_schema(
        self, message: Descriptor, direction: Direction, *, leave_out: frozenset[str] = frozenset()
    ) -> Schema:
        fields = [field for field in message.fields if field.name not in leave_out]
        if direction == "request":
            fields = [field for field in fields if not field_contract(field).output_only]
        properties: dict[str, Schema] = {}
        required: list[str] = []
        for field in fields:
            property_schema = self.field_schema(field, direction)
            property_schema.update(_described(self.comments.of(field.full_name)))
            if direction == "response" and field_contract(field).output_only:
                property_schema["readOnly"] = True
            properties[field.name] = property_schema
            if _is_required_in(field, direction):
                required.append(field.name)
        schema: Schema = {"type": "object", **_described(self.comments.of(message.full_name))}
        schema["properties"] = properties
        if required:
            schema["required"] = required
        if direction == "request":
            schema["additionalProperties"] = False
            exclusive = _oneof_pairs(fields)
            if exclusive:
                schema["not"] = {"anyOf": [{"required": list(pair)} for pair in exclusive]}
        return schema

    def field_schema(self, field: FieldDescriptor, direction: Direction) -> Schema:
        if field_contract(field).is_map:
            entry = message_type(field)
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            schema: Schema = {
                "type": "object",
                "additionalProperties": self._single(value, direction),
            }
            if key.type in INTEGER_RANGES:
                schema["propertyNames"] = {"pattern": _DECIMAL_TEXT}
            elif key.type == FieldDescriptor.TYPE_BOOL:
                schema["propertyNames"] = {"enum": ["true", "false"]}
            return schema
        if field.is_repeated:
            return {"type": "array", "items": self._single(field, direction)}
        schema = self._single(field, direction)
        if direction == "request" and field_contract(field).required and _is_string(field):
            # The gateway refuses "" for a required string.
            schema["minLength"] = max(1, schema.get("minLength", 0))
        return schema

    def _single(self, field: FieldDescriptor, direction: Direction) -> Schema:
        if field.message_type is not None:
            return self.ref(field.message_type, direction)
        return _scalar_schema(field, direction)


def _scalar_schema(field: FieldDescriptor, direction: Direction) -> Schema:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if direction == "request":
            return {"type": "string", **field_contract(field).rules.json_schema()}
        return {"type": "string"}
    if kind == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    if kind in INT64_TYPES:
        low, high = INTEGER_RANGES[kind]
        text: Schema = {"type": "string", "pattern": _DECIMAL_TEXT}
        if direction == "response":
            return text  # proto3 JSON writes 64-bit integers as strings
        return {"oneOf": [{"type": "integer", "minimum": low, "maximum": high}, text]}
    if kind in INTEGER_RANGES:
        low, high = INTEGER_RANGES[kind]
        schema: Schema = {"type": "integer", "minimum": low, "maximum": high}
        if kind in INT32_TYPES:
            schema["format"] = "int32"
        return schema
    if kind in FLOAT_TYPES:
        number: Schema = {
            "type": "number",
            "format": "double" if kind == FieldDescriptor.TYPE_DOUBLE else "float",
        }
        if direction == "response":
            return {"anyOf": [number, {"enum": list(_NON_FINITE)}]}
        return number
    if kind == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    raise ValueError(f"{field.full_name}: no JSON schema for field type {kind}")


def _body_messages(route: Route) -> list[Descriptor]:
    message = route.method.input_type
    if route.body == "*":
        return [message]
    if route.body:
        field = message.fields_by_name[route.body]
        return [field.message_type] if field.message_type is not None else []
    return []


def _collect(message: Descriptor, seen: set[str]) -> None:
    """The full names of message and every message its fields reach."""
    stack = [message]
    while stack:
        current = stack.pop()
        if current.full_name in seen or current.full_name in _WELL_KNOWN:
            continue
        if not current.GetOptions().map_entry:
            seen.add(current.full_name)
        stack.extend(field.message_type for field in current.fields if field.message_type)


def _oneof_pairs(fields: Sequence[FieldDescriptor]) -> list[tuple[str, str]]:
    """Pairs of fields that may not be sent together (members of one real oneof)."""
    groups: dict[str, list[str]] = {}
    for field in fields:
        oneof = field.containing_oneof
        if oneof is not None:
            groups.setdefault(oneof.full_name, []).append(field.name)
    return [
        (first, second)
        for names in groups.values()
        for index, first in enumerate(names)
        for second in names[index + 1 :]
    ]


def _is_required_in(field: FieldDescriptor, direction: Direction) -> bool:
    if direction == "request":
        return field_contract(field).required
    # The gateway writes every field without presence, default values included.
    return field.is_repeated or (field.message_type is None and not _has_presence(field))


def _has_presence(field: FieldDescriptor) -> bool:
    return field.containing_oneof is not None or field.message_type is not None


def _is_string(field: FieldDescriptor) -> bool:
    return field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated


def _described(text: str) -> dict[str, str]:
    return {"description": text} if text else {}
