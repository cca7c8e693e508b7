"""Client channels spread their calls over every address a target resolves to."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from authgate_common.channels import open_channel

METHOD = "/authgate.test.Replica/Which"


def start_replica(name: bytes, calls: Counter[bytes]) -> tuple[grpc.Server, int]:
    """A server answering its name on METHOD, counting the calls it gets; and its port."""

    def which(request: bytes, context: grpc.ServicerContext) -> bytes:
        calls[name] += 1
        return name

    handler = grpc.method_handlers_generic_handler(
        "authgate.test.Replica",
        {"Which": grpc.unary_unary_rpc_method_handler(which)},  # bytes in, bytes out
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), handlers=[handler])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


@pytest.fixture
def replicas() -> Iterator[tuple[list[int], Counter[bytes]]]:
    """Two replicas, b"one" and b"two", on loopback: their ports, and the calls each got."""
    calls: Counter[bytes] = Counter()
    started = [start_replica(name, calls) for name in (b"one", b"two")]
    try:
        yield [port for _, port in started], calls
    finally:
        for server, _ in started:
            server.stop(None)


def test_calls_go_round_every_replica_of_a_target(
    replicas: tuple[list[int], Counter[bytes]],
) -> None:
    ports, calls = replicas
    with open_channel("ipv4:" + ",".join(f"127.0.0.1:{port}" for port in ports)) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        # round_robin sends to the replicas whose connection is up: wait for both (with
        # pick_first the second would never be called).
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            call(b"", timeout=5, wait_for_ready=True)
        assert set(calls) == {b"one", b"two"}
        calls.clear()
        answers = Counter(call(b"", timeout=5) for _ in range(20))
    assert answers == calls
    assert min(answers[b"one"], answers[b"two"]) >= 5, answers


def test_a_dns_target_reaches_the_replica_behind_the_name(
    replicas: tuple[list[int], Counter[bytes]],
) -> None:
    # The form the deployment files use (dns:///auth:50051); here the name is localhost,
    # and only the replica listening on 127.0.0.1 at that port answers.
    ports, calls = replicas
    with open_channel(f"dns:///localhost:{ports[0]}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        assert {call(b"", timeout=5, wait_for_ready=True) for _ in range(5)} == {b"one"}
    assert calls == Counter({b"one": 5})
