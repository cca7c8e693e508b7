"""A verifier started while the auth service is unreachable syncs as soon as it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
from authgate.auth.v1 import revocation_pb2

from authgate_common.channels import open_channel
from authgate_common.revocation import RevocationSet, RevocationSubscriber
from tests.tcp_proxy import RefusingListener, one_method_server

# Long enough that a stream failing at once, and this wait after it, fails the test.
SUBSCRIBER_BACKOFF_SECONDS = 30.0


def _feed_server(port: int) -> grpc.Server:
    """RevocationService on port: a status event, then the stream stays open."""

    def watch(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        status = revocation_pb2.FeedStatus(last_id=0)
        yield revocation_pb2.RevocationEvent(status=status).SerializeToString()
        while context.is_active():
            time.sleep(0.05)

    return one_method_server(
        port,
        "authgate.auth.v1.RevocationService",
        "WatchRevocations",
        grpc.unary_stream_rpc_method_handler(watch),
    )


def test_a_subscriber_whose_channel_waits_to_redial_syncs_once_the_auth_service_is_back() -> None:
    listener = RefusingListener(count=6)
    channel = open_channel(f"127.0.0.1:{listener.port}")
    channel.subscribe(lambda state: None, try_to_connect=True)
    server: grpc.Server | None = None
    subscriber: RevocationSubscriber | None = None
    try:
        assert listener.dialled.wait(timeout=30)
        listener.close()
        # The auth service is back on its port while the channel waits out a backoff of
        # about a second: a stream opened now must wait for the redial, not fail at once.
        server = _feed_server(listener.port)
        server.start()
        subscriber = RevocationSubscriber(
            lambda: channel,
            RevocationSet(),
            min_backoff_seconds=SUBSCRIBER_BACKOFF_SECONDS,
            max_backoff_seconds=SUBSCRIBER_BACKOFF_SECONDS,
        )
        subscriber.ensure_started()
        assert subscriber.connected.wait(timeout=10)
        assert subscriber.revocations.current()
    finally:
        if subscriber is not None:
            subscriber.stop()
        listener.close()
        channel.close()
        if server is not None:
            server.stop(None)
