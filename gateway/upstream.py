"""The gRPC side of the gateway: one long-lived channel per upstream per process.

Channels are made lazily on first use and remade in a forked child (gunicorn
workers), never per request. Every call carries a deadline.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgate_common.channels import open_channel
from authgate_common.jwks import (
    KEY_FETCH_TIMEOUT_SECONDS,
    JwkDict,
    JwksSource,
    grpc_jwks_source,
)
from authgate_common.tls import ClientTls, channel_credentials
from gateway.metrics import RpcObserver, UpstreamMetricsInterceptor
from gateway.routes import Route

Metadata = Sequence[tuple[str, str]]

UNREACHABLE = "UNREACHABLE"


class Upstreams:
    """Channels to the upstreams by name (e.g. "auth" -> "127.0.0.1:50051")."""

    def __init__(
        self,
        targets: Mapping[str, str],
        *,
        timeout_seconds: float,
        observe: RpcObserver | None = None,
        tls: ClientTls | None = None,
    ) -> None:
        """observe(full method, status code, seconds) is told of every unary call."""
        self._targets = dict(targets)
        self._timeout = timeout_seconds
        self._observe = observe
        self._tls = tls
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._raw_channels: dict[str, grpc.Channel] = {}
        self._channels: dict[str, grpc.Channel] = {}
        self._callables: dict[str, grpc.UnaryUnaryMultiCallable[Any, Any]] = {}

    @property
    def names(self) -> Sequence[str]:
        return tuple(self._targets)

    def channel(self, name: str) -> grpc.Channel:
        """The channel to upstream `name`, its unary calls observed (health, keys, feed)."""
        with self._lock:
            return self._channel(name)[1]

    def _channel(self, name: str) -> tuple[grpc.Channel, grpc.Channel]:
        """(raw, observed) channels to upstream `name`: one connection, the second wrapping
        the first. Holds self._lock."""
        self._forget_if_forked()
        raw = self._raw_channels.get(name)
        if raw is None:
            raw = open_channel(self._targets[name], credentials=channel_credentials(self._tls))
            observed = raw
            if self._observe is not None:
                observed = grpc.intercept_channel(raw, UpstreamMetricsInterceptor(self._observe))
            self._raw_channels[name], self._channels[name] = raw, observed
        return raw, self._channels[name]

    def _forget_if_forked(self) -> None:
        # A channel inherited through fork belongs to the parent: drop it, make our own.
        if os.getpid() != self._pid:
            self._pid = os.getpid()
            self._raw_channels = {}
            self._channels = {}
            self._callables = {}

    def call(self, route: Route, request: Message, metadata: Metadata) -> tuple[Message, Metadata]:
        """Call route's RPC: the reply and the upstream's initial metadata; raises grpc.RpcError
        with the upstream's status.

        Timed here rather than by a client interceptor on the channel: grpcio's interceptor
        machinery costs a few percent of the gateway's CPU on every request.
        """
        started = time.perf_counter()
        code = grpc.StatusCode.UNKNOWN
        # The channel's retry policy resends a call that failed before any answer came; one
        # whose replica died after it had begun to answer ("Stream removed") is committed
        # and gRPC never resends it. A read is safe to send once more.
        attempts = 2 if route.safe_to_repeat else 1
        try:
            for attempt in range(1, attempts + 1):
                try:
                    response, call = self._callable(route).with_call(
                        request, timeout=self._timeout, metadata=tuple(metadata)
                    )
                    code = grpc.StatusCode.OK
                    break
                except grpc.RpcError as exc:
                    code = _code_of(exc)
                    if attempt == attempts or code != grpc.StatusCode.UNAVAILABLE:
                        raise
        finally:
            if self._observe is not None:
                self._observe(route.grpc_path, code, time.perf_counter() - started)
        answered = call.initial_metadata() or ()
        return response, tuple((k, v) for k, v in answered if isinstance(v, str))

    def _callable(self, route: Route) -> grpc.UnaryUnaryMultiCallable[Any, Any]:
        key = f"{route.upstream}{route.grpc_path}"
        with self._lock:
            self._forget_if_forked()
            cached = self._callables.get(key)
        if cached is not None:
            return cached
        with self._lock:
            raw = self._channel(route.upstream)[0]
        callable_ = raw.unary_unary(
            route.grpc_path,
            request_serializer=route.request_class.SerializeToString,
            response_deserializer=route.response_class.FromString,
        )
        with self._lock:
            self._callables[key] = callable_
        return callable_

    def health(self, timeout_seconds: float) -> dict[str, str]:
        """Each upstream's grpc.health.v1 server status name (or UNREACHABLE), checked at once."""
        request = health_pb2.HealthCheckRequest(service="")
        pending = {
            name: health_pb2_grpc.HealthStub(self.channel(name)).Check.future(
                request, timeout=timeout_seconds
            )
            for name in self._targets
        }
        statuses: dict[str, str] = {}
        for name, future in pending.items():
            try:
                response = future.result()
            except grpc.RpcError:
                statuses[name] = UNREACHABLE
            else:
                statuses[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        return statuses

    def jwks_source(self, upstream: str) -> JwksSource:
        """A key-set source over this process's channel to the auth upstream."""

        def fetch() -> Sequence[JwkDict]:
            timeout = min(self._timeout, KEY_FETCH_TIMEOUT_SECONDS)
            return grpc_jwks_source(self.channel(upstream), timeout=timeout)()

        return fetch

    def close(self) -> None:
        with self._lock:
            channels, self._raw_channels = self._raw_channels, {}
            self._channels, self._callables = {}, {}
        for channel in channels.values():
            channel.close()


def _code_of(error: grpc.RpcError) -> grpc.StatusCode:
    failed: Any = error  # the errors raised by calls are also grpc.Call objects
    return failed.code() if hasattr(failed, "code") else grpc.StatusCode.UNKNOWN
