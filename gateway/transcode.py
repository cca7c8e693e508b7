"""JSON <-> protobuf for the generic routes, validated strictly against the descriptors.

Every message names the field the way the contract does (snake_case JSON paths such
as `keys[0].kid`), never protobuf's internal type names.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

from google.api import field_behavior_pb2
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.routes import Route

MAX_JSON_DEPTH = 32

_REQUIRED = field_behavior_pb2.REQUIRED
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
# The integer rules of proto3 JSON, which the OpenAPI document (gateway.openapi) states too.
INTEGER_RANGES: Mapping[int, tuple[int, int]] = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}
# proto3 JSON writes 64-bit integers as strings, so they are accepted as strings too.
INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_SFIXED64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED64,
    }
)
_DECIMAL = re.compile(r"-?[0-9]+")
_FLOAT32_MAX = 3.4028234663852886e38
_WELL_KNOWN_FORMATS: Mapping[str, str] = {
    "google.protobuf.Timestamp": "an RFC 3339 timestamp such as 2024-01-31T12:00:00Z",
    "google.protobuf.Duration": "a duration such as 1.5s",
    "google.protobuf.FieldMask": "a comma-separated list of field names",
}


class InvalidInput(ValueError):
    """The request does not fit the contract; the message is for the client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- JSON text -------------------------------------------------------------------------


def parse_json_object(data: bytes) -> dict[str, Any]:
    """The body as a JSON object; duplicate keys, NaN/Infinity and deep nesting are refused."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the request body is not valid UTF-8") from None
    if not text.strip():
        raise InvalidInput("the request body is empty; it must be a JSON object")
    try:
        value = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except RecursionError:
        raise InvalidInput("the JSON body is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            f"the request body is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise InvalidInput("the request body must be a JSON object")
    if _depth(value) > MAX_JSON_DEPTH:
        raise InvalidInput("the JSON body is nested too deeply")
    return value


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"the JSON body repeats the key {_quote(key)}")
        result[key] = value
    return result


def _reject_constant(name: str) -> float:
    raise InvalidInput(f"the JSON body contains {name}, which is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInput("the JSON body contains a number that is too large")
    return value


def _depth(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            return deepest
        children: Iterable[Any] = ()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _quote(text: str) -> str:
    """A client-sent name, shortened and escaped, in single quotes."""
    shown = text if len(text) <= 64 else text[:61] + "..."
    return "'" + json.dumps(shown)[1:-1].replace("'", "\\'") + "'"


# --- JSON -> request message -------------------------------------------------------------


def build_request(
    route: Route,
    *,
    body: dict[str, Any] | None,
    path_arguments: Mapping[str, str],
    query: Iterable[tuple[str, str]],
) -> Message:
    """The request message of route from the URL path, the query string and the body."""
    message = route.request_class()
    present: set[str] = set()
    for variable in route.path_variables:
        _set_from_text(message, variable.field_path, path_arguments[variable.argument], "path")
        present.add(variable.field_path[0])
    bound_by_path = frozenset(present)
    if route.body == "*":
        _fill(message, body or {}, prefix="", bound=bound_by_path)
        present.update((body or {}).keys())
    elif route.body:
        field = _descriptor_of(message).fields_by_name[route.body]
        if body is not None:
            _set_field(message, field, body, route.body)
            present.add(route.body)
    present.update(_apply_query(route, message, query, bound_by_path))
    _check_required(_descriptor_of(message), message, present, prefix="")
    return message


def _apply_query(
    route: Route, message: Message, query: Iterable[tuple[str, str]], bound: frozenset[str]
) -> set[str]:
    seen: set[str] = set()
    for name, text in query:
        field = _descriptor_of(message).fields_by_name.get(name)
        usable = (
            route.body != "*"
            and field is not None
            and name != route.body
            and name not in bound
            and not field.is_repeated
            and field.message_type is None
        )
        if not usable:
            raise InvalidInput(f"unknown query parameter {_quote(name)}")
        if name in seen:
            raise InvalidInput(f"query parameter {_quote(name)} is given more than once")
        assert field is not None
        _check_writable(field, name)
        seen.add(name)
        _set_from_text(message, (name,), text, "query parameter")
    return seen


def _set_from_text(message: Message, field_path: tuple[str, ...], text: str, where: str) -> None:
    """Set a scalar from URL text (path segment or query value), converted by field type."""
    target = message
    for name in field_path[:-1]:
        target = getattr(target, name)
    field = _descriptor_of(target).fields_by_name[field_path[-1]]
    label = ".".join(field_path)
    value: Any = text
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        if text not in ("true", "false"):
            raise InvalidInput(f"{where} {_quote(label)} must be true or false")
        value = text == "true"
    elif kind in INTEGER_RANGES:
        try:
            value = int(text, 10)
        except ValueError:
            raise InvalidInput(f"{where} {_quote(label)} must be a whole number") from None
    elif kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(f"{where} {_quote(label)} must be a number") from None
    setattr(target, field.name, _scalar(field, value, label))


def _fill(message: Message, data: Mapping[str, Any], *, prefix: str, bound: frozenset[str]) -> None:
    descriptor = _descriptor_of(message)
    oneofs_set: dict[str, str] = {}
    for key, value in data.items():
        label = prefix + key
        field = descriptor.fields_by_name.get(key)
        if field is None:
            raise InvalidInput(f"unknown field {_quote(label)}")
        if key in bound:
            raise InvalidInput(f"field {_quote(label)} is set by the URL path, not the body")
        _check_writable(field, label)
        if value is None:
            raise InvalidInput(f"field {_quote(label)} must not be null")
        oneof = field.containing_oneof
        if oneof is not None:
            if oneof.name in oneofs_set:
                raise InvalidInput(
                    f"fields {_quote(oneofs_set[oneof.name])} and {_quote(label)} "
                    "cannot both be set"
                )
            oneofs_set[oneof.name] = label
        _set_field(message, field, value, label)
    if prefix:
        _check_required(descriptor, message, set(data.keys()), prefix=prefix)


def _check_writable(field: FieldDescriptor, label: str) -> None:
    if _OUTPUT_ONLY in _behaviours(field):
        raise InvalidInput(f"field {_quote(label)} is read-only and cannot be set")


def _check_required(
    descriptor: Descriptor, message: Message, present: set[str], *, prefix: str
) -> None:
    for field in descriptor.fields:
        if _REQUIRED not in _behaviours(field):
            continue
        label = prefix + field.name
        if field.name not in present:
            raise InvalidInput(f"field {_quote(label)} is required")
        is_string = field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated
        if is_string and getattr(message, field.name) == "":
            raise InvalidInput(f"field {_quote(label)} must not be empty")


def _descriptor_of(message: Message) -> Descriptor:
    # The upb runtime's descriptor classes are typed apart from the pure-Python ones.
    return cast(Descriptor, message.DESCRIPTOR)


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None
    return field.message_type


def _enum_type(field: FieldDescriptor) -> EnumDescriptor:
    assert field.enum_type is not None
    return field.enum_type


def _behaviours(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _set_field(message: Message, field: FieldDescriptor, value: Any, label: str) -> None:
    if _is_map(field):
        _set_map(message, field, value, label)
    elif field.is_repeated:
        _set_list(message, field, value, label)
    elif field.message_type is not None:
        _set_message(getattr(message, field.name), field, value, label)
    else:
        setattr(message, field.name, _scalar(field, value, label))


def _is_map(field: FieldDescriptor) -> bool:
    return (
        field.is_repeated
        and field.message_type is not None
        and field.message_type.GetOptions().map_entry
    )


def _set_map(message: Message, field: FieldDescriptor, value: Any, label: str) -> None:
    if not isinstance(value, dict):
        raise InvalidInput(f"field {_quote(label)} must be an object")
    entry = _message_type(field)
    key_field = entry.fields_by_name["key"]
    value_field = entry.fields_by_name["value"]
    container = getattr(message, field.name)
    for raw_key, item in value.items():
        item_label = f"{label}.{raw_key}"
        if item is None:
            raise InvalidInput(f"field {_quote(item_label)} must not be null")
        key = _map_key(key_field, raw_key, label)
        if value_field.message_type is not None:
            _set_message(container[key], value_field, item, item_label)
        else:
            container[key] = _scalar(value_field, item, item_label)


def _map_key(key_field: FieldDescriptor, raw_key: str, label: str) -> Any:
    if key_field.type == FieldDescriptor.TYPE_STRING:
        return _scalar(key_field, raw_key, label)
    if key_field.type == FieldDescriptor.TYPE_BOOL:
        if raw_key not in ("true", "false"):
            raise InvalidInput(f"keys of field {_quote(label)} must be true or false")
        return raw_key == "true"
    try:
        return _scalar(key_field, int(raw_key, 10), label)
    except ValueError:
        raise InvalidInput(f"keys of field {_quote(label)} must be whole numbers") from None


def _set_list(message: Message, field: FieldDescriptor, value: Any, label: str) -> None:
    if not isinstance(value, list):
        raise InvalidInput(f"field {_quote(label)} must be a list")
    container = getattr(message, field.name)
    for index, item in enumerate(value):
        item_label = f"{label}[{index}]"
        if item is None:
            raise InvalidInput(f"field {_quote(item_label)} must not be null")
        if field.message_type is not None:
            _set_message(container.add(), field, item, item_label)
        else:
            container.append(_scalar(field, item, item_label))


def _set_message(target: Message, field: FieldDescriptor, value: Any, label: str) -> None:
    full_name = _message_type(field).full_name
    if full_name.startswith("google.protobuf."):
        _set_well_known(target, full_name, value, label)
        return
    if not isinstance(value, dict):
        raise InvalidInput(f"field {_quote(label)} must be an object")
    target.SetInParent()
    _fill(target, value, prefix=label + ".", bound=frozenset())


def _set_well_known(target: Message, full_name: str, value: Any, label: str) -> None:
    expected = _WELL_KNOWN_FORMATS.get(full_name, "a valid value")
    try:
        json_format.ParseDict(value, target)
    except (json_format.ParseError, ValueError, TypeError, AttributeError):
        raise InvalidInput(f"field {_quote(label)} must be {expected}") from None


def _scalar(field: FieldDescriptor, value: Any, label: str) -> Any:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise InvalidInput(f"field {_quote(label)} must be a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"field {_quote(label)} must be valid Unicode text") from None
        return value
    if kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidInput(f"field {_quote(label)} must be true or false")
        return value
    if kind in INTEGER_RANGES:
        return _integer(kind, value, label)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"field {_quote(label)} must be a number")
        number = float(value)
        if kind == FieldDescriptor.TYPE_FLOAT and abs(number) > _FLOAT32_MAX:
            raise InvalidInput(f"field {_quote(label)} is too large")
        return number
    if kind == FieldDescriptor.TYPE_BYTES:
        return _bytes(value, label)
    if kind == FieldDescriptor.TYPE_ENUM:
        enum = _enum_type(field)
        if not isinstance(value, str) or value not in enum.values_by_name:
            names = ", ".join(v.name for v in enum.values)
            raise InvalidInput(f"field {_quote(label)} must be one of {names}")
        return enum.values_by_name[value].number
    raise InvalidInput(f"field {_quote(label)} cannot be set")


def _integer(kind: int, value: Any, label: str) -> int:
    low, high = INTEGER_RANGES[kind]
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and kind in INT64_TYPES and _DECIMAL.fullmatch(value):
        number = int(value, 10)
    if number is None:
        raise InvalidInput(f"field {_quote(label)} must be a whole number")
    if not low <= number <= high:
        raise InvalidInput(f"field {_quote(label)} must be between {low} and {high}")
    return number


def _bytes(value: Any, label: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidInput(f"field {_quote(label)} must be base64 text")
    text = value.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"field {_quote(label)} must be base64 text") from None


# --- response message -> JSON ------------------------------------------------------------


def response_json(message: Message) -> dict[str, Any]:
    """The contract's JSON: proto field names, default-valued scalars included."""
    converted = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    # In the order of the proto fields, as the contract lists them.
    order = [field.name for field in _descriptor_of(message).fields]
    return {name: converted[name] for name in order if name in converted}
