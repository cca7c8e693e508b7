"""devstack.launcher reads the port each process bound from the line it logs at start, starts
the gateway under the server GATEWAY_SERVER names, and starts replicas side by side."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from authgate_common.healthcheck import Unhealthy
from devstack.launcher import (
    BoundPorts,
    ProcessGroup,
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


class _Respawning(ProcessGroup):
    """ "a", then "b", then "c"; once "b" runs, "a" is started again (as auth_svc is once the
    profile service has bound port 0); a process of "a" is ready half a second after it
    starts, and "c" writes down, as it starts, how many processes of "a" were ready."""

    def __init__(self, marks: Path) -> None:
        super().__init__()
        self.marks = marks
        self.respawned = False  # by b's readiness, once

    def commands(self) -> list[tuple[str, list[str]]]:
        mark_when_ready = (
            "import os, pathlib, sys, time; time.sleep(0.5); "
            "pathlib.Path(sys.argv[1], str(os.getpid())).touch(); time.sleep(60)"
        )
        count_ready = (
            "import pathlib, sys, time; marks = pathlib.Path(sys.argv[1]); "
            "pathlib.Path(sys.argv[2]).write_text(str(len(list(marks.iterdir())))); "
            "time.sleep(60)"
        )
        return [
            ("a", [sys.executable, "-c", mark_when_ready, str(self.marks)]),
            ("b", [sys.executable, "-c", "import time; time.sleep(60)"]),
            ("c", [sys.executable, "-c", count_ready, str(self.marks), str(self.seen_by_c)]),
        ]

    @property
    def seen_by_c(self) -> Path:
        return self.marks.parent / "seen-by-c"

    def environment_of(self, name: str) -> dict[str, str]:
        return dict(self._base_env)

    def readiness(self, name: str) -> Callable[[], None]:
        def ready() -> None:
            if name == "b" and not self.respawned:
                self.respawned = True
                self.respawn("a")
            elif name == "a" and not (self.marks / str(self.process("a").pid)).exists():
                raise Unhealthy("a is not ready yet")
            elif name == "c" and not self.seen_by_c.exists():
                raise Unhealthy("c has not looked yet")

        return ready


@pytest.mark.parametrize("only", [None, ("a", "b")], ids=["all", "only"])
def test_start_returns_once_a_process_started_again_meanwhile_is_ready(
    tmp_path: Path, only: tuple[str, ...] | None
) -> None:
    (tmp_path / "marks").mkdir()
    group = _Respawning(tmp_path / "marks")
    group.start(timeout=20, only=only)
    try:
        assert group.respawned
        assert (tmp_path / "marks" / str(group.process("a").pid)).exists()
    finally:
        group.stop()


def test_the_process_after_one_started_again_starts_once_that_one_is_ready(
    tmp_path: Path,
) -> None:
    # Else it could dial the restarting one (the gateway auth_svc) and meet refusals.
    (tmp_path / "marks").mkdir()
    group = _Respawning(tmp_path / "marks")
    group.start(timeout=20)
    try:
        assert group.seen_by_c.read_text() == "2"  # a's first process, and its second
    finally:
        group.stop()
