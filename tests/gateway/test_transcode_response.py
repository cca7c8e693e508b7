"""The precompiled reply conversion gives exactly what json_format gives, for every reply.

response_json converts the messages made of simple field kinds without json_format; this
compares it, key order included, with the generic json_format conversion on every route's
reply (the shipped protos and the test proto with every field kind), empty and filled.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from gateway.contract import descriptor_of, enum_type
from gateway.routes import build_routes, fronted_services
from gateway.transcode import _generic_response_json, response_json
from tests.gateway.sample_proto import sample_service

_SCALARS: dict[int, Any] = {
    FieldDescriptor.TYPE_STRING: "é \u2603 text",
    FieldDescriptor.TYPE_BOOL: True,
    FieldDescriptor.TYPE_INT32: -7,
    FieldDescriptor.TYPE_SINT32: -8,
    FieldDescriptor.TYPE_SFIXED32: -9,
    FieldDescriptor.TYPE_UINT32: 7,
    FieldDescriptor.TYPE_FIXED32: 8,
    FieldDescriptor.TYPE_INT64: -(2**40),
    FieldDescriptor.TYPE_SINT64: -(2**41),
    FieldDescriptor.TYPE_SFIXED64: -(2**42),
    FieldDescriptor.TYPE_UINT64: 2**63,
    FieldDescriptor.TYPE_FIXED64: 2**62,
    FieldDescriptor.TYPE_DOUBLE: 0.1,
    FieldDescriptor.TYPE_FLOAT: 1.5,
    FieldDescriptor.TYPE_BYTES: b"\x00\xff",
}


def _replies() -> list[type[Message]]:
    routes = build_routes(fronted_services()) + build_routes({sample_service(): "sample"})
    found = {route.response_class.DESCRIPTOR.full_name: route.response_class for route in routes}
    return [found[name] for name in sorted(found)]


def _fill(message: Message, depth: int = 0) -> Message:
    """Every field set (one member per oneof), nested messages two levels deep."""
    for field in descriptor_of(message).fields:
        oneof = field.containing_oneof
        if oneof is not None and message.WhichOneof(oneof.name) is not None:
            continue
        _set(message, field, depth)
    return message


def _set(message: Message, field: FieldDescriptor, depth: int) -> None:
    target: Any = getattr(message, field.name)
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        key, value = kind.fields_by_name["key"], kind.fields_by_name["value"]
        if value.message_type is None:
            target[_value(key)] = _value(value)
        elif depth < 2:
            _fill(target[_value(key)], depth + 1)
        return
    if field.is_repeated:
        if kind is None:
            target.extend([_value(field), _value(field)])
        elif depth < 2:
            _fill_message(target.add(), kind, depth)
        return
    if kind is None:
        setattr(message, field.name, _value(field))
    elif depth < 2:
        _fill_message(target, kind, depth)


def _fill_message(target: Any, kind: Descriptor, depth: int) -> None:
    if kind.full_name == "google.protobuf.Timestamp":
        target.seconds, target.nanos = 1706702400, 5000
    elif kind.full_name == "google.protobuf.Duration":
        target.seconds, target.nanos = 90, 500_000_000
    elif kind.full_name.startswith("google.protobuf."):
        target.SetInParent()
    else:
        _fill(target, depth + 1)
        target.SetInParent()


def _value(field: FieldDescriptor) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_type(field).values[-1].number
    return _SCALARS[field.type]


@pytest.mark.parametrize("reply_class", _replies(), ids=lambda c: c.DESCRIPTOR.full_name)
def test_the_fast_conversion_equals_json_format_empty_and_filled(
    reply_class: type[Message],
) -> None:
    for message in (reply_class(), _fill(reply_class())):
        fast, generic = response_json(message), _generic_response_json(message)

        assert fast == generic
        assert list(fast) == list(generic)  # the proto field order


def test_an_unknown_enum_number_is_kept_as_a_number_like_json_format() -> None:
    enum_fields = [
        (reply_class, field)
        for reply_class in _replies()
        for field in reply_class.DESCRIPTOR.fields
        if field.type == FieldDescriptor.TYPE_ENUM and not field.is_repeated
    ]
    if not enum_fields:
        pytest.skip("no reply has a singular enum field")
    for reply_class, field in enum_fields:
        message = reply_class()
        setattr(message, field.name, 12345)

        assert response_json(message) == _generic_response_json(message)
