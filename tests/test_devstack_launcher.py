"""devstack.launcher reads the port each process bound from the line it logs at start, starts
the gateway under the server GATEWAY_SERVER names, starts replicas side by side, and on port 0
gives auth_svc and the profile service each a held port that forwards to the other once that
one has bound."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from authgate_common.healthcheck import Unhealthy
from devstack.forwarder import TcpForwarder
from devstack.launcher import (
    BoundPorts,
    ProcessGroup,
    Stack,
    StackSettings,
    gateway_command,
    reported_ports,
)


def test_the_gateway_port_comes_from_gunicorns_listening_line() -> None:
    line = "[2026-12-01 08:45:32 +0000] [16785] [INFO] Listening at: http://127.0.0.1:55343 (16785)"

    assert reported_ports("gateway", line) == BoundPorts(55343)
    assert reported_ports("gateway", "[INFO] Booting worker with pid: 16787") is None


def test_the_gateway_port_comes_from_granians_listening_line() -> None:
    # gateway.granian_serve binds the socket itself and hands granian the port it got.
    assert reported_ports("gateway", "[INFO] Listening at: http://127.0.0.1:41207") == BoundPorts(
        41207
    )
    assert reported_ports("gateway", "[INFO] Listening at: http://[::1]:8080\n") == BoundPorts(8080)
    assert reported_ports("gateway", "[INFO] Spawning worker-1 with PID: 16931") is None


@pytest.mark.parametrize(
    ("server", "command"),
    [
        (None, [sys.executable, "-m", "gunicorn"]),
        ("gunicorn", [sys.executable, "-m", "gunicorn"]),
        ("granian", [sys.executable, "-m", "gateway.granian_serve"]),
    ],
)
def test_the_gateway_is_started_under_the_server_its_environment_names(
    server: str | None, command: list[str]
) -> None:
    env = {} if server is None else {"GATEWAY_SERVER": server}
    assert gateway_command(env)[: len(command)] == command


def test_the_stack_passes_its_gateway_server_to_the_gateway(tmp_path: Path) -> None:
    chosen = StackSettings(tmp_path, gateway_server="granian")
    assert chosen.environment_of("gateway", {})["GATEWAY_SERVER"] == "granian"
    inherited = StackSettings(tmp_path).environment_of("gateway", {"GATEWAY_SERVER": "granian"})
    assert inherited["GATEWAY_SERVER"] == "granian"


def test_a_services_ports_come_from_its_start_line() -> None:
    start = {"message": "auth service listening", "address": "127.0.0.1:38097", "metrics_port": 9}
    no_metrics = {
        "message": "profile service started",
        "address": "[::1]:4242",
        "metrics_port": None,
    }

    assert reported_ports("auth", json.dumps(start)) == BoundPorts(38097, 9)
    assert reported_ports("profile", json.dumps(no_metrics)) == BoundPorts(4242, None)


def test_other_lines_of_a_service_are_not_its_start_line() -> None:
    metrics_endpoint = {"message": "metrics endpoint listening", "address": "127.0.0.1:9101"}

    assert reported_ports("auth", json.dumps(metrics_endpoint)) is None
    assert reported_ports("auth", "Traceback (most recent call last):") is None
    assert reported_ports("auth", json.dumps(["address", "metrics_port"])) is None


class _Replicas(ProcessGroup):
    """Two sleeping processes; "b" starts beside "a", and "a" is ready only once "b" runs."""

    def commands(self) -> list[tuple[str, list[str]]]:
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        return [("a", sleeper), ("b", sleeper)]

    def starts_with_previous(self, name: str) -> bool:
        return name == "b"

    def environment_of(self, name: str) -> dict[str, str]:
        return dict(self._base_env)

    def readiness(self, name: str) -> Callable[[], None]:
        def ready() -> None:
            try:
                self.process("b")
            except KeyError:
                raise Unhealthy("b has not been started") from None

        return ready


def test_a_process_that_starts_with_the_previous_one_does_not_wait_for_it() -> None:
    group = _Replicas()
    # Were "b" started only once "a" is ready, neither would ever be: StackError in 10 s.
    group.start(timeout=10)
    try:
        assert group.process("a").poll() is None
        assert group.process("b").poll() is None
    finally:
        group.stop()


def _echoes_through(address: str, server: socket.socket) -> bool:
    """Whether a connection to `address` arrives at `server` and carries bytes both ways."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as client:
        accepted, _ = server.accept()
        with accepted:
            client.sendall(b"ping")
            accepted.sendall(b"pong")
            return accepted.recv(4) == b"ping" and client.recv(4) == b"pong"


@pytest.mark.parametrize(
    ("callee", "caller", "variable"),
    [("profile", "auth", "PROFILE_GRPC_TARGET"), ("auth", "profile", "AUTH_GRPC_TARGET")],
)
def test_on_port_0_each_service_is_given_a_held_port_that_leads_to_the_other(
    tmp_path: Path, callee: str, caller: str, variable: str
) -> None:
    # Neither port is known before its service starts: each dials a port the launcher holds,
    # forwarded once the other has bound, so the two start side by side, each once.
    stack = Stack(StackSettings(state_dir=tmp_path, auth_port=0, profile_port=0, gateway_port=0))
    stack.prepare()
    try:
        held = stack.environment_of(caller)[variable]
        assert not held.endswith(":0")
        assert stack.starts_with_previous("profile")
        with socket.create_server(("127.0.0.1", 0)) as service:
            stack.bound(callee, BoundPorts(service.getsockname()[1]))
            assert _echoes_through(held, service)
            # The gateway starts after both: it dials them where they are.
            assert stack.environment_of("gateway")[variable] == (
                f"127.0.0.1:{service.getsockname()[1]}"
            )
    finally:
        stack.cleanup()


def test_on_fixed_ports_the_services_dial_each_other_and_start_in_order(tmp_path: Path) -> None:
    stack = Stack(StackSettings(state_dir=tmp_path, auth_port=50554, profile_port=50555))
    stack.prepare()
    try:
        assert stack.environment_of("auth")["PROFILE_GRPC_TARGET"] == "127.0.0.1:50555"
        assert stack.environment_of("profile")["AUTH_GRPC_TARGET"] == "127.0.0.1:50554"
        assert not stack.starts_with_previous("profile")
    finally:
        stack.cleanup()


def test_a_connection_made_before_the_forwarder_has_a_target_waits_for_one() -> None:
    with TcpForwarder() as forwarder, socket.create_server(("127.0.0.1", 0)) as server:
        early = socket.create_connection(("127.0.0.1", forwarder.port), timeout=5)
        with early:
            early.sendall(b"sent early")
            forwarder.forward_to("127.0.0.1", server.getsockname()[1])
            accepted, _ = server.accept()
            with accepted:
                assert accepted.recv(10) == b"sent early"
        assert _echoes_through(forwarder.address, server)
