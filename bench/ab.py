"""GET /v1/profile through the gateway (A) against the 2-worker Flask monolith (B), A B A B.

    python -m bench.ab [--backends sqlite,mariadb] [--rounds 3] [--seconds 8]
                       [--memory 10000,100000] [--granian] [--json out.json]
                       [--docs docs/BENCHMARKS.md]

Issue 12's comparison, in one run: the `make run` stack (gateway 2 gunicorn workers x 8
threads, auth_svc, profile_svc) and bench.apps' reference under the same gunicorn settings,
both up at once, measured in turns so that the machine's other work falls on both alike.
Every round is printed (no best-of): req/s, p50, p99 and the server CPU per request of each
process (from /proc), so that a change can be judged by CPU time on a busy machine.
With --memory, each process's RSS is read after the given numbers of requests through the
gateway (no growth with traffic). With --granian, the same gateway app also runs under
granian (row A2: `python -m gateway.granian_serve`, what GATEWAY_SERVER=granian starts, on the
same upstreams and settings) to compare the two servers by measurement. With
--docs, the report replaces that file's bench-ab section (`make bench` does this).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auth_svc.config import Argon2Params
from auth_svc.passwords import PasswordHasher
from bench import seed
from bench.__main__ import DEFAULT_MYSQL_SERVER
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
from devstack.launcher import GATEWAY_COMMANDS, reported_ports

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
    """The same gateway app under granian, started as GATEWAY_SERVER=granian starts it
    (`python -m gateway.granian_serve`, 2 workers x 8 blocking threads), with the gunicorn
    gateway's environment (upstreams, keys, settings), a metrics folder of its own and port
    0: the port is read from its "Listening at:" line, as the launcher reads it."""
    assert target.stack is not None
    raw = Path(f"/proc/{target.stack.process('gateway').pid}/environ").read_bytes()
    env = dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)
    with tempfile.TemporaryDirectory(prefix="bench-granian-") as folder:
        env.update({"PROMETHEUS_MULTIPROC_DIR": f"{folder}/metrics", "GATEWAY_PORT": "0"})
        log_path = Path(folder) / "gateway.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                GATEWAY_COMMANDS["granian"], env=env, stdout=log_file, stderr=subprocess.STDOUT
            )
        try:
            port = _reported_port(process, log_path)
            url = f"http://127.0.0.1:{port}"
            wait_until_answers(url)
            yield url, process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def _reported_port(process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        for line in log_path.read_text(errors="replace").splitlines():
            ports = reported_ports("gateway", line)
            if ports is not None:
                return ports.port
        time.sleep(0.1)
    raise RuntimeError(f"granian gateway did not say where it listens; see {log_path}")


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


@dataclass
class BackendRun:
    backend: str
    rows: list[Row] = field(default_factory=list)
    # RSS in MiB of each process after the given number of gateway requests.
    memory: dict[int, dict[str, float]] = field(default_factory=dict)


def run_backend(
    backend: str, *, rounds: int, seconds: float, memory: list[int], granian: bool, mysql: str
) -> BackendRun:
    run = BackendRun(backend)
    with (
        contextlib.ExitStack() as cleanup,
        stack_and_reference(backend, mysql) as (target, ref_url, ref_pid),
    ):
        sample = random.Random(0).sample(range(1, USERS + 1), min(TOKENS, USERS))  # noqa: S311
        tokens = mint_tokens(target, sample)
        script = lua_rotating_requests(
            "GET", "/v1/profile", headers=[{"Authorization": f"Bearer {t}"} for t in tokens]
        )
        gateway = gateway_processes(target)
        turns = [
            (GATEWAY, target.gateway_url, gateway),
            (REFERENCE, ref_url, {"reference": [ref_pid]}),
        ]
        if granian:
            granian_url, granian_pid = cleanup.enter_context(granian_gateway(target))
            turns.insert(1, (GRANIAN, granian_url, {**gateway, "gateway": [granian_pid]}))
        # Warm each (every gateway worker sees most tokens once), then take turns.
        sent = 0
        for _name, url, _processes in turns:
            warm = run_wrk(url, script, seconds=WARM_SECONDS, connections=HTTP_CONNECTIONS)
            sent += warm.requests if url == target.gateway_url else 0
        # The first memory reading before the rounds (so that it is taken at its count),
        # the others after them.
        for count in memory[:1]:
            sent = _memory_reading(run, target, script, gateway, count, sent)
        for n in range(1, rounds + 1):
            for name, url, processes in turns:
                row = measured(f"{name} #{n}", url, script, processes, seconds)
                log(f"{backend}: {row.line()}")
                run.rows.append(row)
                sent += row.result.requests if name == GATEWAY else 0
        for count in memory[1:]:
            sent = _memory_reading(run, target, script, gateway, count, sent)
    return run


def _memory_reading(
    run: BackendRun,
    target: Target,
    script: str,
    gateway: dict[str, list[int]],
    count: int,
    sent: int,
) -> int:
    """Send requests through the gateway until `count` were sent, then read every RSS under
    the number actually sent; the new total."""
    if count > sent:
        sent += run_wrk_requests(target.gateway_url, script, requests=count - sent)
    run.memory[sent] = rss_by_process(gateway)
    log(f"{run.backend}: RSS MiB after {sent:,} requests: {run.memory[sent]}")
    return sent


GATEWAY = "A gateway"
GRANIAN = "A2 gateway under granian"
REFERENCE = "B reference"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--memory", default="", help="e.g. 10000,100000 requests")
    parser.add_argument("--json", type=Path, help="raw figures (default with --docs: beside it)")
    parser.add_argument("--docs", type=Path, help="rewrite this file's bench-ab section")
    parser.add_argument(
        "--granian", action="store_true", help="also the gateway under granian (row A2)"
    )
    parser.add_argument(
        "--mysql", default=os.environ.get("AUTHGATE_TEST_MYSQL_URL", DEFAULT_MYSQL_SERVER)
    )
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    memory = sorted(int(c) for c in args.memory.split(",") if c)
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    runs = [
        run_backend(
            backend,
            rounds=args.rounds,
            seconds=args.seconds,
            memory=memory,
            granian=args.granian,
            mysql=args.mysql,
        )
        for backend in backends
    ]
    text = render(runs, started=started, load=(load_before, os.getloadavg()), args=args)
    print(text)
    raw = args.json or (args.docs.parent / "bench-ab.json" if args.docs else None)
    if raw:
        raw.write_text(json.dumps([_as_json(run) for run in runs], indent=2) + "\n")
    if args.docs:
        write_section(args.docs, text)
    return 0


def _as_json(run: BackendRun) -> dict[str, Any]:
    return {
        "backend": run.backend,
        "rows": [
            {"name": r.name, **asdict(r.result), "cpu_ms_by_process": r.cpu_ms_by_process}
            for r in run.rows
        ],
        "memory_rss_mib": {str(k): v for k, v in run.memory.items()},
    }


BEGIN = (
    "<!-- bench-ab:begin (python -m bench.ab --docs rewrites everything down to bench-ab:end) -->"
)
END = "<!-- bench-ab:end -->"


def write_section(path: Path, text: str) -> None:
    current = path.read_text() if path.exists() else ""
    section = f"{BEGIN}\n\n{text}\n\n{END}"
    if BEGIN in current and END in current:
        head, rest = current.split(BEGIN, 1)
        current = head + section + rest.split(END, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + section + "\n"
    path.write_text(current)


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def _spread(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def render(
    runs: list[BackendRun],
    *,
    started: datetime,
    load: tuple[tuple[float, ...], tuple[float, ...]],
    args: argparse.Namespace,
) -> str:
    lines = [
        f"Run of {started:%Y-%m-%d %H:%M} UTC: {args.rounds} rounds of {args.seconds:g} s per "
        f"target, taken in turns (A B A B ...); load average before "
        f"{' '.join(f'{v:.2f}' for v in load[0])}, after "
        f"{' '.join(f'{v:.2f}' for v in load[1])}. Every round is shown (no best-of).",
    ]
    for run in runs:
        lines += ["", f"### {run.backend}", ""]
        lines += [
            "| round | req/s | p50 ms | p99 ms | errors | server CPU ms/request | by process |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for row in run.rows:
            parts = ", ".join(f"{k} {v:.2f}" for k, v in row.cpu_ms_by_process.items())
            r = row.result
            lines.append(
                f"| {row.name} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} "
                f"| {row.cpu_ms:.2f} | {parts} |"
            )
        a = [r for r in run.rows if r.name.startswith(GATEWAY)]
        b = [r for r in run.rows if r.name.startswith(REFERENCE)]
        pairs = list(zip(a, b, strict=True))
        if pairs:
            rps = [x.result.rps / y.result.rps for x, y in pairs]
            p99 = [x.result.p99_ms / y.result.p99_ms for x, y in pairs]
            cpu = [x.cpu_ms / y.cpu_ms for x, y in pairs]
            lines += [
                "",
                "Per round, gateway / reference (targets of issue 12; the median decides):",
                "",
                f"- throughput {_spread(rps)} (target >= 0.80): "
                f"{_verdict(statistics.median(rps) >= 0.8)}",
                f"- p99 {_spread(p99)} (target <= 1.50): {_verdict(statistics.median(p99) <= 1.5)}",
                f"- server CPU per request {_spread(cpu)} (target <= 1.25): "
                f"{_verdict(statistics.median(cpu) <= 1.25)}",
            ]
        granian = [r for r in run.rows if r.name.startswith(GRANIAN)]
        if granian and b:
            lines.append(
                "- (no target) the gateway under granian / reference: throughput "
                + _spread([x.result.rps / y.result.rps for x, y in zip(granian, b, strict=True)])
                + ", CPU per request "
                + _spread([x.cpu_ms / y.cpu_ms for x, y in zip(granian, b, strict=True)])
            )
        if len(run.memory) >= 2:
            counts = sorted(run.memory)
            first, last = run.memory[counts[0]], run.memory[counts[-1]]
            lines += [
                "",
                f"Resident memory (MiB) after {counts[0]:,} and {counts[-1]:,} requests "
                f"through the gateway (target: within 10%):",
                "",
                "| process | " + " | ".join(f"{c:,}" for c in counts) + " | growth |",
                "|---|" + "---:|" * (len(counts) + 1),
            ]
            for name in first:
                growth = last.get(name, 0) / first[name] - 1 if first[name] else 0
                cells = " | ".join(f"{run.memory[c].get(name, 0):.1f}" for c in counts)
                lines.append(f"| {name} | {cells} | {100 * growth:+.1f}% |")
            worst = max((last.get(n, 0) / first[n] - 1 for n in first if first[n]), default=0.0)
            lines.append("")
            lines.append(f"- largest growth {100 * worst:+.1f}%: {_verdict(worst <= 0.10)}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
