"""Channels retry what the protos declare safe to repeat, and nothing else.

Two real gRPC servers (tests.common.replica_process, each its own process) behind one
channel balancing over both; one is SIGKILLed or SIGTERMed while calls are in flight on it.
A read (GetJwks, NO_SIDE_EFFECTS) is sent again to the other replica; a Login (no
idempotency level) is sent once, and its caller sees the failure.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf import descriptor_pb2

from authgate_common.channels import (
    RETRY_POLICY,
    channel_options,
    open_channel,
    retried_methods,
    service_config,
)
from authgate_common.descriptor_set import load_descriptor_set
from authgate_common.revocation import RevocationSet, RevocationSubscriber
from tests.harness import wait_until

JWKS = f"/{auth_pb2.DESCRIPTOR.services_by_name['AuthService'].full_name}/GetJwks"
LOGIN = f"/{auth_pb2.DESCRIPTOR.services_by_name['AuthService'].full_name}/Login"
FEED = "/authgate.auth.v1.RevocationService/WatchRevocations"
# Long enough that a SIGKILL surely lands while calls are held.
HOLD_SECONDS = 0.3


@dataclass
class Replica:
    """One replica process and the calls it has received, by method path."""

    process: subprocess.Popen[str]
    port: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            word, _, value = line.strip().partition(" ")
            with self._lock:
                if word == "port":
                    self.port = int(value)
                elif word == "call":
                    self.calls[value] += 1

    def count(self, method: str) -> int:
        with self._lock:
            return self.calls[method]


def start_replica(hold_seconds: float, port: int = 0) -> Replica:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.common.replica_process", str(hold_seconds), str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    replica = Replica(process)
    threading.Thread(target=replica.read_output, daemon=True).start()
    wait_until(lambda: replica.port, within=30, what="the replica's port line")
    return replica


@pytest.fixture
def replicas() -> Iterator[Callable[..., list[Replica]]]:
    """Starts replicas (one per hold time, on `port` or each on one it picks) and kills what
    is left of them at the end."""
    with ExitStack() as cleanup:

        def start(holds: Sequence[float], port: int = 0) -> list[Replica]:
            started = [start_replica(hold, port) for hold in holds]
            for replica in started:
                cleanup.callback(replica.process.wait, 10)
                cleanup.callback(replica.process.kill)
            return started

        yield start


def balanced_target(replicas: Sequence[Replica]) -> str:
    return "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)


def without_retries() -> list[tuple[str, Any]]:
    """channel_options() with the service config of no retried method (round_robin only)."""
    options = [(k, v) for k, v in channel_options() if k != "grpc.service_config"]
    return [*options, ("grpc.service_config", json.dumps(service_config([])))]


def warm_up(stub: auth_pb2_grpc.AuthServiceStub, replicas: Sequence[Replica]) -> None:
    """Reads until every replica has answered one: all of the channel's connections are up."""
    deadline = time.monotonic() + 20
    while any(r.count(JWKS) == 0 for r in replicas):
        assert time.monotonic() < deadline, "a replica was never reached"
        stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10, wait_for_ready=True)


class ReadLoad:
    """GetJwks in a loop from a few threads until stopped; the status code of each answer."""

    def __init__(self, stub: auth_pb2_grpc.AuthServiceStub, threads: int = 4) -> None:
        self._stub = stub
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.codes: list[grpc.StatusCode] = []
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self._futures = [self._pool.submit(self._loop) for _ in range(threads)]

    def _loop(self) -> None:
        deadline = time.monotonic() + 60  # bounded, whatever the test does
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            with self._lock:
                self.codes.append(code)

    def answered(self) -> int:
        with self._lock:
            return len(self.codes)

    def stop(self) -> Counter[grpc.StatusCode]:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=60)
        self._pool.shutdown()
        return Counter(self.codes)


def read_through_a_replica_going_away(
    channel: grpc.Channel, replicas: Sequence[Replica], go_away: Callable[[Replica], None]
) -> Counter[grpc.StatusCode]:
    """The read load's answers while replicas[0] goes away with reads held on it."""
    stub = auth_pb2_grpc.AuthServiceStub(channel)
    warm_up(stub, replicas)
    load = ReadLoad(stub)
    try:
        first, survivor = replicas
        held = first.count(JWKS)
        wait_until(lambda: first.count(JWKS) >= held + 2, what="reads in flight on the replica")
        go_away(first)
        # The load goes on at the survivor, past every call that was in flight on the first.
        after = survivor.count(JWKS)
        wait_until(lambda: survivor.count(JWKS) >= after + 20, what="reads at the survivor")
    finally:
        codes = load.stop()
    return codes


def sigkill(replica: Replica) -> None:
    replica.process.kill()
    replica.process.wait(10)


def sigterm(replica: Replica) -> None:
    replica.process.send_signal(signal.SIGTERM)
    assert replica.process.wait(30) == 0


@pytest.mark.parametrize("go_away", [sigkill, sigterm], ids=["SIGKILL", "SIGTERM"])
def test_reads_see_no_unavailable_when_a_replica_goes_away_under_load(
    replicas: Callable[..., list[Replica]], go_away: Callable[[Replica], None]
) -> None:
    pair = replicas([HOLD_SECONDS, HOLD_SECONDS])
    with open_channel(balanced_target(pair)) as channel:
        codes = read_through_a_replica_going_away(channel, pair, go_away)
    assert set(codes) == {grpc.StatusCode.OK}, codes


def test_without_the_retry_policy_the_reads_held_on_a_killed_replica_fail(
    replicas: Callable[..., list[Replica]],
) -> None:
    # The scenario above bites: the same kill, on a channel without the policy, fails
    # the reads that were in flight on the killed replica.
    pair = replicas([HOLD_SECONDS, HOLD_SECONDS])
    with open_channel(balanced_target(pair), options=without_retries()) as channel:
        codes = read_through_a_replica_going_away(channel, pair, sigkill)
    assert codes[grpc.StatusCode.UNAVAILABLE] >= 1, codes


def test_a_login_in_flight_on_a_killed_replica_is_sent_once(
    replicas: Callable[..., list[Replica]],
) -> None:
    # The first replica holds each call, the second answers at once.
    held, quick = pair = replicas([HOLD_SECONDS * 10, 0])
    request = auth_pb2.LoginRequest(username="someone", password="not a real password")
    with open_channel(balanced_target(pair)) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        warm_up(stub, pair)
        # round_robin alternates: within a few logins one is held at the first replica.
        in_flight: grpc.Future[Any] | None = None
        for answered in range(10):
            attempt = stub.Login.future(request, timeout=30)

            def landed(answered: int = answered) -> bool:
                return held.count(LOGIN) > 0 or quick.count(LOGIN) > answered

            wait_until(landed, what="the login at a replica")
            if held.count(LOGIN):
                in_flight = attempt
                break
            attempt.result()  # answered at once by the quick replica
        assert in_flight is not None, "no login reached the holding replica"
        answered_by_quick = quick.count(LOGIN)
        sigkill(held)
        with pytest.raises(grpc.RpcError) as failure:
            in_flight.result()
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    # Sent once: the held replica got it and died; the other never saw it again.
    assert held.count(LOGIN) == 1
    assert quick.count(LOGIN) == answered_by_quick


def test_a_feed_whose_replica_dies_before_its_first_event_follows_the_successor_at_once(
    replicas: Callable[..., list[Replica]],
) -> None:
    # gRPC would retry the stream (uncommitted: nothing was answered yet) and that attempt
    # hung until the subscriber's own watchdog gave up on 10 s of silence (grpcio 1.85,
    # seen at every stack start that restarted auth_svc under a subscribing profile_svc).
    (silent,) = replicas([60.0])  # its first event would come after a minute
    channel = open_channel(f"127.0.0.1:{silent.port}")
    subscriber = RevocationSubscriber(lambda: channel, RevocationSet())
    try:
        subscriber.ensure_started()
        wait_until(lambda: silent.count(FEED) == 1, what="the subscription at the first replica")
        sigkill(silent)
        time.sleep(1.0)  # down for a second, as while a process restarts (no assertion waits)
        (successor,) = replicas([0.0], port=silent.port)
        assert subscriber.connected.wait(5), "the feed did not follow the successor"
        # The replica's "call" line may reach our reader after its event reached the feed.
        wait_until(lambda: successor.count(FEED) > 0, what="the successor's call line")
        assert successor.count(FEED) == 1
    finally:
        subscriber.stop()
        channel.close()


def test_the_retried_methods_are_exactly_those_the_protos_declare_safe_to_repeat() -> None:
    descriptor_set = load_descriptor_set()
    assert descriptor_set is not None
    retried = {f"{m['service']}.{m['method']}" for m in retried_methods(descriptor_set.file)}
    assert {
        "authgate.auth.v1.AuthService.GetJwks",
        "authgate.auth.v1.AuthService.GetOpenIdConfiguration",
        "authgate.auth.v1.AdminService.ListUsers",
        "authgate.auth.v1.AdminService.GetUser",
        "authgate.auth.v1.AdminService.ListAuditEvents",
        "authgate.profile.v1.ProfileService.GetProfile",
    } <= retried
    never = {
        "authgate.auth.v1.AuthService.Register",
        "authgate.auth.v1.AuthService.Login",
        "authgate.auth.v1.AuthService.Refresh",
        "authgate.auth.v1.AuthService.Logout",
        "authgate.auth.v1.AdminService.DisableUser",
        "authgate.auth.v1.AdminService.SetUserRoles",
        "authgate.auth.v1.AdminService.RevokeUserSessions",
        "authgate.profile.v1.ProfileService.UpdateProfile",
        # A stream: its subscriber reconnects itself (see the feed test above).
        "authgate.auth.v1.RevocationService.WatchRevocations",
    }
    assert not retried & never
    # Every retried method declares its level in the protos: nothing is added by name.
    levels = {
        f"{file.package}.{service.name}.{method.name}": method.options.idempotency_level
        for file in descriptor_set.file
        for service in file.service
        for method in service.method
        if not method.server_streaming
    }
    retried_levels = {
        descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
        descriptor_pb2.MethodOptions.IDEMPOTENT,
    }
    assert retried == {name for name, level in levels.items() if level in retried_levels}


def test_the_service_config_retries_only_refusals_a_bounded_number_of_times() -> None:
    config = json.loads(dict(channel_options())["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = config["methodConfig"]
    assert method_config["retryPolicy"] == dict(RETRY_POLICY)
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE", "CANCELLED"]
    assert method_config["retryPolicy"]["maxAttempts"] == 4
    assert "retryThrottling" in config
    assert service_config([]) == {"loadBalancingConfig": [{"round_robin": {}}]}
