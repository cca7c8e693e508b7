"""A stand-in replica for the channel tests, run as its own process so it can be SIGKILLed.

`python -m tests.common.replica_process HOLD_SECONDS [PORT]` serves authgate's real method
names (AuthService's GetJwks and Login), answering each with an empty reply after
holding it HOLD_SECONDS, so calls are surely in flight when the process dies; and
RevocationService's WatchRevocations, a stream whose first event (a feed status) comes
after HOLD_SECONDS and whose end never comes. It binds PORT (default 0) and prints
`port N` once listening, then `call /Service/Method` as each call arrives (the count at
the server), and on SIGTERM stops as the services do: running calls finish, new ones are
refused.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from types import FrameType

import grpc
from authgate.auth.v1 import revocation_pb2

SERVICE = "authgate.auth.v1.AuthService"
METHODS = ("GetJwks", "Login")
FEED_SERVICE = "authgate.auth.v1.RevocationService"
FEED_METHOD = "WatchRevocations"
GRACE_SECONDS = 5


def serve(hold_seconds: float, port: int = 0) -> None:
    print_lock = threading.Lock()

    def handler(method: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            with print_lock:
                print(f"call /{SERVICE}/{method}", flush=True)
            time.sleep(hold_seconds)
            return b""  # every field at its default: a valid reply of any message type

        return grpc.unary_unary_rpc_method_handler(answer)  # bytes in, bytes out

    def watch(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        with print_lock:
            print(f"call /{FEED_SERVICE}/{FEED_METHOD}", flush=True)
        time.sleep(hold_seconds)
        yield revocation_pb2.RevocationEvent(status=revocation_pb2.FeedStatus()).SerializeToString()
        while context.is_active():
            time.sleep(0.1)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        handlers=[
            grpc.method_handlers_generic_handler(SERVICE, {m: handler(m) for m in METHODS}),
            grpc.method_handlers_generic_handler(
                FEED_SERVICE, {FEED_METHOD: grpc.unary_stream_rpc_method_handler(watch)}
            ),
        ],
    )
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stopped = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        server.stop(GRACE_SECONDS).wait()
        stopped.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"port {port}", flush=True)
    stopped.wait()


if __name__ == "__main__":
    serve(float(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
