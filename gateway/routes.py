"""The route model: one description per HTTP route, read once from the descriptors.

The router (gateway.app), the transcoder (gateway.transcode), the OpenAPI document
(gateway.openapi), the rate limits (gateway.rate_limits) and the route table
(`python -m gateway.routes`) all read these Route objects. Nothing here knows a
particular RPC: adding an annotated RPC to a proto exposes it. The only per-service
knowledge is which upstream serves which service.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Imported for their side effect: they register the descriptors read below.
from authgate.auth.v1 import account_pb2, admin_pb2, auth_pb2, mfa_pb2  # noqa: F401
from authgate.options.v1 import options_pb2
from authgate.profile.v1 import profile_pb2  # noqa: F401
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool, empty_pb2, message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from authgate_common.authorization import method_required_roles
from authgate_common.channels import RETRIED_LEVELS
from authgate_common.field_rules import FieldRulesError
from gateway.contract import field_contract

AUTH_UPSTREAM = "auth"
PROFILE_UPSTREAM = "profile"

# Service full name -> the upstream that serves it.
FRONTED_SERVICES: Mapping[str, str] = {
    "authgate.auth.v1.AuthService": AUTH_UPSTREAM,
    "authgate.auth.v1.AdminService": AUTH_UPSTREAM,
    "authgate.auth.v1.AccountService": AUTH_UPSTREAM,
    "authgate.auth.v1.MfaService": AUTH_UPSTREAM,
    "authgate.profile.v1.ProfileService": PROFILE_UPSTREAM,
}

_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
# Statuses every route may answer: a bad query or body, an upstream that is down or slow.
ALWAYS_ERROR_STATUSES = (400, 503, 504)
# ... with a body: too large, or not JSON.
BODY_ERROR_STATUSES = (413, 415)
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=([^}]*))?\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~\-/:]*")


class RouteError(ValueError):
    """An annotation the gateway cannot serve; raised at start, never per request."""


@dataclass(frozen=True)
class PathVariable:
    """A `{field.path}` segment of a URL template, bound to a Flask rule argument."""

    argument: str
    field_path: tuple[str, ...]
    # The scalar field the segment sets (the last of field_path).
    field: FieldDescriptor
    # `{name=**}`: the rest of the path, slashes included; else one segment.
    multi_segment: bool = False

    @property
    def name(self) -> str:
        return ".".join(self.field_path)


@dataclass(frozen=True)
class Route:
    http_method: str
    # The annotation's URL template, as written.
    template: str
    flask_rule: str
    # The template as OpenAPI writes it (`{name}`, no patterns).
    openapi_path: str
    endpoint: str
    upstream: str
    grpc_path: str
    method: MethodDescriptor
    request_class: type[Message]
    response_class: type[Message]
    # The annotation's body: "*" (every field not in the path), a field name, or "".
    body: str
    path_variables: tuple[PathVariable, ...]
    # Top-level request fields that the query string may set.
    query_fields: tuple[str, ...]
    public: bool
    success_status: int
    # Every error status the route may answer, the RPC's declared ones included.
    error_statuses: tuple[int, ...] = ALWAYS_ERROR_STATUSES
    # The `authgate.options.v1.rate_limit` option as written ("" when unset).
    rate_limit: str = ""
    # Any one of these roles may call it (`authgate.options.v1.required_roles`); () = any caller.
    required_roles: tuple[str, ...] = ()
    # The RPC's `idempotency_level` says a second call is harmless (channels.RETRIED_LEVELS).
    safe_to_repeat: bool = False

    @property
    def bound_by_path(self) -> frozenset[str]:
        """Top-level request fields set by the URL path."""
        return frozenset(variable.field_path[0] for variable in self.path_variables)

    @property
    def access(self) -> str:
        """Who may call it, in words: public, any authenticated caller, or the roles."""
        if self.public:
            return "public"
        if self.required_roles:
            return "roles: " + ", ".join(self.required_roles)
        return "authenticated"


def fronted_services(
    mapping: Mapping[str, str] = FRONTED_SERVICES,
) -> dict[ServiceDescriptor, str]:
    pool = descriptor_pool.Default()
    return {pool.FindServiceByName(name): upstream for name, upstream in mapping.items()}


def build_routes(services: Mapping[ServiceDescriptor, str]) -> list[Route]:
    """One route per HTTP binding (main and additional) of every annotated method."""
    routes: list[Route] = []
    for service, upstream in services.items():
        for method in service.methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue
            rule = options.Extensions[annotations_pb2.http]
            bindings = [rule, *rule.additional_bindings]
            for index, binding in enumerate(bindings):
                routes.append(_route(method, upstream, binding, index))
            _check_field_rules(method)
    _check_unique(routes)
    return routes


def _check_field_rules(method: MethodDescriptor) -> None:
    """Read every field's contract of the request now, so a bad field_rules fails at start."""
    seen: set[str] = set()
    stack: list[Descriptor] = [method.input_type]
    while stack:
        message = stack.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        for field in message.fields:
            try:
                field_contract(field)
            except FieldRulesError as exc:
                raise RouteError(f"{method.full_name}: {exc}") from None
            if field.message_type is not None:
                stack.append(field.message_type)


def _route(method: MethodDescriptor, upstream: str, rule: http_pb2.HttpRule, index: int) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind not in _HTTP_METHODS:
        raise RouteError(f"{method.full_name}: unsupported HTTP pattern {kind!r}")
    template: str = getattr(rule, kind)
    flask_rule, openapi_path, variables = _parse_template(method, template)
    status = _method_option(method, options_pb2.http_success_status) or 200
    if not 200 <= status <= 299:
        raise RouteError(f"{method.full_name}: http_success_status {status} is not a 2xx status")
    _check_body(method, rule.body)
    public = bool(_method_option(method, options_pb2.public))
    roles = method_required_roles(method)
    if public and roles:
        raise RouteError(f"{method.full_name}: a public RPC cannot require roles")
    errors = {
        *ALWAYS_ERROR_STATUSES,
        *(int(s) for s in _method_option(method, options_pb2.http_error_statuses)),
    }
    if rule.body:
        errors.update(BODY_ERROR_STATUSES)
    if not public:
        errors.add(401)
    if roles:
        errors.add(403)
    bound = {variable.field_path[0] for variable in variables}
    return Route(
        http_method=kind.upper(),
        template=template,
        flask_rule=flask_rule,
        openapi_path=openapi_path,
        endpoint=f"rpc:{method.full_name}:{index}",
        upstream=upstream,
        grpc_path=f"/{method.containing_service.full_name}/{method.name}",
        method=method,
        request_class=message_factory.GetMessageClass(method.input_type),
        response_class=message_factory.GetMessageClass(method.output_type),
        body=rule.body,
        path_variables=tuple(variables),
        query_fields=_query_fields(method, rule.body, bound),
        public=public,
        success_status=204 if _returns_empty(method) else status,
        error_statuses=tuple(sorted(errors)),
        rate_limit=_method_option(method, options_pb2.rate_limit),
        required_roles=roles,
        safe_to_repeat=method.GetOptions().idempotency_level in RETRIED_LEVELS,
    )


def _query_fields(method: MethodDescriptor, body: str, bound: set[str]) -> tuple[str, ...]:
    """Fields neither in the body nor in the path, singular, scalar and writable."""
    if body == "*":
        return ()
    return tuple(
        field.name
        for field in method.input_type.fields
        if field.name != body
        and field.name not in bound
        and field_contract(field).is_scalar
        and not field_contract(field).output_only
    )


def _method_option(method: MethodDescriptor, extension: FieldDescriptor) -> Any:
    # The generated stubs type custom options loosely; read them untyped.
    extensions: Any = method.GetOptions().Extensions
    return extensions[extension]


def _returns_empty(method: MethodDescriptor) -> bool:
    return method.output_type.full_name == empty_pb2.Empty.DESCRIPTOR.full_name


def _parse_template(method: MethodDescriptor, template: str) -> tuple[str, str, list[PathVariable]]:
    """`/v1/users/{user.id}` -> Flask `/v1/users/<v0>`, OpenAPI `/v1/users/{user.id}`.

    `{name=**}` takes the rest of the path.
    """
    if not template.startswith("/"):
        raise RouteError(f"{method.full_name}: path {template!r} must start with '/'")
    flask_parts: list[str] = []
    openapi_parts: list[str] = []
    variables: list[PathVariable] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        literal = _literal(method, template[position : match.start()])
        flask_parts.append(literal)
        openapi_parts.append(literal)
        argument = f"v{len(variables)}"
        pattern = match.group(2)
        if pattern in (None, "*"):
            flask_parts.append(f"<{argument}>")
        elif pattern == "**":
            flask_parts.append(f"<path:{argument}>")
        else:
            raise RouteError(f"{method.full_name}: unsupported path pattern {match.group(0)!r}")
        field_path = tuple(match.group(1).split("."))
        openapi_parts.append("{" + match.group(1) + "}")
        variables.append(
            PathVariable(
                argument,
                field_path,
                _field_descriptor(method, field_path),
                multi_segment=pattern == "**",
            )
        )
        position = match.end()
    tail = _literal(method, template[position:])
    return "".join([*flask_parts, tail]), "".join([*openapi_parts, tail]), variables


def _literal(method: MethodDescriptor, text: str) -> str:
    if not _LITERAL.fullmatch(text):
        raise RouteError(f"{method.full_name}: unsupported characters in path {text!r}")
    return text


def _field_descriptor(method: MethodDescriptor, field_path: Sequence[str]) -> FieldDescriptor:
    """The scalar field a path variable sets; RouteError unless there is one."""
    message = method.input_type
    found: FieldDescriptor | None = None
    for depth, name in enumerate(field_path):
        field = found = message.fields_by_name.get(name)
        if field is None:
            raise RouteError(f"{method.full_name}: path variable names no field {name!r}")
        if field.is_repeated:
            raise RouteError(f"{method.full_name}: path variable {name!r} is a repeated field")
        last = depth == len(field_path) - 1
        if last and field.message_type is not None:
            raise RouteError(f"{method.full_name}: path variable {name!r} is not a scalar")
        if not last:
            if field.message_type is None:
                raise RouteError(f"{method.full_name}: {name!r} has no sub-fields")
            message = field.message_type
    assert found is not None  # a template variable names at least one field
    return found


def _check_body(method: MethodDescriptor, body: str) -> None:
    if body in ("", "*"):
        return
    field = method.input_type.fields_by_name.get(body)
    if field is None:
        raise RouteError(f"{method.full_name}: body names no field {body!r}")


def _check_unique(routes: Sequence[Route]) -> None:
    seen: dict[tuple[str, str], str] = {}
    for route in routes:
        key = (route.http_method, route.flask_rule)
        if key in seen:
            raise RouteError(
                f"{route.method.full_name} and {seen[key]} both bind {route.http_method} "
                f"{route.template}"
            )
        seen[key] = route.method.full_name


def route_table(routes: Sequence[Route]) -> str:
    """The routes as an aligned text table: method, path, RPC, who may call it, rate limit."""
    rows = [("METHOD", "PATH", "RPC", "ACCESS", "RATE LIMIT")]
    rows += [
        (
            route.http_method,
            route.template,
            route.method.full_name,
            route.access,
            route.rate_limit or "-",
        )
        for route in routes
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    )


def main() -> None:
    """`python -m gateway.routes`: print the gateway's route table."""
    sys.stdout.write(route_table(build_routes(fronted_services())) + "\n")


if __name__ == "__main__":
    main()
