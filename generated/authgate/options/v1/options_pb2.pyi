from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
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
