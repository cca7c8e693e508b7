"""The comments written in the .proto files, by the full name of what they describe.

The generated Python modules drop comments, so `make protos` also writes a descriptor set
with source info (`authgate/descriptors.binpb`); this module reads it. Comments document
the API: they become the OpenAPI descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from google.protobuf import descriptor_pb2

from authgate_common.descriptor_set import load_descriptor_set

# Field numbers of the descriptor.proto elements that comments attach to.
_FILE_MESSAGE = 4
_FILE_ENUM = 5
_FILE_SERVICE = 6
_MESSAGE_FIELD = 2
_MESSAGE_NESTED = 3
_MESSAGE_ENUM = 4
_ENUM_VALUE = 2
_SERVICE_METHOD = 2

Path = tuple[int, ...]


class ProtoComments:
    """Leading comments of services, methods, messages, fields and enums, by full name."""

    def __init__(self, comments: Mapping[str, str]) -> None:
        self._comments = dict(comments)

    @classmethod
    def from_files(cls, files: Iterable[descriptor_pb2.FileDescriptorProto]) -> ProtoComments:
        comments: dict[str, str] = {}
        for file in files:
            comments.update(_file_comments(file))
        return cls(comments)

    def of(self, full_name: str) -> str:
        """The comment of an element ("" if it has none), as plain text."""
        return self._comments.get(full_name, "")

    def merged(self, other: ProtoComments) -> ProtoComments:
        return ProtoComments({**self._comments, **other._comments})


def load_proto_comments() -> ProtoComments:
    """The comments of the shipped protos; none if the descriptor set is missing."""
    descriptor_set = load_descriptor_set()
    if descriptor_set is None:
        return ProtoComments({})
    return ProtoComments.from_files(descriptor_set.file)


def _file_comments(file: descriptor_pb2.FileDescriptorProto) -> dict[str, str]:
    by_path = {
        tuple(location.path): _clean(location.leading_comments)
        for location in file.source_code_info.location
        if location.leading_comments.strip()
    }
    if not by_path:
        return {}
    names: dict[Path, str] = {}
    prefix = f"{file.package}." if file.package else ""
    for index, message in enumerate(file.message_type):
        _name_message(names, message, (_FILE_MESSAGE, index), prefix)
    for index, enum in enumerate(file.enum_type):
        _name_enum(names, enum, (_FILE_ENUM, index), prefix)
    for index, service in enumerate(file.service):
        path = (_FILE_SERVICE, index)
        service_name = prefix + service.name
        names[path] = service_name
        for method_index, method in enumerate(service.method):
            names[(*path, _SERVICE_METHOD, method_index)] = f"{service_name}.{method.name}"
    return {names[path]: text for path, text in by_path.items() if path in names}


def _name_message(
    names: dict[Path, str], message: descriptor_pb2.DescriptorProto, path: Path, prefix: str
) -> None:
    full_name = prefix + message.name
    names[path] = full_name
    for index, field in enumerate(message.field):
        names[(*path, _MESSAGE_FIELD, index)] = f"{full_name}.{field.name}"
    for index, nested in enumerate(message.nested_type):
        _name_message(names, nested, (*path, _MESSAGE_NESTED, index), f"{full_name}.")
    for index, enum in enumerate(message.enum_type):
        _name_enum(names, enum, (*path, _MESSAGE_ENUM, index), f"{full_name}.")


def _name_enum(
    names: dict[Path, str], enum: descriptor_pb2.EnumDescriptorProto, path: Path, prefix: str
) -> None:
    full_name = prefix + enum.name
    names[path] = full_name
    # Enum values are scoped beside their enum, not inside it (protobuf's C++ rule).
    for index, value in enumerate(enum.value):
        names[(*path, _ENUM_VALUE, index)] = prefix + value.name


def _clean(comment: str) -> str:
    """`// text` lines as protoc keeps them (" text\\n"), without that one leading space."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(line.rstrip() for line in lines).strip("\n")
