"""The descriptor set `make protos` writes beside the generated modules.

It holds authgate's own .proto files (not their imports) with their comments and
options, so code that reads every declared service or method (the API docs' comments,
the channels' retry policy) finds them here without importing each module.
"""

from __future__ import annotations

import functools
import importlib.resources

from google.protobuf import descriptor_pb2

DESCRIPTOR_SET_PACKAGE = "authgate"
DESCRIPTOR_SET_FILE = "descriptors.binpb"


@functools.cache
def load_descriptor_set() -> descriptor_pb2.FileDescriptorSet | None:
    """The shipped descriptor set; None when it is missing (`make protos` not run)."""
    resource = importlib.resources.files(DESCRIPTOR_SET_PACKAGE).joinpath(DESCRIPTOR_SET_FILE)
    if not resource.is_file():
        return None
    return descriptor_pb2.FileDescriptorSet.FromString(resource.read_bytes())
