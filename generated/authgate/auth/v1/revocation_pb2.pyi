import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RevocationKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVOCATION_KIND_UNSPECIFIED: _ClassVar[RevocationKind]
    REVOCATION_KIND_USER: _ClassVar[RevocationKind]
    REVOCATION_KIND_SESSION: _ClassVar[RevocationKind]
    REVOCATION_KIND_KEY: _ClassVar[RevocationKind]
    REVOCATION_KIND_ROLES: _ClassVar[RevocationKind]
REVOCATION_KIND_UNSPECIFIED: RevocationKind
REVOCATION_KIND_USER: RevocationKind
REVOCATION_KIND_SESSION: RevocationKind
REVOCATION_KIND_KEY: RevocationKind
REVOCATION_KIND_ROLES: RevocationKind

class WatchRevocationsRequest(_message.Message):
    __slots__ = ("after_id",)
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    after_id: int
    def __init__(self, after_id: _Optional[int] = ...) -> None: ...

class Revocation(_message.Message):
    __slots__ = ("id", "kind", "subject", "not_before", "expires_at", "roles")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    id: int
    kind: RevocationKind
    subject: str
    not_before: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    roles: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[int] = ..., kind: _Optional[_Union[RevocationKind, str]] = ..., subject: _Optional[str] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., roles: _Optional[_Iterable[str]] = ...) -> None: ...

class FeedStatus(_message.Message):
    __slots__ = ("last_id", "kids")
    LAST_ID_FIELD_NUMBER: _ClassVar[int]
    KIDS_FIELD_NUMBER: _ClassVar[int]
    last_id: int
    kids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, last_id: _Optional[int] = ..., kids: _Optional[_Iterable[str]] = ...) -> None: ...

class RevocationEvent(_message.Message):
    __slots__ = ("revocation", "status")
    REVOCATION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    revocation: Revocation
    status: FeedStatus
    def __init__(self, revocation: _Optional[_Union[Revocation, _Mapping]] = ..., status: _Optional[_Union[FeedStatus, _Mapping]] = ...) -> None: ...
