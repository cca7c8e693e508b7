"""Field rules declared in the protos (`authgate.options.v1.field_rules`), read from descriptors.

The service that owns a field checks a value with `rules_of(field).check(value)`, so a
direct gRPC call meets the same rules as one through the gateway; the gateway publishes
`json_schema()` in its OpenAPI document. Lengths count characters (code points) as JSON
Schema does; free text (a `text` kind) also follows authgate_common.text.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, cast

from authgate.options.v1 import options_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from authgate_common import text
from authgate_common.errors import InvalidArgument

TextKind = options_pb2.TextKind


class FieldRulesError(ValueError):
    """A declared rule that cannot be enforced; raised when the descriptors are read."""


@dataclass(frozen=True)
class FieldRules:
    """The rules of one string field; a field without the option has none (every check passes)."""

    name: str
    min_length: int = 0
    max_length: int = 0
    pattern: str = ""
    text_kind: int = options_pb2.TEXT_KIND_UNSPECIFIED
    description: str = ""

    @property
    def is_free_text(self) -> bool:
        return self.text_kind != options_pb2.TEXT_KIND_UNSPECIFIED

    @property
    def multi_line(self) -> bool:
        return self.text_kind == options_pb2.TEXT_KIND_MULTI_LINE

    def check(self, value: str) -> str:
        """The value to store (NFC for free text); InvalidArgument names the field otherwise."""
        length = len(value)
        if length < self.min_length or (self.max_length and length > self.max_length):
            raise InvalidArgument(self._message(self._length_text()))
        if self.pattern and _compiled(self.pattern).fullmatch(value) is None:
            raise InvalidArgument(self._message("in the expected form"))
        if not self.is_free_text:
            return value
        if text.has_refused(value, multi_line=self.multi_line):
            extra = " other than newline and tab" if self.multi_line else ""
            raise InvalidArgument(
                self._message(f"free of control, format and separator characters{extra}")
            )
        normalized = text.normalize(value)
        # NFC rarely makes text longer, but a stored value must still fit its limit.
        if self.max_length and len(normalized) > self.max_length:
            raise InvalidArgument(self._message(self._length_text()))
        return normalized

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema keywords stating these rules (minLength, maxLength, pattern)."""
        schema: dict[str, Any] = {}
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.max_length:
            schema["maxLength"] = self.max_length
        if self.pattern:
            schema["pattern"] = self.pattern
        elif self.is_free_text:
            schema["pattern"] = text.allowed_pattern(multi_line=self.multi_line)
        return schema

    def _length_text(self) -> str:
        if self.min_length and self.max_length:
            return f"{self.min_length} to {self.max_length} characters long"
        if self.max_length:
            return f"at most {self.max_length} characters long"
        return f"at least {self.min_length} characters long"

    def _message(self, fallback: str) -> str:
        return f"{self.name} must be {self.description or fallback}"


@functools.cache
def rules_of(field: FieldDescriptor) -> FieldRules:
    """The declared rules of field (none declared: FieldRules that accept anything)."""
    # The generated stubs type custom options loosely; read them untyped.
    options: Any = field.GetOptions()
    extensions: Any = options.Extensions
    if not options.HasExtension(options_pb2.field_rules):
        return FieldRules(name=field.name)
    declared = extensions[options_pb2.field_rules]
    if field.type != FieldDescriptor.TYPE_STRING:
        raise FieldRulesError(f"{field.full_name}: field_rules apply to string fields only")
    if declared.pattern and declared.text != options_pb2.TEXT_KIND_UNSPECIFIED:
        # JSON Schema has one `pattern` per schema: a pattern states the characters itself.
        raise FieldRulesError(f"{field.full_name}: declare a pattern or a text kind, not both")
    if declared.max_length and declared.min_length > declared.max_length:
        raise FieldRulesError(f"{field.full_name}: min_length is above max_length")
    if declared.pattern:
        try:
            _compiled(declared.pattern)
        except re.error as exc:
            raise FieldRulesError(f"{field.full_name}: pattern: {exc}") from None
    return FieldRules(
        name=field.name,
        min_length=declared.min_length,
        max_length=declared.max_length,
        pattern=declared.pattern,
        text_kind=declared.text,
        description=declared.description,
    )


def rules_for(message_class: type[Message], field_name: str) -> FieldRules:
    """The rules of a field of a generated message class, e.g. (RegisterRequest, "username")."""
    # The upb runtime's descriptor classes are typed apart from the pure-Python ones.
    descriptor = cast(Descriptor, message_class.DESCRIPTOR)
    return rules_of(descriptor.fields_by_name[field_name])


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)
