"""Client channels between authgate processes, configured the same way everywhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    # An upstream that was down (or not yet up) is redialled within a second,
    # not after gRPC's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    # gRPC core reads this one as the time a connection attempt may take (MIN_CONNECT_TIMEOUT
    # of doc/connection-backoff.md), not as a backoff: at 100 ms a handshake on a busy machine
    # failed, and calls with it (503). A few seconds, as long as a call's own deadline.
    ("grpc.min_reconnect_backoff_ms", 5000),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    # Internal targets are dialled directly, whatever http_proxy says.
    ("grpc.enable_http_proxy", 0),
    # Client-side balancing: a target resolving to several replicas (dns:///auth:50051
    # on a headless Service or a scaled compose service, or an ipv4: list) gets a
    # connection to each, and the calls go round them; gRPC's default, pick_first,
    # would send every call to one replica.
    ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
)


def open_channel(
    target: str,
    *,
    credentials: grpc.ChannelCredentials | None = None,
    server_name: str | None = None,
) -> grpc.Channel:
    """A long-lived channel to target; make one per upstream per process and reuse it.

    With credentials (see authgate_common.tls.ClientTls) the channel speaks TLS,
    else plaintext. server_name is the name the server's certificate must carry,
    when it is not the target's host (e.g. a probe dialling 127.0.0.1).
    """
    if credentials is None:
        return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
    options = list(CHANNEL_OPTIONS)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.secure_channel(target, credentials, options=options)
