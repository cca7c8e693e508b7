"""Drivers that put load on a target and report requests/s, p50 and p99.

- wrk (a real HTTP load tool, C, from Debian) with a Lua script for HTTP targets;
- a multi-threaded Python gRPC client for the direct calls;
- a thread pool around argon2 for the bare cost of a login.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Result:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    concurrency: int = 0
    # CPU time the serving processes spent per successful request: unlike req/s, hardly
    # moved by other work on a shared machine.
    cpu_ms: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


class BenchError(RuntimeError):
    pass


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the processes and their children (gunicorn workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        for process in (pid, *_children(pid)):
            try:
                fields = Path(f"/proc/{process}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def cpu_by_process(processes: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds per named group of processes (each with its children)."""
    return {name: cpu_seconds(pids) for name, pids in processes.items()}


def rss_by_process(processes: dict[str, list[int]]) -> dict[str, float]:
    """Resident memory in MiB of each process (children apart: each gunicorn worker)."""
    found: dict[str, float] = {}
    for name, pids in processes.items():
        for pid in pids:
            for index, process in enumerate((pid, *_children(pid))):
                label = name if index == 0 else f"{name} worker {index}"
                found[label] = _rss_kib(process) / 1024
    return found


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:
        pass
    return found


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


# --- wrk ------------------------------------------------------------------------------------

_WRK_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"errors":%d,"non2xx":%d,'
    .. '"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string literal


def lua_rotating_requests(
    method: str, path: str, *, headers: Sequence[dict[str, str]], bodies: Sequence[str] = ()
) -> str:
    """A wrk script that cycles through the given header sets (and bodies)."""
    header_sets = ",\n".join(
        "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in h.items()) + "}"
        for h in headers
    )
    body_list = ",\n".join(_lua_string(body) for body in bodies) or "nil"
    return f"""
local headers = {{
{header_sets}
}}
local bodies = {{ {body_list} }}
local i = math.random(1, #headers)
request = function()
  i = i % #headers + 1
  local body = nil
  if #bodies > 0 then body = bodies[(i - 1) % #bodies + 1] end
  return wrk.format({_lua_string(method)}, {_lua_string(path)}, headers[i], body)
end
{_WRK_DONE}
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise BenchError("wrk is not installed: `apt-get install -y wrk` (make bench does it)")
    return found


def run_wrk(url: str, script: str, *, seconds: float, connections: int, threads: int = 2) -> Result:
    """Run wrk against url with script for `seconds`; its own latency percentiles."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        script_path = Path(handle.name)
    try:
        completed = subprocess.run(
            [
                wrk_binary(),
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "10s",
                "-s",
                str(script_path),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        script_path.unlink()
    line = next(
        (row for row in completed.stdout.splitlines() if row.startswith("BENCH_RESULT ")), None
    )
    if completed.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({completed.returncode}): {completed.stderr.strip()}")
    raw = json.loads(line.removeprefix("BENCH_RESULT "))
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non2xx"]
    return Result(
        requests=raw["requests"],
        seconds=seconds_run,
        rps=ok / seconds_run,
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        errors=raw["errors"] + raw["non2xx"],
        concurrency=connections,
    )


def run_wrk_requests(url: str, script: str, *, requests: int, connections: int = 16) -> int:
    """Send at least `requests` requests (wrk runs by time: in slices until enough were sent);
    how many were sent."""
    sent = 0
    while sent < requests:
        result = run_wrk(url, script, seconds=5, connections=connections)
        sent += result.requests
        if result.requests == 0:
            raise BenchError("no request was answered")
    return sent


# --- in-process drivers (gRPC client, argon2) -----------------------------------------------


def run_threads(call: Callable[[int], bool], *, seconds: float, concurrency: int) -> Result:
    """Call `call(worker_index)` in a loop on `concurrency` threads for `seconds`.

    `call` returns True for a success; latencies of successes are measured.
    """
    stop = threading.Event()
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency

    def loop(index: int) -> None:
        own = latencies[index]
        while not stop.is_set():
            started = time.perf_counter()
            ok = call(index)
            if ok:
                own.append(time.perf_counter() - started)
            else:
                failures[index] += 1

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        started = time.perf_counter()
        futures = [pool.submit(loop, i) for i in range(concurrency)]
        time.sleep(seconds)
        stop.set()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - started
    merged = sorted(latency for own in latencies for latency in own)
    return Result(
        requests=len(merged) + sum(failures),
        seconds=elapsed,
        rps=len(merged) / elapsed,
        p50_ms=percentile(merged, 0.50) * 1000,
        p99_ms=percentile(merged, 0.99) * 1000,
        errors=sum(failures),
        concurrency=concurrency,
    )
