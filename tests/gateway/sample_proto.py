"""A proto built in the test (not shipped) that exercises what the real protos do not:
path variables, query parameters, additional bindings and every field kind.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from authgate.options.v1 import options_pb2
from google.api import annotations_pb2, field_behavior_pb2, http_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import ServiceDescriptor

PACKAGE = "authgate.gatewaytest.v1"
SERVICE = f"{PACKAGE}.SampleService"
_F = descriptor_pb2.FieldDescriptorProto


# What every proto built in a test imports: HTTP rules, field behaviours, authgate's options.
TEST_PROTO_IMPORTS = (
    "google/api/annotations.proto",
    "google/api/field_behavior.proto",
    "authgate/options/v1/options.proto",
)


def proto_file(name: str, package: str, *more_imports: str) -> descriptor_pb2.FileDescriptorProto:
    """An empty proto3 file of that name and package, importing TEST_PROTO_IMPORTS and more."""
    return descriptor_pb2.FileDescriptorProto(
        name=name, package=package, syntax="proto3", dependency=[*TEST_PROTO_IMPORTS, *more_imports]
    )


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    type_name: str = "",
    repeated: bool = False,
    behaviour: int | None = None,
    oneof_index: int | None = None,
    proto3_optional: bool = False,
) -> None:
    field = message.field.add(name=name, number=number, type=kind, json_name=_camel(name))
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name
    if behaviour is not None:
        field.options.Extensions[field_behavior_pb2.field_behavior].append(behaviour)
    if oneof_index is not None:
        field.oneof_index = oneof_index
    if proto3_optional:
        field.proto3_optional = True


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def add_rpc(
    service: descriptor_pb2.ServiceDescriptorProto,
    name: str,
    input_type: str,
    output_type: str,
    rule: http_pb2.HttpRule | None,
    *,
    public: bool | None = None,
    status: int | None = None,
    roles: Sequence[str] = (),
    rate_limit: str | None = None,
    error_statuses: Sequence[int] = (),
) -> None:
    """An RPC of the service (types fully qualified), with its HTTP rule and authgate options."""
    method = service.method.add(name=name, input_type=input_type, output_type=output_type)
    if rule is not None:
        method.options.Extensions[annotations_pb2.http].CopyFrom(rule)
    # The generated stubs type custom options loosely; set them untyped.
    extensions: Any = method.options.Extensions
    if public is not None:
        extensions[options_pb2.public] = public
    if status is not None:
        extensions[options_pb2.http_success_status] = status
    extensions[options_pb2.required_roles].extend(roles)
    if rate_limit is not None:
        extensions[options_pb2.rate_limit] = rate_limit
    extensions[options_pb2.http_error_statuses].extend(error_statuses)


def service_of(file: descriptor_pb2.FileDescriptorProto, name: str) -> ServiceDescriptor:
    """The service `name` (fully qualified) of the file, once the file is in the default pool."""
    pool = descriptor_pool.Default()
    pool.Add(file)
    return pool.FindServiceByName(name)


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = proto_file(
        "authgate/gatewaytest/v1/sample.proto",
        PACKAGE,
        "google/protobuf/timestamp.proto",
        "google/protobuf/empty.proto",
    )
    t = f".{PACKAGE}."
    file.enum_type.add(name="Color").value.extend(
        [
            descriptor_pb2.EnumValueDescriptorProto(name="COLOR_UNSPECIFIED", number=0),
            descriptor_pb2.EnumValueDescriptorProto(name="RED", number=1),
        ]
    )
    inner = file.message_type.add(name="Inner")
    _field(inner, "name", 1, _F.TYPE_STRING, behaviour=field_behavior_pb2.REQUIRED)
    _field(inner, "size", 2, _F.TYPE_INT32)

    every = file.message_type.add(name="Every")
    entry = every.nested_type.add(name="CountsEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_INT32)
    every.oneof_decl.add(name="choice")
    every.oneof_decl.add(name="_note")
    _field(every, "name", 1, _F.TYPE_STRING, behaviour=field_behavior_pb2.REQUIRED)
    _field(every, "i32", 2, _F.TYPE_INT32)
    _field(every, "i64", 3, _F.TYPE_INT64)
    _field(every, "u32", 4, _F.TYPE_UINT32)
    _field(every, "flag", 5, _F.TYPE_BOOL)
    _field(every, "ratio", 6, _F.TYPE_DOUBLE)
    _field(every, "small", 7, _F.TYPE_FLOAT)
    _field(every, "data", 8, _F.TYPE_BYTES)
    _field(every, "color", 9, _F.TYPE_ENUM, type_name=f"{t}Color")
    _field(every, "tags", 10, _F.TYPE_STRING, repeated=True)
    _field(every, "counts", 11, _F.TYPE_MESSAGE, type_name=f"{t}Every.CountsEntry", repeated=True)
    _field(every, "inner", 12, _F.TYPE_MESSAGE, type_name=f"{t}Inner")
    _field(every, "inners", 13, _F.TYPE_MESSAGE, type_name=f"{t}Inner", repeated=True)
    _field(every, "when", 14, _F.TYPE_MESSAGE, type_name=".google.protobuf.Timestamp")
    _field(every, "id", 15, _F.TYPE_STRING, behaviour=field_behavior_pb2.OUTPUT_ONLY)
    _field(every, "a", 16, _F.TYPE_STRING, oneof_index=0)
    _field(every, "b", 17, _F.TYPE_STRING, oneof_index=0)
    _field(every, "note", 18, _F.TYPE_STRING, oneof_index=1, proto3_optional=True)

    get_req = file.message_type.add(name="GetThingRequest")
    _field(get_req, "thing_id", 1, _F.TYPE_STRING, behaviour=field_behavior_pb2.REQUIRED)
    _field(get_req, "page_size", 2, _F.TYPE_INT32)
    _field(get_req, "verbose", 3, _F.TYPE_BOOL)
    _field(get_req, "tags", 4, _F.TYPE_STRING, repeated=True)

    shelf = file.message_type.add(name="Shelf")
    _field(shelf, "name", 1, _F.TYPE_STRING)
    book_req = file.message_type.add(name="GetBookRequest")
    _field(book_req, "shelf", 1, _F.TYPE_MESSAGE, type_name=f"{t}Shelf")
    _field(book_req, "book_id", 2, _F.TYPE_INT64)

    put_req = file.message_type.add(name="PutThingRequest")
    _field(put_req, "thing_id", 1, _F.TYPE_STRING)
    _field(put_req, "thing", 2, _F.TYPE_MESSAGE, type_name=f"{t}Inner")

    service = file.service.add(name="SampleService")
    add_rpc(
        service,
        "CreateEvery",
        f"{t}Every",
        f"{t}Every",
        http_pb2.HttpRule(
            post="/v1/every",
            body="*",
            additional_bindings=[http_pb2.HttpRule(post="/v1/every:create", body="*")],
        ),
        public=True,
        status=201,
    )
    add_rpc(
        service,
        "GetThing",
        f"{t}GetThingRequest",
        f"{t}Every",
        http_pb2.HttpRule(get="/v1/things/{thing_id}"),
    )
    add_rpc(
        service,
        "GetBook",
        f"{t}GetBookRequest",
        ".google.protobuf.Empty",
        http_pb2.HttpRule(get="/v1/shelves/{shelf.name}/books/{book_id}"),
    )
    add_rpc(
        service,
        "PutThing",
        f"{t}PutThingRequest",
        f"{t}Inner",
        http_pb2.HttpRule(put="/v1/things/{thing_id}", body="thing"),
    )
    add_rpc(
        service,
        "UpdateThing",
        f"{t}GetThingRequest",
        f"{t}Every",
        http_pb2.HttpRule(patch="/v1/things/{thing_id}", body="*"),
    )
    add_rpc(service, "NotExposed", f"{t}Inner", f"{t}Inner", None)
    return file


@functools.cache
def sample_service() -> ServiceDescriptor:
    return service_of(_file(), SERVICE)
