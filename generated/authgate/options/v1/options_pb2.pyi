from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TextKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEXT_KIND_UNSPECIFIED: _ClassVar[TextKind]
    TEXT_KIND_SINGLE_LINE: _ClassVar[TextKind]
    TEXT_KIND_MULTI_LINE: _ClassVar[TextKind]
TEXT_KIND_UNSPECIFIED: TextKind
TEXT_KIND_SINGLE_LINE: TextKind
TEXT_KIND_MULTI_LINE: TextKind
PUBLIC_FIELD_NUMBER: _ClassVar[int]
public: _descriptor.FieldDescriptor
HTTP_SUCCESS_STATUS_FIELD_NUMBER: _ClassVar[int]
http_success_status: _descriptor.FieldDescriptor
HTTP_ERROR_STATUSES_FIELD_NUMBER: _ClassVar[int]
http_error_statuses: _descriptor.FieldDescriptor
RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
rate_limit: _descriptor.FieldDescriptor
REQUIRED_ROLES_FIELD_NUMBER: _ClassVar[int]
required_roles: _descriptor.FieldDescriptor
FIELD_RULES_FIELD_NUMBER: _ClassVar[int]
field_rules: _descriptor.FieldDescriptor

class FieldRules(_message.Message):
    __slots__ = ("min_length", "max_length", "pattern", "text", "description")
    MIN_LENGTH_FIELD_NUMBER: _ClassVar[int]
    MAX_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    min_length: int
    max_length: int
    pattern: str
    text: TextKind
    description: str
    def __init__(self, min_length: _Optional[int] = ..., max_length: _Optional[int] = ..., pattern: _Optional[str] = ..., text: _Optional[_Union[TextKind, str]] = ..., description: _Optional[str] = ...) -> None: ...
