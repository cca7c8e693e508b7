"""How start_server serves: limits, keepalive policy, TLS and mTLS, and a graceful stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgate_common.channels import open_channel
from authgate_common.config import ConfigError, Env, port, text
from authgate_common.grpc_server import (
    Keepalive,
    RunningServer,
    ServerSettings,
    server_options,
    start_server,
)
from authgate_common.tls import ClientTls, ServerTls
from tests.fixtures.tls_fixtures import TlsFiles

SLEEP_METHOD = "/authgate.test.v1.Slow/Sleep"
# A service's own address settings, as auth_svc and profile_svc declare theirs.
X_HOST = text("X_HOST", "127.0.0.1", "address of a test service")
X_PORT = port("X_PORT", 50051, "port of a test service")


class SlowService:
    """Sleeps for the number of milliseconds in the request, then echoes it."""

    def __init__(self) -> None:
        self.started = threading.Semaphore(0)
        self.finished: list[bytes] = []

    def sleep(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.started.release()
        time.sleep(int(request or b"0") / 1000)
        self.finished.append(request)
        return request

    def register(self, server: grpc.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            "authgate.test.v1.Slow",
            {"Sleep": grpc.unary_unary_rpc_method_handler(self.sleep)},
        )
        server.add_generic_rpc_handlers((handler,))


ServerFactory = Callable[..., RunningServer]


@pytest.fixture
def slow() -> SlowService:
    return SlowService()


@pytest.fixture
def serve(slow: SlowService) -> Iterator[ServerFactory]:
    started: list[RunningServer] = []

    def start(**settings: object) -> RunningServer:
        running = start_server(
            ServerSettings("127.0.0.1", 0, **settings),  # type: ignore[arg-type]
            register=slow.register,
            service_names=["authgate.test.v1.Slow"],
        )
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop(0)


def sleep_call(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(SLEEP_METHOD)


def health_status(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    response = stub.Check(health_pb2.HealthCheckRequest(), timeout=3)
    return int(response.status)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# --- configuration ---


def test_settings_from_env_defaults() -> None:
    settings = ServerSettings.from_env(Env({}), host=X_HOST, port=X_PORT)
    assert settings == ServerSettings("127.0.0.1", 50051)
    assert settings.max_workers == 16
    assert settings.max_concurrent_rpcs == 256
    assert settings.grace_seconds == 10.0
    assert settings.keepalive == Keepalive()
    assert settings.tls is None


def test_settings_from_env_reads_every_variable() -> None:
    env = Env(
        {
            "X_HOST": "0.0.0.0",
            "X_PORT": "6000",
            "GRPC_MAX_WORKERS": "4",
            "GRPC_MAX_MESSAGE_BYTES": "2048",
            "GRPC_GRACE_SECONDS": "2.5",
            "GRPC_MAX_CONCURRENT_RPCS": "0",
            "GRPC_KEEPALIVE_TIME_SECONDS": "30",
            "GRPC_KEEPALIVE_TIMEOUT_SECONDS": "5",
            "GRPC_MAX_CONNECTION_IDLE_SECONDS": "60",
            "GRPC_MAX_CONNECTION_AGE_SECONDS": "120",
        }
    )
    settings = ServerSettings.from_env(env, host=X_HOST, port=X_PORT)
    assert (settings.host, settings.port, settings.max_workers) == ("0.0.0.0", 6000, 4)
    assert settings.max_message_bytes == 2048
    assert settings.grace_seconds == 2.5
    assert settings.max_concurrent_rpcs is None  # 0: no limit
    # Permit-without-calls and the least ping interval suit authgate's own clients: not settings.
    assert settings.keepalive == Keepalive(30, 5, True, 10, 60, 120)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GRPC_MAX_WORKERS", "0"),
        ("GRPC_MAX_MESSAGE_BYTES", "10"),
        ("GRPC_GRACE_SECONDS", "-1"),
        ("GRPC_MAX_CONCURRENT_RPCS", "many"),
        ("GRPC_KEEPALIVE_TIME_SECONDS", "0"),
        ("GRPC_MAX_CONNECTION_AGE_SECONDS", "nan"),
    ],
)
def test_bad_serving_values_are_config_errors_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        ServerSettings.from_env(Env({variable: value}), host=X_HOST, port=X_PORT)


def test_keepalive_and_limits_become_grpc_options() -> None:
    settings = ServerSettings(
        "127.0.0.1",
        0,
        max_message_bytes=4096,
        grace_seconds=3,
        keepalive=Keepalive(30, 5, True, 10, 60, 120),
    )
    options = dict(server_options(settings))
    assert options["grpc.max_receive_message_length"] == 4096
    assert options["grpc.max_send_message_length"] == 4096
    assert options["grpc.keepalive_time_ms"] == 30_000
    assert options["grpc.keepalive_timeout_ms"] == 5_000
    assert options["grpc.keepalive_permit_without_calls"] == 1
    assert options["grpc.http2.min_ping_interval_without_data_ms"] == 10_000
    assert options["grpc.max_connection_idle_ms"] == 60_000
    assert options["grpc.max_connection_age_ms"] == 120_000
    # A connection closed for its age lets its calls finish within the grace period.
    assert options["grpc.max_connection_age_grace_ms"] == 3_000


# --- limits ---


@pytest.mark.serial
def test_calls_beyond_the_concurrency_limit_are_refused_at_once(
    serve: ServerFactory, slow: SlowService
) -> None:
    running = serve(max_workers=4, max_concurrent_rpcs=1)
    with open_channel(f"127.0.0.1:{running.port}") as channel:
        first = sleep_call(channel).future(b"1000", timeout=5)
        assert slow.started.acquire(timeout=3)
        started = time.monotonic()
        assert code_of(lambda: sleep_call(channel)(b"0", timeout=5)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert time.monotonic() - started < 0.5
        assert first.result() == b"1000"


def test_a_message_over_the_size_limit_is_refused(serve: ServerFactory) -> None:
    running = serve(max_message_bytes=1024)
    with open_channel(f"127.0.0.1:{running.port}") as channel:
        assert code_of(lambda: sleep_call(channel)(b"0" * 2048, timeout=5)) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        assert sleep_call(channel)(b"1", timeout=5) == b"1"


# --- graceful stop ---


@pytest.mark.serial
def test_stop_lets_in_flight_calls_finish_and_refuses_new_ones(
    serve: ServerFactory, slow: SlowService
) -> None:
    running = serve(max_workers=8)
    with open_channel(f"127.0.0.1:{running.port}") as channel:
        in_flight = [sleep_call(channel).future(b"500", timeout=5) for _ in range(4)]
        for _ in in_flight:
            assert slow.started.acquire(timeout=3)
        with ThreadPoolExecutor(1) as pool:
            stopping: Future[None] = pool.submit(running.stop, 5.0)
            time.sleep(0.1)
            late = code_of(lambda: sleep_call(channel)(b"0", timeout=2))
            assert [call.result() for call in in_flight] == [b"500"] * 4
            stopping.result(timeout=5)
    assert late == grpc.StatusCode.UNAVAILABLE
    assert slow.finished.count(b"0") == 0, "a call that arrived during the stop was run"


@pytest.mark.serial
def test_stop_ends_within_the_grace_period_when_a_call_outlasts_it(
    serve: ServerFactory, slow: SlowService
) -> None:
    running = serve()
    with open_channel(f"127.0.0.1:{running.port}") as channel:
        slow_call = sleep_call(channel).future(b"3000", timeout=10)
        assert slow.started.acquire(timeout=3)
        started = time.monotonic()
        running.stop(0.3)
        assert time.monotonic() - started < 1.5
        assert code_of(slow_call.result) != grpc.StatusCode.OK


# --- TLS ---


def tls_server(serve: ServerFactory, tls: ServerTls) -> str:
    return f"127.0.0.1:{serve(tls=tls).port}"


def test_tls_client_reaches_a_tls_server(serve: ServerFactory, tls_files: TlsFiles) -> None:
    target = tls_server(serve, tls_files.server_tls())
    with open_channel(target, credentials=tls_files.client_tls().credentials()) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        assert sleep_call(channel)(b"1", timeout=5) == b"1"


def test_tls_server_answers_localhost_too(serve: ServerFactory, tls_files: TlsFiles) -> None:
    port = serve(tls=tls_files.server_tls()).port
    with open_channel(
        f"localhost:{port}", credentials=tls_files.client_tls().credentials()
    ) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING


def test_plaintext_client_fails_against_a_tls_server(
    serve: ServerFactory, tls_files: TlsFiles, slow: SlowService
) -> None:
    target = tls_server(serve, tls_files.server_tls())
    with open_channel(target) as channel:
        assert code_of(lambda: sleep_call(channel)(b"1", timeout=2)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    assert slow.finished == []


def test_client_trusting_another_ca_fails(serve: ServerFactory, tls_files: TlsFiles) -> None:
    target = tls_server(serve, tls_files.server_tls())
    wrong = ClientTls(root_ca=tls_files.other_ca.read_bytes())
    with open_channel(target, credentials=wrong.credentials()) as channel:
        assert code_of(lambda: health_status(channel)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_a_client_without_a_certificate(
    serve: ServerFactory, tls_files: TlsFiles, slow: SlowService
) -> None:
    target = tls_server(serve, tls_files.server_tls(mutual=True))
    with open_channel(target, credentials=tls_files.client_tls().credentials()) as channel:
        assert code_of(lambda: sleep_call(channel)(b"1", timeout=2)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    assert slow.finished == []


def test_mutual_tls_accepts_a_client_with_a_certificate(
    serve: ServerFactory, tls_files: TlsFiles
) -> None:
    target = tls_server(serve, tls_files.server_tls(mutual=True))
    credentials = tls_files.client_tls(with_certificate=True).credentials()
    with open_channel(target, credentials=credentials) as channel:
        assert sleep_call(channel)(b"1", timeout=5) == b"1"
