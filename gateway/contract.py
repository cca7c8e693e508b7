"""What the descriptors say about a field, read in one place for the router, transcoder and docs.

`google.api.field_behavior` (REQUIRED, OUTPUT_ONLY), map fields, the integer ranges of
proto3 JSON and the declared field rules: every reader of the contract asks here.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

from google.api import field_behavior_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from authgate_common.field_rules import FieldRules, rules_of

# The integer rules of proto3 JSON, which the transcoder enforces and the OpenAPI states.
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
INT32_TYPES = frozenset(
    {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SFIXED32}
)
FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


@dataclass(frozen=True)
class FieldContract:
    """One field as the gateway's contract sees it."""

    required: bool
    output_only: bool
    is_map: bool
    # A singular field with no sub-fields: it can be sent as URL text (path or query).
    is_scalar: bool
    rules: FieldRules


@functools.cache
def field_contract(field: FieldDescriptor) -> FieldContract:
    behaviours = set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])
    message = field.message_type
    return FieldContract(
        required=field_behavior_pb2.REQUIRED in behaviours,
        output_only=field_behavior_pb2.OUTPUT_ONLY in behaviours,
        is_map=field.is_repeated and message is not None and message.GetOptions().map_entry,
        is_scalar=not field.is_repeated and message is None,
        rules=rules_of(field),
    )


def message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None
    return field.message_type


def enum_type(field: FieldDescriptor) -> EnumDescriptor:
    assert field.enum_type is not None
    return field.enum_type


def descriptor_of(message: Message) -> Descriptor:
    # The upb runtime's descriptor classes are typed apart from the pure-Python ones.
    return cast(Descriptor, message.DESCRIPTOR)
