"""The bound on concurrent argon2 hashes: its default, its queue, and how a refusal travels."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc

from auth_svc.config import Argon2Params, AuthConfig
from auth_svc.hash_limiter import BUSY_MESSAGE, HashLimiter, default_max_concurrent_hashes
from auth_svc.passwords import PasswordHasher
from authgate_common.config import ConfigError, Env
from authgate_common.errors import ResourceExhausted
from authgate_common.grpc_server import RunningServer, ServerSettings, start_server

SERVICE = "authgate.auth.v1.AuthService"
CHEAP = Argon2Params(time_cost=5, memory_kib=7168, parallelism=1)


def test_default_is_two_hashes_per_core() -> None:
    assert default_max_concurrent_hashes(65536, cpus=2) == 4


def test_default_keeps_all_hashes_within_one_gibibyte() -> None:
    assert default_max_concurrent_hashes(256 * 1024, cpus=8) == 4
    assert default_max_concurrent_hashes(2 * 1024 * 1024, cpus=8) == 1


def test_config_reads_the_bound_and_the_queue_timeout() -> None:
    config = AuthConfig.from_env(
        Env({"AUTH_MAX_CONCURRENT_HASHES": "3", "AUTH_HASH_QUEUE_TIMEOUT_SECONDS": "0.5"})
    )
    assert (config.max_concurrent_hashes, config.hash_queue_timeout_seconds) == (3, 0.5)


def test_config_default_bound_follows_the_argon2_memory_cost() -> None:
    config = AuthConfig.from_env(Env({"AUTH_ARGON2_MEMORY_KIB": str(1024 * 1024)}))
    assert config.max_concurrent_hashes == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("AUTH_MAX_CONCURRENT_HASHES", "0"), ("AUTH_HASH_QUEUE_TIMEOUT_SECONDS", "-1")],
)
def test_config_refuses_a_bad_bound(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        AuthConfig.from_env(Env({name: value}))


def test_no_more_than_the_bound_run_at_once() -> None:
    limiter = HashLimiter(2, queue_timeout_seconds=5)
    running = 0
    most = 0
    lock = threading.Lock()

    def work(_: int) -> None:
        nonlocal running, most
        with limiter.slot():
            with lock:
                running += 1
                most = max(most, running)
            time.sleep(0.01)
            with lock:
                running -= 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(24)))
    assert most == 2


@contextmanager
def held_by_another_thread(limiter: HashLimiter) -> Iterator[Callable[[], None]]:
    """The limiter's slot taken by another thread for the duration of the block, or until
    the `release` it yields is called."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with limiter.slot():
            taken.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert taken.wait(5)
    try:
        yield done.set
    finally:
        done.set()
        holder.join()


def test_a_caller_waits_for_a_slot_that_frees_in_time() -> None:
    limiter = HashLimiter(1, queue_timeout_seconds=2)
    with held_by_another_thread(limiter) as release:
        freeing = threading.Timer(0.1, release)
        freeing.start()
        with limiter.slot():
            pass
        freeing.join()


@pytest.mark.serial
def test_a_caller_is_refused_with_retry_after_when_no_slot_frees_in_time() -> None:
    limiter = HashLimiter(1, queue_timeout_seconds=0.05, retry_after_seconds=1)
    with held_by_another_thread(limiter):
        started = time.monotonic()
        with pytest.raises(ResourceExhausted) as refused, limiter.slot():
            pass
        waited = time.monotonic() - started
    assert 0.04 <= waited < 1.0
    assert refused.value.message == BUSY_MESSAGE
    assert refused.value.retry_after_seconds == 1


def test_a_refused_slot_is_not_taken() -> None:
    limiter = HashLimiter(1, queue_timeout_seconds=0)
    with held_by_another_thread(limiter), pytest.raises(ResourceExhausted), limiter.slot():
        pass
    with limiter.slot():  # the one slot is free again
        pass


def test_a_thread_holding_a_slot_nests_blocks_in_it_without_taking_another() -> None:
    limiter = HashLimiter(1, queue_timeout_seconds=0)
    with limiter.slot(), limiter.slot():
        pass
    with held_by_another_thread(limiter), pytest.raises(ResourceExhausted), limiter.slot():
        pass


def test_hasher_verifications_go_through_the_limiter() -> None:
    limiter = HashLimiter(1, queue_timeout_seconds=0)
    hasher = PasswordHasher(CHEAP, limiter=limiter)
    stored = hasher.hash("correct horse battery")
    with held_by_another_thread(limiter):
        with pytest.raises(ResourceExhausted):
            hasher.verify(stored, "correct horse battery")
        with pytest.raises(ResourceExhausted):
            hasher.verify_dummy("anything at all")
        with pytest.raises(ResourceExhausted):
            hasher.hash("another password")
    assert hasher.verify(stored, "correct horse battery")


def _busy_login(request: auth_pb2.LoginRequest, context: grpc.ServicerContext) -> None:
    raise ResourceExhausted(BUSY_MESSAGE, retry_after_seconds=3)


@pytest.fixture
def busy_server() -> Iterator[RunningServer]:
    def register(server: grpc.Server) -> None:
        login: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(
            _busy_login, request_deserializer=auth_pb2.LoginRequest.FromString
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"Login": login}),)
        )

    running = start_server(
        ServerSettings(host="127.0.0.1", port=0),
        register=register,
        service_names=[SERVICE],
    )
    yield running
    running.stop(0)


def test_resource_exhausted_travels_as_its_status_with_a_retry_after_trailer(
    busy_server: RunningServer,
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{busy_server.port}") as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Login(auth_pb2.LoginRequest(username="a", password="b"), timeout=5)
    call: Any = error.value
    assert call.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert call.details() == BUSY_MESSAGE
    assert ("retry-after", "3") in tuple(call.trailing_metadata())
