"""Start auth_svc, profile_svc and the gateway (under gunicorn or granian, GATEWAY_SERVER) as real
processes, and stop them."""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from alembic.util import CommandError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from auth_svc import config as auth_config
from auth_svc.migrations import AUTH_MIGRATIONS
from authgate_common import settings as shared_settings
from authgate_common.config import ConfigError, Env
from authgate_common.healthcheck import Unhealthy, check_grpc, check_http
from authgate_common.migrations import MigrationSet
from authgate_common.tls import ClientTls
from devstack.forwarder import TcpForwarder
from gateway import config as gateway_config
from profile_svc import config as profile_config
from profile_svc.migrations import PROFILE_MIGRATIONS

MULTIPROC_VARIABLE = gateway_config.PROMETHEUS_MULTIPROC_DIR.name
# The state folder holds password hashes (the SQLite files) and private keys:
# owner only, for what the launcher makes and for what the children make.
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
CHILD_UMASK = 0o077
NAMES = ("auth", "profile", "gateway")
# How often a start looks again for a process's port line and readiness: each process takes
# a few tenths of a second to start, and the next waits for it.
POLL_SECONDS = 0.02
# Who dials whom at an address fixed at its start: (callee, caller, the caller's variable).
# auth_svc calls the profile service for account deletions; the profile service fetches
# auth's keys and follows its revocation feed.
_DIALS = (
    ("profile", "auth", shared_settings.PROFILE_GRPC_TARGET.name),
    ("auth", "profile", shared_settings.AUTH_GRPC_TARGET.name),
)
# The gateway's server, once it has bound: gunicorn's master "[INFO] Listening at:
# http://127.0.0.1:8080 (123)", granian's (gateway.granian_serve, which binds the socket
# itself so that the port is the one the OS gave) "[INFO] Listening at: http://[::1]:8080".
_GATEWAY_LISTENING = re.compile(r"Listening at: https?://\S*:(\d+)(?:\s|$)")


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
    gateway_port: int = gateway_config.GATEWAY_PORT.default
    auth_port: int = auth_config.AUTH_SERVICE.port.default
    profile_port: int = profile_config.PROFILE_SERVICE.port.default
    gateway_workers: int = gateway_config.GATEWAY_WORKERS.default
    gateway_threads: int = gateway_config.GATEWAY_THREADS.default
    # gunicorn or granian; None: GATEWAY_SERVER of the environment the stack starts in.
    gateway_server: str | None = None
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
            "AUTH_TOTP_KEY_FILE": str(state / "totp.key"),
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
        if self.gateway_server is not None:
            env[gateway_config.GATEWAY_SERVER.name] = self.gateway_server
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
    the gateway's is its server's own "Listening at:" line (gunicorn's or granian's).
    """
    if name == "gateway":
        match = _GATEWAY_LISTENING.search(line)
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


# How each process is started; bind addresses, workers and the rest come from the
# environment (GATEWAY_HOST, GATEWAY_PORT, GATEWAY_WORKERS, ...), as in production.
AUTH_COMMAND = [sys.executable, "-m", "auth_svc"]
PROFILE_COMMAND = [sys.executable, "-m", "profile_svc"]
GATEWAY_COMMANDS = {
    "gunicorn": [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:gateway.gunicorn_conf",
        "gateway.wsgi:create_app_from_env()",
    ],
    "granian": [sys.executable, "-m", "gateway.granian_serve"],
}


def gateway_command(env: Mapping[str, str]) -> list[str]:
    """How the gateway is started under the server its environment names (GATEWAY_SERVER)."""
    return GATEWAY_COMMANDS[gateway_config.GATEWAY_SERVER.read(Env(env))]


class ProcessGroup:
    """Named processes started in order, each once the one before is ready (or beside it, see
    `starts_with_previous`); stopped in reverse.

    Subclasses say what runs (`commands`), with which environment (`environment_of`), when
    it is ready (`readiness`), what a process says once it has bound its ports (`bound`),
    and what to do before the first start and after the stop.
    """

    def __init__(
        self, *, log_dir: Path | None = None, base_env: Mapping[str, str] | None = None
    ) -> None:
        self._log_dir = log_dir
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._processes: list[_Process] = []

    def commands(self) -> list[tuple[str, list[str]]]:
        raise NotImplementedError

    def starts_with_previous(self, name: str) -> bool:
        """Whether `name` may start beside the process before it, not once that one is
        ready: replicas of one kind on fixed ports need nothing of each other."""
        return False

    def environment_of(self, name: str) -> dict[str, str]:
        raise NotImplementedError

    def readiness(self, name: str) -> Callable[[], None]:
        raise NotImplementedError

    def bound(self, name: str, ports: BoundPorts) -> None:
        """Process `name` said it bound ports (see `reports_ports`)."""

    def reports_ports(self, name: str) -> bool:
        """Whether to wait for `name`'s line saying which ports it bound (port 0 used)."""
        return False

    def prepare(self) -> None:
        """Runs once before the first process starts (migrations, folders)."""

    def cleanup(self) -> None:
        """Runs once after every process has stopped."""

    def banner(self) -> str:
        """What `launch` prints once every process runs: where to reach them."""
        raise NotImplementedError

    def log_path(self, name: str) -> Path | None:
        return None if self._log_dir is None else self._log_dir / f"{name}.log"

    def start(self, timeout: float = 30.0, *, only: Collection[str] | None = None) -> None:
        """Prepare, then start the processes in order, each once the one before is ready
        unless it `starts_with_previous` (`only`: a subset, e.g. ("auth",))."""
        deadline = time.monotonic() + timeout
        try:
            self.prepare()
            starting: list[str] = []
            for name, command in self.commands():
                if only is not None and name not in only:
                    continue
                if not self.starts_with_previous(name):
                    for started in starting:
                        self._wait_until_serving(started, deadline)
                    starting.clear()
                self._spawn(name, command, self.environment_of(name))
                starting.append(name)
            for started in starting:
                self._wait_until_serving(started, deadline)
        except BaseException:
            self.stop()
            raise

    def restart(self, *names: str, timeout: float = 30.0) -> None:
        """Start the processes `names` again on their ports (after they died or were killed),
        side by side, and wait until each serves."""
        for name in names:
            self._start_again(name)
        deadline = time.monotonic() + timeout
        for name in names:
            # Only these: others may be down on purpose (a test stopping several).
            self._wait_until_serving(name, deadline, only=name)

    def _start_again(self, name: str) -> None:
        old = self.process(name)
        if old.poll() is None:
            old.kill()
        old.wait()
        index = next(i for i, p in enumerate(self._processes) if p.name == name)
        self._spawn(name, dict(self.commands())[name], self.environment_of(name))
        # Keep the start order, which stop() walks backwards.
        self._processes[index].output.close()
        self._processes[index] = self._processes.pop()

    def kill(self, name: str) -> None:
        """SIGKILL process `name` with every process it started (gunicorn's workers too), as
        when its machine or container dies; `restart` brings it back."""
        popen = self.process(name)
        with contextlib.suppress(ProcessLookupError):
            # Each process leads a session (and process group) of its own: see _spawn.
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()

    def _wait_until_serving(self, name: str, deadline: float, *, only: str | None = None) -> None:
        if self.reports_ports(name):
            self._wait_until(self._reported(name), name, deadline, only=only)
        self._wait_until(self.readiness(name), name, deadline, only=only)

    def _reported(self, name: str) -> Callable[[], None]:
        """Waits for the line saying which ports `name` bound, and hands them to `bound`."""
        output = self._find(name).output

        def reported() -> None:
            for line in output.new_lines():
                ports = reported_ports(name, line)
                if ports is not None:
                    self.bound(name, ports)
                    return
            raise Unhealthy(f"{name} has not said where it listens yet")

        return reported

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
            umask=CHILD_UMASK,
        )
        output.attach(popen)
        self._processes.append(_Process(name, popen, output))

    def check_alive(self, only: str | None = None) -> None:
        """Raise StackError if a process (or the one named `only`) has exited."""
        for process in self._processes:
            if only is not None and process.name != only:
                continue
            code = process.popen.poll()
            if code is not None:
                where = self.log_path(process.name)
                hint = f"; see {where}" if where else ""
                raise StackError(f"{process.name} exited with status {code}{hint}")

    def _wait_until(
        self, ready: Callable[[], None], name: str, deadline: float, *, only: str | None = None
    ) -> None:
        while True:
            self.check_alive(only=only)
            try:
                ready()
                return
            except Unhealthy:
                pass
            if time.monotonic() > deadline:
                raise StackError(f"{name} was not ready in time")
            time.sleep(POLL_SECONDS)

    def process(self, name: str) -> subprocess.Popen[bytes]:
        return self._find(name).popen

    def _find(self, name: str) -> _Process:
        for process in self._processes:
            if process.name == name:
                return process
        raise KeyError(name)

    def stop(self, timeout: float = 15.0) -> dict[str, int | None]:
        """SIGTERM every process (last started first), wait, SIGKILL what is left; the exit
        codes."""
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
        self.cleanup()
        return codes


class Stack(ProcessGroup):
    """The three processes; `start()` returns once the gateway's /readyz answers 200."""

    def __init__(
        self,
        settings: StackSettings,
        *,
        log_dir: Path | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(log_dir=log_dir, base_env=base_env)
        self.settings = settings
        # On port 0: the port held for each service, by its name (see prepare).
        self._forwarders: dict[str, TcpForwarder] = {}

    def commands(self) -> list[tuple[str, list[str]]]:
        gateway = gateway_command(self.environment_of("gateway"))
        return [("auth", AUTH_COMMAND), ("profile", PROFILE_COMMAND), ("gateway", gateway)]

    def environment_of(self, name: str) -> dict[str, str]:
        env = self.settings.environment_of(name, self._base_env)
        for callee, caller, variable in _DIALS:
            if name == caller and callee in self._forwarders:
                env[variable] = self._forwarders[callee].address
        return env

    def starts_with_previous(self, name: str) -> bool:
        return name == "profile" and "auth" in self._forwarders

    def prepare(self) -> None:
        """Make the state folder and SQLite files private, then migrate the SQLite files
        (zero setup); other databases are migrated on purpose."""
        environment = self.environment_of("auth")
        make_private_dir(self.settings.state_dir)
        make_sqlite_files_private(environment)
        migrate_sqlite_databases(environment)
        # On port 0 auth_svc and the profile service, which dial each other at addresses
        # fixed when they start, each get a port held here for the other (forwarded once
        # that one has bound its own), so that they start side by side, each once.
        s = self.settings
        ports = {"auth": s.auth_port, "profile": s.profile_port}
        for callee, _, variable in _DIALS:
            if ports[callee] == 0 and variable not in s.extra_env:
                self._forwarders[callee] = TcpForwarder(host=s.host)

    def reports_ports(self, name: str) -> bool:
        return True

    def bound(self, name: str, ports: BoundPorts) -> None:
        """Record the ports a process bound, so that a restart binds the same ones."""
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
        if name in self._forwarders:
            self._forwarders[name].forward_to(s.host, ports.port)

    def readiness(self, name: str) -> Callable[[], None]:
        s = self.settings
        # The services speak TLS when the stack's environment says so (GRPC_TLS_CA, ...).
        tls = ClientTls.from_env(Env(self.environment_of("gateway")))
        return {
            "auth": lambda: check_grpc(f"{s.host}:{s.auth_port}", timeout=1, tls=tls),
            "profile": lambda: check_grpc(f"{s.host}:{s.profile_port}", timeout=1, tls=tls),
            "gateway": lambda: check_http(f"{s.gateway_url}/readyz", timeout=2),
        }[name]

    def cleanup(self) -> None:
        shutil.rmtree(self.settings.gateway_metrics_dir, ignore_errors=True)
        for forwarder in self._forwarders.values():
            forwarder.close()
        self._forwarders.clear()

    def banner(self) -> str:
        s = self.settings
        url = s.gateway_url
        metrics = s.metrics_urls()

        def metrics_of(name: str) -> str:
            return f"   (metrics {metrics[name]})" if name in metrics else ""

        return (
            f"\nauthgate is running (state in {s.state_dir.resolve()}):\n"
            f"  gateway      {url}   (API docs {url}/docs, readiness {url}/readyz,"
            f" metrics {metrics['gateway']})\n"
            f"  auth gRPC    {s.host}:{s.auth_port}{metrics_of('auth')}\n"
            f"  profile gRPC {s.host}:{s.profile_port}{metrics_of('profile')}\n\n"
            f"Try it:\n{curl_example(url)}\n\nCtrl-C stops all three.\n"
        )


def launch(make_group: Callable[[Env], ProcessGroup], *, timeout: float) -> int:
    """`make run` / `make cluster`: the group made from the environment, started in the
    foreground until Ctrl-C/SIGTERM or a process dies; the exit code (2: configuration)."""
    try:
        group = make_group(Env.from_os())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        group.start(timeout=timeout)
    except StackError as exc:
        print(f"authgate did not start: {exc}", file=sys.stderr)
        return 1
    # After the start: with the ports the processes bound (a 0 picks a free one).
    print(group.banner(), flush=True)
    code = 0
    while not stop.wait(0.5):
        try:
            group.check_alive()
        except StackError as exc:
            print(f"stopping: {exc}", file=sys.stderr)
            code = 1
            break
    print("stopping authgate ...", file=sys.stderr, flush=True)
    group.stop()
    return code


def with_parent_death_signal(command: list[str]) -> list[str]:
    """command, made to get SIGTERM when the launcher dies, even by SIGKILL (Linux setpriv).

    An exec wrapper rather than preexec_fn: running Python between fork and exec
    in a threaded parent can deadlock.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return command
    return [setpriv, "--pdeathsig", "TERM", "--", *command]


def make_private_dir(directory: Path) -> None:
    """directory, made or tightened to owner-only (mkdir's mode is subject to the umask)."""
    directory.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(directory, PRIVATE_DIR_MODE)


def sqlite_files(env: Mapping[str, str]) -> list[Path]:
    """The services' SQLite database files named by env (other backends have none)."""
    files = []
    for variable in ("AUTH_DATABASE_URL", "PROFILE_DATABASE_URL"):
        url = make_url(env[variable])
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            files.append(Path(url.database))
    return files


def make_sqlite_files_private(env: Mapping[str, str]) -> None:
    """The SQLite files, created empty at 0600 or tightened to it: they hold the password
    hashes. Run before migrating, so no file is ever readable by others; the journals
    SQLite makes later take the database file's mode."""
    for database in sqlite_files(env):
        database.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE))
        os.chmod(database, PRIVATE_FILE_MODE)


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
