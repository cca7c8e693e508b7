"""GET /v1/profile through the gateway (A) against the 2-worker Flask monolith (B), A B A B.

    python -m bench.ab [--backend sqlite|mariadb] [--rounds 3] [--seconds 8]
                       [--memory 10000,100000] [--json out.json]

Issue 12's comparison, in one run: the `make run` stack (gateway 2 gunicorn workers x 8
threads, auth_svc, profile_svc) and bench.apps' reference under the same gunicorn settings,
both up at once, measured in turns so that the machine's other work falls on both alike.
Every round is printed (no best-of): req/s, p50, p99 and the server CPU per request of each
process (from /proc), so that a change can be judged by CPU time on a busy machine.
With --memory, each process's RSS is read after the given numbers of requests through the
gateway (no growth with traffic).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from auth_svc.config import Argon2Params
from auth_svc.passwords import PasswordHasher
from bench import seed
from bench.measure import (
    Result,
    cpu_by_process,
    lua_rotating_requests,
    rss_by_process,
    run_wrk,
    run_wrk_requests,
)
from bench.run import (
    GATEWAY_THREADS,
    GATEWAY_WORKERS,
    HTTP_CONNECTIONS,
    PASSWORD,
    TOKENS,
    Target,
    databases,
    gunicorn_app,
    log,
    mint_tokens,
    running_stack,
)

USERS = 1000
WARM_SECONDS = 4.0


@dataclass
class Row:
    """One measurement: the load result and each serving process's CPU ms per request."""

    name: str
    result: Result
    cpu_ms_by_process: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_ms(self) -> float:
        return sum(self.cpu_ms_by_process.values())

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.cpu_ms_by_process.items())
        return (
            f"{self.name}: {self.result.rps:,.0f} req/s, p50 {self.result.p50_ms:.1f} ms, "
            f"p99 {self.result.p99_ms:.1f} ms, errors {self.result.errors}, "
            f"CPU ms/req {self.cpu_ms:.2f} ({parts})"
        )


def measured(
    name: str, url: str, script: str, processes: dict[str, list[int]], seconds: float
) -> Row:
    before = cpu_by_process(processes)
    result = run_wrk(url, script, seconds=seconds, connections=HTTP_CONNECTIONS)
    after = cpu_by_process(processes)
    served = max(1, result.requests - result.errors)
    per_process = {k: 1000 * (after[k] - before[k]) / served for k in processes}
    return Row(name, result, per_process)


def gateway_processes(target: Target) -> dict[str, list[int]]:
    """The stack's processes by role; the gateway's workers are its master's children."""
    assert target.stack is not None
    return {
        "gateway": [target.stack.process("gateway").pid],
        "profile": [target.stack.process("profile").pid],
        "auth": [target.stack.process("auth").pid],
    }


@contextlib.contextmanager
def stack_and_reference(backend: str, mysql_server_url: str) -> Iterator[tuple[Target, str, int]]:
    with contextlib.ExitStack() as cleanup:
        state = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench-ab-")))
        auth_db, profile_db = cleanup.enter_context(databases(backend, state, mysql_server_url))
        target = cleanup.enter_context(running_stack(state, auth_db, profile_db))
        hasher = PasswordHasher(Argon2Params())
        seed.seed(auth_db, profile_db, first=1, last=USERS, password_hash=hasher.hash(PASSWORD))
        env = {"BENCH_PROFILE_DATABASE_URL": profile_db, "BENCH_KEYS_DIR": str(target.keys_dir)}
        url, pid = cleanup.enter_context(
            gunicorn_app("reference_app", workers=GATEWAY_WORKERS, threads=GATEWAY_THREADS, env=env)
        )
        yield target, url, pid


@contextlib.contextmanager
def granian_gateway(target: Target) -> Iterator[tuple[str, int]]:
    """The same gateway app under granian (WSGI, 2 workers x 8 blocking threads), with the
    gunicorn gateway's environment (upstreams, keys, settings) and its own metrics folder."""
    assert target.stack is not None
    raw = Path(f"/proc/{target.stack.process('gateway').pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    with tempfile.TemporaryDirectory(prefix="bench-granian-") as metrics:
        port = free_port()
        env.update({"PROMETHEUS_MULTIPROC_DIR": metrics, "GATEWAY_PORT": str(port)})
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "granian"),
                "--interface",
                "wsgi",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(GATEWAY_WORKERS),
                "--blocking-threads",
                str(GATEWAY_THREADS),
                "--no-access-log",
                "gateway.wsgi:create_app_from_env",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(url)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until_answers(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1):  # noqa: S310
                return
        except urllib.error.HTTPError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="sqlite", choices=("sqlite", "mariadb"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--memory", default="", help="e.g. 10000,100000 requests")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--granian", action="store_true", help="also the gateway under granian (row A2)"
    )
    parser.add_argument("--mysql", default="mysql+pymysql://root@127.0.0.1:3306/")
    args = parser.parse_args(argv)
    rows: list[Row] = []
    memory: dict[str, dict[str, float]] = {}
    with (
        contextlib.ExitStack() as cleanup,
        stack_and_reference(args.backend, args.mysql) as (target, ref_url, ref_pid),
    ):
        sample = random.Random(0).sample(range(1, USERS + 1), min(TOKENS, USERS))  # noqa: S311
        tokens = mint_tokens(target, sample)
        script = lua_rotating_requests(
            "GET", "/v1/profile", headers=[{"Authorization": f"Bearer {t}"} for t in tokens]
        )
        gateway = gateway_processes(target)
        reference = {"reference": [ref_pid]}
        turns = [("A gateway", target.gateway_url, gateway), ("B reference", ref_url, reference)]
        if args.granian:
            granian_url, granian_pid = cleanup.enter_context(granian_gateway(target))
            granian = {**gateway, "gateway": [granian_pid]}
            turns.insert(1, ("A2 granian gateway", granian_url, granian))
            run_wrk(granian_url, script, seconds=WARM_SECONDS, connections=HTTP_CONNECTIONS)
        # Warm both (each gateway worker sees most tokens once), then take turns.
        run_wrk(target.gateway_url, script, seconds=WARM_SECONDS, connections=HTTP_CONNECTIONS)
        run_wrk(ref_url, script, seconds=WARM_SECONDS, connections=HTTP_CONNECTIONS)
        for n in range(1, args.rounds + 1):
            for name, url, processes in turns:
                row = measured(f"{name} #{n}", url, script, processes, args.seconds)
                log(row.line())
                rows.append(row)
        for count in [int(c) for c in args.memory.split(",") if c]:
            done = sum(r.result.requests for r in rows if r.name.startswith("A"))
            if count > done:
                run_wrk_requests(target.gateway_url, script, requests=count - done)
                rows.append(Row(f"A memory fill to {count}", Result(count - done, 0, 0, 0, 0)))
            memory[str(count)] = rss_by_process(gateway)
            log(f"RSS MiB after {count:,} requests: {memory[str(count)]}")
    summary = summarize(rows)
    print(summary)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "backend": args.backend,
                    "rows": [
                        {
                            "name": r.name,
                            **asdict(r.result),
                            "cpu_ms_by_process": r.cpu_ms_by_process,
                        }
                        for r in rows
                    ],
                    "memory_rss_mib": memory,
                },
                indent=2,
            )
        )
    return 0


def summarize(rows: list[Row]) -> str:
    a = [r for r in rows if r.name.startswith("A gateway")]
    b = [r for r in rows if r.name.startswith("B reference")]
    a2 = [r for r in rows if r.name.startswith("A2 ")]
    lines = [row.line() for row in a + a2 + b]
    pairs = list(zip(a, b, strict=True))
    if pairs:
        rps = [x.result.rps / y.result.rps for x, y in pairs]
        p99 = [x.result.p99_ms / y.result.p99_ms for x, y in pairs]
        cpu = [x.cpu_ms / y.cpu_ms for x, y in pairs]
        lines.append(
            "ratios per round (A/B): throughput "
            + " ".join(f"{v:.2f}" for v in rps)
            + "; p99 "
            + " ".join(f"{v:.2f}" for v in p99)
            + "; CPU/request "
            + " ".join(f"{v:.2f}" for v in cpu)
        )
    if a2:
        lines.append(
            "granian / reference per round: throughput "
            + " ".join(f"{x.result.rps / y.result.rps:.2f}" for x, y in zip(a2, b, strict=True))
            + "; CPU/request "
            + " ".join(f"{x.cpu_ms / y.cpu_ms:.2f}" for x, y in zip(a2, b, strict=True))
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
