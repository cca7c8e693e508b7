"""A stand-in replica for the channel tests, run as its own process so it can be SIGKILLed.

`python -m tests.common.replica_process HOLD_SECONDS` serves authgate's real method
names (AuthService's GetJwks and Login), answering each with an empty reply after
holding it HOLD_SECONDS, so calls are surely in flight when the process dies. It prints
`port N` once listening, then `call /Service/Method` as each call arrives (the count at
the server), and on SIGTERM stops as the services do: running calls finish, new ones are
refused.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from concurrent import futures
from types import FrameType

import grpc

SERVICE = "authgate.auth.v1.AuthService"
METHODS = ("GetJwks", "Login")
GRACE_SECONDS = 5


def serve(hold_seconds: float) -> None:
    print_lock = threading.Lock()

    def handler(method: str) -> grpc.RpcMethodHandler[bytes, bytes]:
        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            with print_lock:
                print(f"call /{SERVICE}/{method}", flush=True)
            time.sleep(hold_seconds)
            return b""  # every field at its default: a valid reply of any message type

        return grpc.unary_unary_rpc_method_handler(answer)  # bytes in, bytes out

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=32),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, {m: handler(m) for m in METHODS})],
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    stopped = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        server.stop(GRACE_SECONDS).wait()
        stopped.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    print(f"port {port}", flush=True)
    stopped.wait()


if __name__ == "__main__":
    serve(float(sys.argv[1]))
