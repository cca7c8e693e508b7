"""The comments written in the .proto files, by the full name of what they describe.

The generated Python modules drop comments, so `make protos` also writes a descriptor set
with source info (`authgate/descriptors.binpb`); this module reads it. Comments document
the API: they become the OpenAPI descriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

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


class _Named(Protocol):
    @property
    def name(self) -> str: ...


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
        name = prefix + service.name
        _name(names, (_FILE_SERVICE, index), name, _SERVICE_METHOD, service.method, f"{name}.")
    return {names[path]: text for path, text in by_path.items() if path in names}


def _name_message(
    names: dict[Path, str], message: descriptor_pb2.DescriptorProto, path: Path, prefix: str
) -> None:
    full_name = prefix + message.name
    _name(names, path, full_name, _MESSAGE_FIELD, message.field, f"{full_name}.")
    for index, nested in enumerate(message.nested_type):
        _name_message(names, nested, (*path, _MESSAGE_NESTED, index), f"{full_name}.")
    for index, enum in enumerate(message.enum_type):
        _name_enum(names, enum, (*path, _MESSAGE_ENUM, index), f"{full_name}.")


def _name_enum(
    names: dict[Path, str], enum: descriptor_pb2.EnumDescriptorProto, path: Path, prefix: str
) -> None:
    # Enum values are scoped beside their enum, not inside it (protobuf's C++ rule).
    _name(names, path, prefix + enum.name, _ENUM_VALUE, enum.value, prefix)


def _name(
    names: dict[Path, str],
    path: Path,
    full_name: str,
    member_field: int,
    members: Iterable[_Named],
    member_prefix: str,
) -> None:
    """Name the element at path and its members (a message's fields, an enum's values or a
    service's methods, at member_field under it), each member_prefix + its name."""
    names[path] = full_name
    for index, member in enumerate(members):
        names[(*path, member_field, index)] = member_prefix + member.name


def _clean(comment: str) -> str:
    """`// text` lines as protoc keeps them (" text\\n"), without that one leading space."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    return "\n".join(line.rstrip() for line in lines).strip("\n")
