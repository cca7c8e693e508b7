"""Client channels between authgate processes, configured the same way everywhere.

Every channel balances with `round_robin` over the addresses its target resolves to and
retries the RPCs the protos declare safe to repeat (`option idempotency_level`) when a
replica could not answer them: a replica killed or stopping under load costs a read
nothing, while a login or a refresh, which must not run twice, is never resent.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2

from authgate_common.descriptor_set import load_descriptor_set

_MethodOptions = descriptor_pb2.MethodOptions
# The levels at which a second attempt of a call that may have reached a replica is harmless.
RETRIED_LEVELS = frozenset({_MethodOptions.NO_SIDE_EFFECTS, _MethodOptions.IDEMPOTENT})

# gRPC's retry policy (gRFC A6). UNAVAILABLE: the replica was unreachable, went away
# mid-call or refused the call while stopping. CANCELLED: grpc core (1.85) cancels the
# calls a stopping server has taken in but not yet handed to a handler (grpc/grpc#41785);
# authgate's own clients cancel only calls they have given up on, and gRPC never retries
# those. The next attempt goes to the next replica in round_robin's order, which another
# thread's call may have taken meanwhile: four attempts, so that a call in flight on a
# replica going away is very rarely sent there again each time. A deadline or an error of
# the service's own is never retried.
RETRY_POLICY: Mapping[str, Any] = {
    "maxAttempts": 4,
    # Attempts are spread at random up to these delays, all inside the call's deadline.
    "initialBackoff": "0.05s",
    "maxBackoff": "0.2s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
}
# Per channel: once failures outweigh successes (more than 50 net failed attempts, each
# success earning back 0.1), retries stop until the upstream recovers, so a service that
# is down is not sent three times its load.
RETRY_THROTTLING: Mapping[str, Any] = {"maxTokens": 100, "tokenRatio": 0.1}


def retried_methods(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> list[dict[str, str]]:
    """The service config names ({service, method}) of the RPCs safe to retry, in file order.

    Streams are left out: a retried stream whose first attempt's server died before it
    answered hung, neither answering nor failing, even once a successor served (the feed
    test in tests/common/test_channel_retries.py); the feed's subscriber reconnects itself.
    """
    names: list[dict[str, str]] = []
    for file in files:
        prefix = f"{file.package}." if file.package else ""
        for service in file.service:
            names.extend(
                {"service": prefix + service.name, "method": method.name}
                for method in service.method
                if method.options.idempotency_level in RETRIED_LEVELS
                and not method.server_streaming
            )
    return names


def service_config(files: Iterable[descriptor_pb2.FileDescriptorProto]) -> dict[str, Any]:
    """The channels' service config: round_robin, and RETRY_POLICY for the retried methods."""
    config: dict[str, Any] = {
        # Client-side balancing: a target resolving to several replicas (dns:///auth:50051
        # on a headless Service or a scaled compose service, or an ipv4: list) gets a
        # connection to each, and the calls go round them; gRPC's default, pick_first,
        # would send every call to one replica.
        "loadBalancingConfig": [{"round_robin": {}}],
    }
    methods = retried_methods(files)
    if methods:
        config["methodConfig"] = [{"name": methods, "retryPolicy": dict(RETRY_POLICY)}]
        config["retryThrottling"] = dict(RETRY_THROTTLING)
    return config


@functools.cache
def channel_options() -> tuple[tuple[str, Any], ...]:
    """The options of every channel, the service config read from the shipped protos."""
    descriptor_set = load_descriptor_set()
    if descriptor_set is None:
        raise RuntimeError("authgate/descriptors.binpb is missing: run `make protos`")
    return (
        # An upstream that was down (or not yet up) is redialled within a second,
        # not after gRPC's default backoff of up to two minutes.
        ("grpc.initial_reconnect_backoff_ms", 100),
        # gRPC core reads this one as the time a connection attempt may take
        # (MIN_CONNECT_TIMEOUT of doc/connection-backoff.md), not as a backoff: at 100 ms a
        # handshake on a busy machine failed, and calls with it (503). A few seconds, as
        # long as a call's own deadline.
        ("grpc.min_reconnect_backoff_ms", 5000),
        ("grpc.max_reconnect_backoff_ms", 1000),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        # Internal targets are dialled directly, whatever http_proxy says.
        ("grpc.enable_http_proxy", 0),
        # On by default in gRPC Python; said here because the service config relies on it.
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(service_config(descriptor_set.file))),
    )


def open_channel(
    target: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
    options: Sequence[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A long-lived channel to target; make one per upstream per process and reuse it.

    With credentials (see authgate_common.tls.ClientTls) the channel speaks TLS,
    else plaintext. server_name is the name the server's certificate must carry,
    when it is not the target's host (e.g. a probe dialling 127.0.0.1). options
    replace channel_options() (tests comparing a channel without the retry policy).
    """
    chosen = list(channel_options() if options is None else options)
    if credentials is None:
        return grpc.insecure_channel(target, options=chosen)
    if server_name:
        chosen.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, credentials, options=chosen)
