"""Start auth_svc, profile_svc and the gateway (under gunicorn) as real processes, and stop them."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common.config import Env
from authgate_common.healthcheck import Unhealthy, check_grpc, check_http
from authgate_common.migrations import MigrationSet
from authgate_common.tls import ClientTls
from profile_svc.migrations import PROFILE_MIGRATIONS

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
NAMES = ("auth", "profile", "gateway")
# gunicorn's master, once it has bound: "[INFO] Listening at: http://127.0.0.1:8080 (123)".
_GUNICORN_LISTENING = re.compile(r"Listening at: https?://[^\s]*:(\d+) ")


class StackError(RuntimeError):
    """A process of the stack did not start or stopped unexpectedly."""


@dataclass(frozen=True)
class StackSettings:
    """Where the three processes listen and keep their state.

    A port of 0 lets the process pick a free one; once it has started, `Stack.settings`
    holds the port it reported (so a restart binds the same one).
    """

    state_dir: Path
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    auth_port: int = 50051
    profile_port: int = 50052
    gateway_workers: int = 2
    gateway_threads: int = 8
    # The services' Prometheus endpoints; None: not served.
    auth_metrics_port: int | None = None
    profile_metrics_port: int | None = None
    auth_database_url: str | None = None
    profile_database_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    @property
    def gateway_metrics_dir(self) -> Path:
        """Where the gateway's gunicorn workers keep their metrics (emptied at each start)."""
        return self.state_dir.resolve() / "gateway-metrics"

    def metrics_urls(self) -> dict[str, str]:
        """The /metrics URL of each process that serves one."""
        urls = {"gateway": f"{self.gateway_url}/metrics"}
        for name, port in (
            ("auth", self.auth_metrics_port),
            ("profile", self.profile_metrics_port),
        ):
            if port is not None:
                urls[name] = f"http://{self.host}:{port}/metrics"
        return urls

    def environment(self) -> dict[str, str]:
        state = self.state_dir.resolve()
        env = {
            "AUTH_DATABASE_URL": self.auth_database_url or f"sqlite:///{state / 'auth.db'}",
            "PROFILE_DATABASE_URL": self.profile_database_url
            or f"sqlite:///{state / 'profile.db'}",
            "AUTH_KEYS_DIR": str(state / "keys"),
            "AUTH_GRPC_HOST": self.host,
            "PROFILE_GRPC_HOST": self.host,
            "GATEWAY_HOST": self.host,
            "AUTH_GRPC_PORT": str(self.auth_port),
            "PROFILE_GRPC_PORT": str(self.profile_port),
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_WORKERS": str(self.gateway_workers),
            "GATEWAY_THREADS": str(self.gateway_threads),
            "AUTH_GRPC_TARGET": f"{self.host}:{self.auth_port}",
            "PROFILE_GRPC_TARGET": f"{self.host}:{self.profile_port}",
            "AUTH_METRICS_PORT": _port_or_off(self.auth_metrics_port),
            "PROFILE_METRICS_PORT": _port_or_off(self.profile_metrics_port),
        }
        return {**env, **self.extra_env}

    def environment_of(self, name: str, base: Mapping[str, str]) -> dict[str, str]:
        """The environment of one process: base, then the stack's settings.

        Only the gateway gets PROMETHEUS_MULTIPROC_DIR: its gunicorn workers share
        metrics through it, while each service serves its own registry.
        """
        env = {**base, **self.environment()}
        env.pop(MULTIPROC_VARIABLE, None)
        if name == "gateway":
            env[MULTIPROC_VARIABLE] = str(self.gateway_metrics_dir)
        return env


def _port_or_off(port: int | None) -> str:
    return "off" if port is None else str(port)


@dataclass(frozen=True)
class BoundPorts:
    """The ports a process said it bound, in its first log lines."""

    port: int
    metrics_port: int | None = None


def reported_ports(name: str, line: str) -> BoundPorts | None:
    """The ports in `line` if it is the line with which process `name` says it listens.

    The services' start line is JSON with the gRPC "address" and the "metrics_port";
    the gateway's is gunicorn's own "Listening at:" line.
    """
    if name == "gateway":
        match = _GUNICORN_LISTENING.search(line)
        return None if match is None else BoundPorts(int(match.group(1)))
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or "address" not in record or "metrics_port" not in record:
        return None
    metrics = record["metrics_port"]
    return BoundPorts(
        int(str(record["address"]).rpartition(":")[2]),
        None if metrics is None else int(metrics),
    )


class _Output:
    """A process's output lines: appended to its log file, or copied to our stdout."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: IO[bytes] | None = None
        self._offset = 0
        self._lines: list[str] = []
        self._read = 0
        self._lock = threading.Lock()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")
            # Earlier runs of the same process appended before: only what comes next counts.
            self._offset = path.stat().st_size

    @property
    def stdout(self) -> IO[bytes] | int:
        """What the process writes to: the log file, else a pipe that we copy from."""
        return subprocess.PIPE if self._file is None else self._file

    def attach(self, popen: subprocess.Popen[bytes]) -> None:
        if popen.stdout is not None:
            threading.Thread(target=self._copy, args=(popen.stdout,), daemon=True).start()

    def _copy(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            with self._lock:
                self._lines.append(raw.decode(errors="replace"))

    def new_lines(self) -> list[str]:
        """Complete lines written since the last call."""
        if self.path is None:
            with self._lock:
                lines, self._read = self._lines[self._read :], len(self._lines)
            return lines
        with self.path.open("rb") as log:
            log.seek(self._offset)
            chunk = log.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        return complete.decode(errors="replace").splitlines()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    output: _Output


class Stack:
    """The three processes; `start()` returns once the gateway's /readyz answers 200."""

    def __init__(
        self,
        settings: StackSettings,
        *,
        log_dir: Path | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self._log_dir = log_dir
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._processes: list[_Process] = []

    def commands(self) -> list[tuple[str, list[str]]]:
        # Bind address, workers, threads and timeouts come from the environment
        # (GATEWAY_HOST, GATEWAY_PORT, GATEWAY_WORKERS, ...), as in production.
        gunicorn = [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:gateway.gunicorn_conf",
            "gateway.wsgi:create_app_from_env()",
        ]
        return [
            ("auth", [sys.executable, "-m", "auth_svc"]),
            ("profile", [sys.executable, "-m", "profile_svc"]),
            ("gateway", gunicorn),
        ]

    def log_path(self, name: str) -> Path | None:
        return None if self._log_dir is None else self._log_dir / f"{name}.log"

    def start(self, timeout: float = 30.0, *, only: tuple[str, ...] = NAMES) -> None:
        """Migrate SQLite files, then start the services in dependency order, each once the
        one it needs is serving (`only`: a subset, e.g. ("auth",))."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        migrate_sqlite_databases(self.settings.environment_of("auth", self._base_env))
        deadline = time.monotonic() + timeout
        try:
            for name, command in self.commands():
                if name in only:
                    self._spawn(name, command, self.settings.environment_of(name, self._base_env))
                    self._wait_until_serving(name, deadline)
        except BaseException:
            self.stop()
            raise

    def restart(self, name: str, timeout: float = 30.0) -> None:
        """Start process `name` again on the same port (after it died or was killed)."""
        old = self.process(name)
        if old.poll() is None:
            old.kill()
        old.wait()
        index = next(i for i, p in enumerate(self._processes) if p.name == name)
        self._spawn(
            name, dict(self.commands())[name], self.settings.environment_of(name, self._base_env)
        )
        # Keep the start order, which stop() walks backwards.
        self._processes[index].output.close()
        self._processes[index] = self._processes.pop()
        self._wait_until_serving(name, time.monotonic() + timeout)

    def _wait_until_serving(self, name: str, deadline: float) -> None:
        self._wait_until(self._bound(name), name, deadline)
        self._wait_until(self._readiness(name), name, deadline)

    def _bound(self, name: str) -> Callable[[], None]:
        """Waits for the line saying which ports `name` bound, and records them in settings."""
        output = self._find(name).output

        def reported() -> None:
            for line in output.new_lines():
                ports = reported_ports(name, line)
                if ports is not None:
                    self._record(name, ports)
                    return
            raise Unhealthy(f"{name} has not said where it listens yet")

        return reported

    def _record(self, name: str, ports: BoundPorts) -> None:
        s = self.settings
        if name == "auth":
            s = dataclasses.replace(s, auth_port=ports.port, auth_metrics_port=ports.metrics_port)
        elif name == "profile":
            s = dataclasses.replace(
                s, profile_port=ports.port, profile_metrics_port=ports.metrics_port
            )
        else:
            s = dataclasses.replace(s, gateway_port=ports.port)
        self.settings = s

    def _readiness(self, name: str) -> Callable[[], None]:
        s = self.settings
        # The services speak TLS when the stack's environment says so (GRPC_TLS_CA, ...).
        tls = ClientTls.from_env(Env(s.environment_of("gateway", self._base_env)))
        return {
            "auth": lambda: check_grpc(f"{s.host}:{s.auth_port}", timeout=1, tls=tls),
            "profile": lambda: check_grpc(f"{s.host}:{s.profile_port}", timeout=1, tls=tls),
            "gateway": lambda: check_http(f"{s.gateway_url}/readyz", timeout=2),
        }[name]

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        output = _Output(self.log_path(name))
        # A session of its own: Ctrl-C reaches the launcher only, which stops
        # the children in order instead of all of them at once.
        popen = subprocess.Popen(
            with_parent_death_signal(command),
            env=env,
            stdout=output.stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        output.attach(popen)
        self._processes.append(_Process(name, popen, output))

    def check_alive(self) -> None:
        for process in self._processes:
            code = process.popen.poll()
            if code is not None:
                where = self.log_path(process.name)
                hint = f"; see {where}" if where else ""
                raise StackError(f"{process.name} exited with status {code}{hint}")

    def _wait_until(self, ready: Callable[[], None], name: str, deadline: float) -> None:
        while True:
            self.check_alive()
            try:
                ready()
                return
            except Unhealthy:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"{name} was not ready in time")
            time.sleep(0.1)

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return self._find(name).popen

    def _find(self, name: str) -> _Process:
        for process in self._processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every process (gateway first), wait, SIGKILL what is left; the exit codes."""
        for process in reversed(self._processes):
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for process in reversed(self._processes):
            try:
                codes[process.name] = process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.popen.kill()
                codes[process.name] = process.popen.wait()
        for process in self._processes:
            process.output.close()
        self._processes.clear()
        shutil.rmtree(self.settings.gateway_metrics_dir, ignore_errors=True)
        return codes


def with_parent_death_signal(command: list[str]) -> list[str]:
    """command, made to get SIGTERM when the launcher dies, even by SIGKILL (Linux setpriv).

    An exec wrapper rather than preexec_fn: running Python between fork and exec
    in a threaded parent can deadlock.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def migrate_sqlite_databases(env: Mapping[str, str]) -> None:
    """Bring the services' SQLite files to their head revision: zero setup for `make run`.

    Other databases are left alone: they are migrated on purpose, with `make migrate`.
    """
    histories: list[tuple[MigrationSet, str]] = [
        (AUTH_MIGRATIONS, env["AUTH_DATABASE_URL"]),
        (PROFILE_MIGRATIONS, env["PROFILE_DATABASE_URL"]),
    ]
    for migrations, url in histories:
        if make_url(url).get_backend_name() != "sqlite":
            continue
        try:
            migrations.upgrade(url)
        except (SQLAlchemyError, CommandError) as exc:
            raise StackError(f"migrating {url} failed: {exc}") from exc


def curl_example(gateway_url: str) -> str:
    body = json.dumps({"username": "alice", "password": "correct horse battery"})
    post = "curl -s -X POST -H 'Content-Type: application/json'"
    read_token = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"  # noqa: S105 (a shell snippet, not a secret)
    return "\n".join(
        [
            f"{post} {gateway_url}/v1/auth/register -d '{body}'",
            f"TOKEN=$({post} {gateway_url}/v1/auth/login -d '{body}' | {read_token})",
            f'curl -s {gateway_url}/v1/profile -H "Authorization: Bearer $TOKEN"',
        ]
    )
