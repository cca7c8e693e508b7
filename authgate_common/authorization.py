"""The roles an RPC requires, read from its `(authgate.options.v1.required_roles)` option.

The policy is declared once, in the protos; the gateway and every service read it from
the compiled descriptors, so no code names a role per RPC.
"""

from __future__ import annotations

import functools
from typing import Any

from authgate.options.v1 import options_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import MethodDescriptor

FORBIDDEN = "the access token does not grant a role this operation requires"


def method_required_roles(method: MethodDescriptor) -> tuple[str, ...]:
    """The method's required roles in declaration order; () when any caller may call it."""
    # The generated stubs type custom options loosely; read them untyped.
    extensions: Any = method.GetOptions().Extensions
    return tuple(extensions[options_pb2.required_roles])


@functools.cache
def required_roles(grpc_path: str) -> tuple[str, ...]:
    """The required roles of `/package.Service/Method`; () for a method the pool lacks.

    Only services whose descriptors are registered (their _pb2 module imported) are
    found, and a server serves only those, so an unknown path is never a served RPC.
    """
    service, _, name = grpc_path.lstrip("/").partition("/")
    try:
        method = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        return ()
    return method_required_roles(method)
