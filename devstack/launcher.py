"""Start auth_svc, profile_svc and the gateway (under gunicorn) as real processes, and stop them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from authgate_common.healthcheck import Unhealthy, check_grpc, check_http


class StackError(RuntimeError):
    """A process of the stack did not start or stopped unexpectedly."""


@dataclass(frozen=True)
class StackSettings:
    """Where the three processes listen and keep their state."""

    state_dir: Path
    host: str = "127.0.0.1"
    gateway_port: int = 8080
    auth_port: int = 50051
    profile_port: int = 50052
    gateway_workers: int = 2
    gateway_threads: int = 8
    auth_database_url: str | None = None
    profile_database_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

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
            "AUTH_GRPC_TARGET": f"{self.host}:{self.auth_port}",
            "PROFILE_GRPC_TARGET": f"{self.host}:{self.profile_port}",
        }
        return {**env, **self.extra_env}


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]


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
        self._logs: list[IO[bytes]] = []

    def commands(self) -> list[tuple[str, list[str]]]:
        s = self.settings
        gunicorn = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{s.host}:{s.gateway_port}",
            "--workers",
            str(s.gateway_workers),
            "--threads",
            str(s.gateway_threads),
            "--no-control-socket",  # gunicorn 27: one shared path would clash between stacks
            "--worker-class",
            "gthread",
            "--graceful-timeout",
            "10",
            "--limit-request-field_size",
            "16384",
            "gateway.wsgi:create_app_from_env()",
        ]
        return [
            ("auth", [sys.executable, "-m", "auth_svc"]),
            ("profile", [sys.executable, "-m", "profile_svc"]),
            ("gateway", gunicorn),
        ]

    def log_path(self, name: str) -> Path | None:
        return None if self._log_dir is None else self._log_dir / f"{name}.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the services in dependency order, each once the one it needs is serving."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + timeout
        try:
            for name, command in self.commands():
                self._spawn(name, command, self._environment())
                self._wait_until(self._readiness(name), name, deadline)
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
        self._spawn(name, dict(self.commands())[name], self._environment())
        # Keep the start order, which stop() walks backwards.
        self._processes[index] = self._processes.pop()
        self._wait_until(self._readiness(name), name, time.monotonic() + timeout)

    def _environment(self) -> dict[str, str]:
        return {**self._base_env, **self.settings.environment()}

    def _readiness(self, name: str) -> Callable[[], None]:
        s = self.settings
        return {
            "auth": lambda: check_grpc(f"{s.host}:{s.auth_port}", timeout=1),
            "profile": lambda: check_grpc(f"{s.host}:{s.profile_port}", timeout=1),
            "gateway": lambda: check_http(f"{s.gateway_url}/readyz", timeout=2),
        }[name]

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        output: IO[bytes] | None = None
        path = self.log_path(name)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            output = path.open("ab")
            self._logs.append(output)
        # A session of its own: Ctrl-C reaches the launcher only, which stops
        # the children in order instead of all of them at once.
        popen = subprocess.Popen(
            command,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        self._processes.append(_Process(name, popen))

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
        for process in self._processes:
            if process.name == name:
                return process.popen
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
        for log in self._logs:
            log.close()
        self._processes.clear()
        self._logs.clear()
        return codes


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
