"""The server interceptors, one concern each, as start_server composes them for every service:
access log, metrics, errors, then authentication, on a real gRPC server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
import pytest

from authgate_common.errors import NotFound
from authgate_common.grpc_server import RunningServer, ServerSettings, start_server
from authgate_common.interceptors import AccessLogInterceptor, AuthInterceptor, CallerIdentity
from authgate_common.jwks import JwksCache
from authgate_common.tokens import TokenSettings, TokenVerifier
from tests.token_factory import TokenFactory

PROTECTED = "authgate.test.v1.Protected"
OPEN = "authgate.test.v1.Open"
ACCESS_LOGGER = "authgate_common.grpc_server"


@dataclass
class Observed:
    calls: list[tuple[str, grpc.StatusCode]] = field(default_factory=list)

    def observe(self, method: str, code: grpc.StatusCode, _seconds: float) -> None:
        self.calls.append((method, code))


def _echo_user(caller: CallerIdentity) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def whoami(_request: bytes, _context: grpc.ServicerContext) -> bytes:
        return caller.get().user_id.encode()

    return whoami


def _set_code(_request: bytes, context: grpc.ServicerContext) -> bytes:
    context.set_code(grpc.StatusCode.FAILED_PRECONDITION)
    return b""


def _not_found(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    raise NotFound("no such thing")


def _crash(_request: bytes, _context: grpc.ServicerContext) -> bytes:
    raise RuntimeError("SELECT secret FROM internals")


def _stream(request: bytes, _context: grpc.ServicerContext) -> Iterator[bytes]:
    yield request
    yield request


def _failing_observer(_method: str, _code: grpc.StatusCode, _seconds: float) -> None:
    raise RuntimeError("metrics backend down")


@dataclass
class InterceptedServer:
    running: RunningServer
    channel: grpc.Channel
    observed: Observed

    def unary(self, service: str, method: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
        return self.channel.unary_unary(f"/{service}/{method}")


@pytest.fixture
def server(
    token_settings: TokenSettings, token_factory: TokenFactory
) -> Iterator[InterceptedServer]:
    verifier = TokenVerifier(
        token_settings,
        JwksCache(token_factory.jwks_source(), allowed_algorithms=token_settings.algorithms),
    )
    authenticator = AuthInterceptor(verifier, protected_services=[PROTECTED])
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "WhoAmI": grpc.unary_unary_rpc_method_handler(_echo_user(authenticator.caller)),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
    }
    open_handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "SetCode": grpc.unary_unary_rpc_method_handler(_set_code),
        "NotFound": grpc.unary_unary_rpc_method_handler(_not_found),
        "Crash": grpc.unary_unary_rpc_method_handler(_crash),
        "Stream": grpc.unary_stream_rpc_method_handler(_stream),
    }

    def register(grpc_server: grpc.Server) -> None:
        grpc_server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(PROTECTED, handlers),
                grpc.method_handlers_generic_handler(OPEN, open_handlers),
            )
        )

    observed = Observed()
    running = start_server(
        ServerSettings("127.0.0.1", 0),
        register=register,
        service_names=[PROTECTED, OPEN],
        interceptors=[authenticator],
        observers=[_failing_observer, observed.observe],
    )
    with grpc.insecure_channel(running.target) as channel:
        yield InterceptedServer(running, channel, observed)
    running.stop(0)


@pytest.fixture
def access_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """caplog with the access log's INFO lines captured."""
    caplog.set_level(logging.INFO, logger=ACCESS_LOGGER)
    return caplog


def _rpc_lines(caplog: pytest.LogCaptureFixture, request_id: str) -> list[dict[str, Any]]:
    """The fields of the access log lines of one request."""
    return [
        vars(r)
        for r in caplog.records
        if r.name == ACCESS_LOGGER
        and r.getMessage() == "rpc"
        and getattr(r, "request_id", None) == request_id
    ]


def _failure(call: Callable[[], object]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_a_verified_caller_reaches_the_servicer_and_is_logged_and_counted(
    server: InterceptedServer, token_factory: TokenFactory, access_log: pytest.LogCaptureFixture
) -> None:
    metadata = (
        ("authorization", f"Bearer {token_factory.mint('user-7', 'gina')}"),
        ("x-request-id", "req-whoami"),
    )

    answer = server.unary(PROTECTED, "WhoAmI")(b"", metadata=metadata, timeout=5)

    assert answer == b"user-7"
    [line] = _rpc_lines(access_log, "req-whoami")
    assert (line["method"], line["code"], line["user_id"]) == (
        f"/{PROTECTED}/WhoAmI",
        "OK",
        "user-7",
    )
    assert isinstance(line["latency_ms"], float)
    assert (f"/{PROTECTED}/WhoAmI", grpc.StatusCode.OK) in server.observed.calls


def test_a_refused_token_is_mapped_then_logged_and_counted_with_its_status(
    server: InterceptedServer, access_log: pytest.LogCaptureFixture
) -> None:
    metadata = (("authorization", "Bearer not.a.jwt"), ("x-request-id", "req-refused"))

    error = _failure(lambda: server.unary(PROTECTED, "WhoAmI")(b"", metadata=metadata, timeout=5))

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    [line] = _rpc_lines(access_log, "req-refused")
    assert (line["code"], line["user_id"]) == ("UNAUTHENTICATED", None)
    assert server.observed.calls == [(f"/{PROTECTED}/WhoAmI", grpc.StatusCode.UNAUTHENTICATED)]


def test_services_not_listed_as_protected_need_no_token(server: InterceptedServer) -> None:
    error = _failure(lambda: server.unary(OPEN, "NotFound")(b"", timeout=5))

    assert (error.code(), error.details()) == (grpc.StatusCode.NOT_FOUND, "no such thing")


def test_an_unexpected_error_is_internal_without_its_message_and_logged_with_the_request_id(
    server: InterceptedServer, access_log: pytest.LogCaptureFixture
) -> None:
    metadata = (("x-request-id", "req-crash"),)

    error = _failure(lambda: server.unary(OPEN, "Crash")(b"", metadata=metadata, timeout=5))

    assert (error.code(), error.details()) == (grpc.StatusCode.INTERNAL, "internal error")
    assert "SELECT" not in str(error.trailing_metadata())
    [logged] = [r for r in access_log.records if r.getMessage() == "unexpected error"]
    assert getattr(logged, "request_id", None) == "req-crash"
    assert logged.exc_info is not None
    [line] = _rpc_lines(access_log, "req-crash")
    assert line["code"] == "INTERNAL"


def test_a_code_set_by_the_servicer_is_the_code_logged_and_counted(
    server: InterceptedServer, access_log: pytest.LogCaptureFixture
) -> None:
    metadata = (("x-request-id", "req-set-code"),)

    error = _failure(lambda: server.unary(OPEN, "SetCode")(b"", metadata=metadata, timeout=5))

    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    [line] = _rpc_lines(access_log, "req-set-code")
    assert line["code"] == "FAILED_PRECONDITION"
    assert server.observed.calls == [(f"/{OPEN}/SetCode", grpc.StatusCode.FAILED_PRECONDITION)]


def test_a_failing_observer_never_fails_the_call(
    server: InterceptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    error = _failure(lambda: server.unary(OPEN, "NotFound")(b"", timeout=5))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert [r for r in caplog.records if r.getMessage() == "rpc observer failed"]


def test_a_protected_streaming_rpc_is_not_served_unchecked(
    server: InterceptedServer, token_factory: TokenFactory
) -> None:
    metadata = (("authorization", f"Bearer {token_factory.mint('user-7', 'gina')}"),)
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = server.channel.unary_stream(
        f"/{PROTECTED}/Stream"
    )

    error = _failure(lambda: list(stream(b"x", metadata=metadata, timeout=5)))

    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_an_open_streaming_rpc_passes_through(server: InterceptedServer) -> None:
    stream: grpc.UnaryStreamMultiCallable[bytes, bytes] = server.channel.unary_stream(
        f"/{OPEN}/Stream"
    )

    assert list(stream(b"x", timeout=5)) == [b"x", b"x"]


def test_every_call_is_checked_logged_and_counted_though_the_handler_is_made_once(
    server: InterceptedServer, token_factory: TokenFactory, access_log: pytest.LogCaptureFixture
) -> None:
    # The wrapped handler of a method is reused across calls: per-call work must not be.
    whoami = server.unary(PROTECTED, "WhoAmI")
    good = (("authorization", f"Bearer {token_factory.mint('user-8', 'hal')}"),)

    answers = [
        whoami(b"", metadata=(*good, ("x-request-id", f"req-again-{n}")), timeout=5)
        for n in range(3)
    ]
    refused = _failure(
        lambda: whoami(
            b"",
            metadata=(("authorization", "Bearer not.a.jwt"), ("x-request-id", "req-again-bad")),
            timeout=5,
        )
    )

    assert answers == [b"user-8"] * 3
    assert refused.code() == grpc.StatusCode.UNAUTHENTICATED
    for n in range(3):
        [line] = _rpc_lines(access_log, f"req-again-{n}")
        assert (line["code"], line["user_id"]) == ("OK", "user-8")
    [bad] = _rpc_lines(access_log, "req-again-bad")
    assert (bad["code"], bad["user_id"]) == ("UNAUTHENTICATED", None)
    assert server.observed.calls.count((f"/{PROTECTED}/WhoAmI", grpc.StatusCode.OK)) == 3


def test_the_wrapped_handler_is_reused_while_the_inner_one_stays_the_same() -> None:
    interceptor = AccessLogInterceptor()
    details = _CallDetails(f"/{OPEN}/SetCode")
    first: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(_set_code)
    second: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(_not_found)

    one = interceptor.intercept_service(lambda _d: first, details)
    again = interceptor.intercept_service(lambda _d: first, details)
    replaced = interceptor.intercept_service(lambda _d: second, details)

    assert one is again
    assert replaced is not one
    assert replaced is not None
    assert replaced.unary_unary is not None
    with pytest.raises(NotFound):
        replaced.unary_unary(b"", cast(grpc.ServicerContext, _NoContext()))


@dataclass(frozen=True)
class _CallDetails(grpc.HandlerCallDetails):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...] = ()


class _NoContext:
    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def code(self) -> None:
        return None
