"""The HTTP routes, read from the `google.api.http` annotations of the services we front.

Nothing here knows a particular RPC: adding an annotated RPC to a proto exposes it.
The only per-service knowledge is which upstream serves which service.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Imported for their side effect: they register the descriptors read below.
from authgate.auth.v1 import admin_pb2, auth_pb2  # noqa: F401
from authgate.options.v1 import options_pb2
from authgate.profile.v1 import profile_pb2  # noqa: F401
from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor_pool, empty_pb2, message_factory
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from authgate_common.authorization import method_required_roles

AUTH_UPSTREAM = "auth"
PROFILE_UPSTREAM = "profile"

# Service full name -> the upstream that serves it.
FRONTED_SERVICES: Mapping[str, str] = {
    "authgate.auth.v1.AuthService": AUTH_UPSTREAM,
    "authgate.auth.v1.AdminService": AUTH_UPSTREAM,
    "authgate.profile.v1.ProfileService": PROFILE_UPSTREAM,
}

_HTTP_METHODS = ("get", "put", "post", "delete", "patch")
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)(?:=([^}]*))?\}")
_LITERAL = re.compile(r"[A-Za-z0-9._~\-/:]*")


class RouteError(ValueError):
    """An annotation the gateway cannot serve; raised at start, never per request."""


@dataclass(frozen=True)
class PathVariable:
    """A `{field.path}` segment of a URL template, bound to a Flask rule argument."""

    argument: str
    field_path: tuple[str, ...]


@dataclass(frozen=True)
class Route:
    http_method: str
    template: str
    flask_rule: str
    endpoint: str
    upstream: str
    grpc_path: str
    method: MethodDescriptor
    request_class: type[Message]
    response_class: type[Message]
    body: str
    path_variables: tuple[PathVariable, ...]
    public: bool
    success_status: int
    # The `authgate.options.v1.rate_limit` option as written ("" when unset).
    rate_limit: str = ""
    # The `authgate.options.v1.required_roles` option: any one suffices; (): any caller.
    required_roles: tuple[str, ...] = ()


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
    _check_unique(routes)
    return routes


def _route(method: MethodDescriptor, upstream: str, rule: http_pb2.HttpRule, index: int) -> Route:
    kind = rule.WhichOneof("pattern")
    if kind not in _HTTP_METHODS:
        raise RouteError(f"{method.full_name}: unsupported HTTP pattern {kind!r}")
    template: str = getattr(rule, kind)
    flask_rule, variables = _flask_rule(method, template)
    status = _method_option(method, options_pb2.http_success_status) or 200
    if not 200 <= status <= 299:
        raise RouteError(f"{method.full_name}: http_success_status {status} is not a 2xx status")
    _check_body(method, rule.body)
    public = bool(_method_option(method, options_pb2.public))
    if public and method_required_roles(method):
        raise RouteError(f"{method.full_name}: a public RPC cannot require roles")
    for variable in variables:
        _field_descriptor(method, variable.field_path)
    return Route(
        http_method=kind.upper(),
        template=template,
        flask_rule=flask_rule,
        endpoint=f"rpc:{method.full_name}:{index}",
        upstream=upstream,
        grpc_path=f"/{method.containing_service.full_name}/{method.name}",
        method=method,
        request_class=message_factory.GetMessageClass(method.input_type),
        response_class=message_factory.GetMessageClass(method.output_type),
        body=rule.body,
        path_variables=tuple(variables),
        public=public,
        success_status=204 if _returns_empty(method) else status,
        rate_limit=_method_option(method, options_pb2.rate_limit),
        required_roles=method_required_roles(method),
    )


def _method_option(method: MethodDescriptor, extension: FieldDescriptor) -> Any:
    # The generated stubs type custom options loosely; read them untyped.
    extensions: Any = method.GetOptions().Extensions
    return extensions[extension]


def _returns_empty(method: MethodDescriptor) -> bool:
    return method.output_type.full_name == empty_pb2.Empty.DESCRIPTOR.full_name


def _flask_rule(method: MethodDescriptor, template: str) -> tuple[str, list[PathVariable]]:
    """`/v1/users/{user.id}` -> `/v1/users/<v0>`; `{name=**}` takes the rest of the path."""
    if not template.startswith("/"):
        raise RouteError(f"{method.full_name}: path {template!r} must start with '/'")
    parts: list[str] = []
    variables: list[PathVariable] = []
    position = 0
    for match in _VARIABLE.finditer(template):
        parts.append(_literal(method, template[position : match.start()]))
        argument = f"v{len(variables)}"
        pattern = match.group(2)
        if pattern in (None, "*"):
            parts.append(f"<{argument}>")
        elif pattern == "**":
            parts.append(f"<path:{argument}>")
        else:
            raise RouteError(f"{method.full_name}: unsupported path pattern {match.group(0)!r}")
        variables.append(PathVariable(argument, tuple(match.group(1).split("."))))
        position = match.end()
    parts.append(_literal(method, template[position:]))
    return "".join(parts), variables


def _literal(method: MethodDescriptor, text: str) -> str:
    if not _LITERAL.fullmatch(text):
        raise RouteError(f"{method.full_name}: unsupported characters in path {text!r}")
    return text


def _field_descriptor(method: MethodDescriptor, field_path: Sequence[str]) -> None:
    message = method.input_type
    for depth, name in enumerate(field_path):
        field = message.fields_by_name.get(name)
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
