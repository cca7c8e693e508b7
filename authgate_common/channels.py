"""Client channels between authgate processes, configured the same way everywhere."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import grpc

# A target may name several replicas (`ipv4:10.0.0.1:50051,10.0.0.2:50051`, or a DNS
# name with several addresses, e.g. a Kubernetes headless Service): calls are spread
# over every replica that is up, and a replica that goes away is skipped at once.
SERVICE_CONFIG = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})

CHANNEL_OPTIONS: Sequence[tuple[str, Any]] = (
    # An upstream that was down (or not yet up) is redialled within a second,
    # not after gRPC's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    # Internal targets are dialled directly, whatever http_proxy says.
    ("grpc.enable_http_proxy", 0),
    ("grpc.service_config", SERVICE_CONFIG),
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
