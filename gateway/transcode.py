"""JSON <-> protobuf for the generic routes, validated strictly against the route model.

`json_format.ParseDict` does the conversion (types, integer ranges, base64, enums, maps,
well-known types). A short pre-pass over the descriptors comes first, for what ParseDict
does not do or words in protobuf's own terms: it refuses camelCase aliases, null,
OUTPUT_ONLY fields, two members of a oneof, fields the URL path sets, and missing
REQUIRED fields, and it names every bad value the way the contract does (snake_case
JSON paths such as `inners[1].name`), never protobuf's internal type names.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.contract import (
    FLOAT_TYPES,
    INT64_TYPES,
    INTEGER_RANGES,
    descriptor_of,
    enum_type,
    field_contract,
    message_type,
)
from gateway.routes import Route

MAX_JSON_DEPTH = 32
# A JSON integer literal may have enough digits for any double (about 1.8e308), far
# below Python's limit on integer conversion (4300 digits, a ValueError past it).
MAX_JSON_INTEGER_DIGITS = 400

# Integer text (64-bit as strings, path and query values, map keys): ASCII digits only,
# more than any protobuf integer has but few enough to convert cheaply.
_DECIMAL = re.compile(r"-?[0-9]{1,32}")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")
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
            parse_int=_bounded_int,
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


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INTEGER_DIGITS:
        raise InvalidInput("the JSON body contains a number with too many digits")
    return int(text)


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
    values: dict[str, Any] = {}
    if route.body == "*":
        for key in body or {}:
            if key in route.bound_by_path:
                raise InvalidInput(f"field {_quote(key)} is set by the URL path, not the body")
        values.update(body or {})
    elif route.body and body is not None:
        values[route.body] = body
    for variable in route.path_variables:
        value = _from_text(variable.field, path_arguments[variable.argument], "path", variable.name)
        target = values
        for name in variable.field_path[:-1]:
            target = target.setdefault(name, {})
        target[variable.field_path[-1]] = value
    values.update(_query_values(route, query))
    message = route.request_class()
    _check_message(descriptor_of(message), values, prefix="")
    try:
        json_format.ParseDict(values, message)
    except (json_format.ParseError, ValueError, TypeError):  # the pre-pass let a value through
        raise InvalidInput("the request does not fit the contract") from None
    return message


def _query_values(route: Route, query: Iterable[tuple[str, str]]) -> dict[str, Any]:
    fields = route.method.input_type.fields_by_name
    values: dict[str, Any] = {}
    for name, text in query:
        if name not in route.query_fields:
            raise InvalidInput(f"unknown query parameter {_quote(name)}")
        if name in values:
            raise InvalidInput(f"query parameter {_quote(name)} is given more than once")
        values[name] = _from_text(fields[name], text, "query parameter", name)
    return values


def _from_text(field: FieldDescriptor, text: str, where: str, label: str) -> Any:
    """A scalar sent as URL text (path segment or query value) as its JSON value."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_BOOL:
        if text not in ("true", "false"):
            raise InvalidInput(f"{where} {_quote(label)} must be true or false")
        return text == "true"
    if kind in INTEGER_RANGES:
        if not _DECIMAL.fullmatch(text):
            raise InvalidInput(f"{where} {_quote(label)} must be a whole number")
        return int(text, 10)
    if kind in FLOAT_TYPES:
        try:
            return float(text)
        except ValueError:
            raise InvalidInput(f"{where} {_quote(label)} must be a number") from None
    return text


def _check_message(descriptor: Descriptor, data: Mapping[str, Any], *, prefix: str) -> None:
    """The pre-pass: data fits descriptor, or InvalidInput names the first field that does not."""
    oneofs_set: dict[str, str] = {}
    for key, value in data.items():
        label = prefix + key
        field = descriptor.fields_by_name.get(key)
        if field is None:
            raise InvalidInput(f"unknown field {_quote(label)}")
        if field_contract(field).output_only:
            raise InvalidInput(f"field {_quote(label)} is read-only and cannot be set")
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
        _check_field(field, value, label)
    for field in descriptor.fields:
        if not field_contract(field).required:
            continue
        label = prefix + field.name
        if field.name not in data:
            raise InvalidInput(f"field {_quote(label)} is required")
        if field.type == FieldDescriptor.TYPE_STRING and data[field.name] == "":
            raise InvalidInput(f"field {_quote(label)} must not be empty")


def _check_field(field: FieldDescriptor, value: Any, label: str) -> None:
    if field_contract(field).is_map:
        if not isinstance(value, dict):
            raise InvalidInput(f"field {_quote(label)} must be an object")
        entry = message_type(field)
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        for key, item in value.items():
            _check_map_key(key_field, key, label)
            _check_item(value_field, item, f"{label}.{key}")
    elif field.is_repeated:
        if not isinstance(value, list):
            raise InvalidInput(f"field {_quote(label)} must be a list")
        for index, item in enumerate(value):
            _check_item(field, item, f"{label}[{index}]")
    else:
        _check_item(field, value, label)


def _check_item(field: FieldDescriptor, value: Any, label: str) -> None:
    """One singular value (a field, a list item or a map value) of field's type."""
    if value is None:
        raise InvalidInput(f"field {_quote(label)} must not be null")
    if field.message_type is None:
        _check_scalar(field, value, label)
        return
    full_name = field.message_type.full_name
    if full_name.startswith("google.protobuf."):
        # Their JSON forms (RFC 3339 text, durations, ...) are ParseDict's alone.
        try:
            json_format.ParseDict(value, message_factory.GetMessageClass(field.message_type)())
        except (json_format.ParseError, ValueError, TypeError, AttributeError):
            expected = _WELL_KNOWN_FORMATS.get(full_name, "a valid value")
            raise InvalidInput(f"field {_quote(label)} must be {expected}") from None
        return
    if not isinstance(value, dict):
        raise InvalidInput(f"field {_quote(label)} must be an object")
    _check_message(field.message_type, value, prefix=label + ".")


def _check_map_key(key_field: FieldDescriptor, key: str, label: str) -> None:
    if key_field.type == FieldDescriptor.TYPE_BOOL:
        if key not in ("true", "false"):
            raise InvalidInput(f"keys of field {_quote(label)} must be true or false")
    elif key_field.type in INTEGER_RANGES:
        if not _DECIMAL.fullmatch(key):
            raise InvalidInput(f"keys of field {_quote(label)} must be whole numbers")
        _check_range(key_field.type, int(key, 10), label)
    else:
        _check_scalar(key_field, key, label)


def _check_scalar(field: FieldDescriptor, value: Any, label: str) -> None:
    """The JSON kind of value is the one proto3 JSON gives field's type."""
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise InvalidInput(f"field {_quote(label)} must be a string")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"field {_quote(label)} must be valid Unicode text") from None
    elif kind == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise InvalidInput(f"field {_quote(label)} must be true or false")
    elif kind in INTEGER_RANGES:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        is_text = isinstance(value, str) and kind in INT64_TYPES and _DECIMAL.fullmatch(value)
        if not (is_int or is_text):
            raise InvalidInput(f"field {_quote(label)} must be a whole number")
        _check_range(kind, int(value), label)
    elif kind in FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(f"field {_quote(label)} must be a number")
        if kind == FieldDescriptor.TYPE_FLOAT and abs(float(value)) > _FLOAT32_MAX:
            raise InvalidInput(f"field {_quote(label)} is too large")
    elif kind == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str) or not _BASE64.fullmatch(value) or len(value) % 4 == 1:
            raise InvalidInput(f"field {_quote(label)} must be base64 text")
    elif kind == FieldDescriptor.TYPE_ENUM:
        enum = enum_type(field)
        if not isinstance(value, str) or value not in enum.values_by_name:
            names = ", ".join(v.name for v in enum.values)
            raise InvalidInput(f"field {_quote(label)} must be one of {names}")


def _check_range(kind: int, number: int, label: str) -> None:
    low, high = INTEGER_RANGES[kind]
    if not low <= number <= high:
        raise InvalidInput(f"field {_quote(label)} must be between {low} and {high}")


# --- response message -> JSON ------------------------------------------------------------


def response_json(message: Message) -> dict[str, Any]:
    """The contract's JSON: proto field names, default-valued scalars included, in the order
    of the proto fields (as the contract lists them)."""
    return _response_converter(descriptor_of(message))(message)


def _generic_response_json(message: Message) -> dict[str, Any]:
    converted = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    order = [field.name for field in descriptor_of(message).fields]
    return {name: converted[name] for name in order if name in converted}


_AS_IS_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_STRING,
        FieldDescriptor.TYPE_BOOL,
        FieldDescriptor.TYPE_INT32,
        FieldDescriptor.TYPE_SINT32,
        FieldDescriptor.TYPE_SFIXED32,
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_FIXED32,
    }
)
_TIMESTAMP = "google.protobuf.Timestamp"
_FieldToJson = Callable[[Any], Any]


@functools.cache
def _response_converter(descriptor: Descriptor) -> Callable[[Message], dict[str, Any]]:
    """What response_json does for messages of descriptor, made once per message type.

    json_format walks the descriptors again on every call, a large share of the gateway's
    work per request. For messages made only of the simple kinds below the conversion is
    precompiled (the same result, tests/gateway/test_transcode_response.py compares them);
    anything else (maps, floats, bytes, 64-bit integers, other well-known types) keeps
    json_format.
    """
    fields: list[tuple[str, _FieldToJson, bool]] = []
    for field in descriptor.fields:
        convert = _field_converter(field)
        if convert is None:
            return _generic_response_json
        fields.append((field.name, convert, field.has_presence))

    def convert_message(message: Message) -> dict[str, Any]:
        converted: dict[str, Any] = {}
        for name, convert, has_presence in fields:
            if has_presence and not message.HasField(name):
                continue
            converted[name] = convert(getattr(message, name))
        return converted

    return convert_message


def _field_converter(field: FieldDescriptor) -> _FieldToJson | None:
    single = _single_value_converter(field)
    if single is None or not field.is_repeated:
        return single
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return None
    return lambda values: [single(value) for value in values]


def _single_value_converter(field: FieldDescriptor) -> _FieldToJson | None:
    if field.type in _AS_IS_TYPES:
        return _as_is
    if field.type == FieldDescriptor.TYPE_ENUM:
        names = {value.number: value.name for value in enum_type(field).values}
        return lambda number: names.get(number, number)
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return None
    message = message_type(field)
    if message.full_name == _TIMESTAMP:
        return _timestamp_text
    if message.full_name.startswith("google.protobuf.") or message.GetOptions().map_entry:
        return None
    # Looked up at call time: a message may contain itself.
    return lambda value: _response_converter(message)(value)


def _as_is(value: Any) -> Any:
    return value


def _timestamp_text(value: Any) -> str:
    return str(value.ToJsonString())
