"""docs/BENCHMARKS.md (the part between the bench markers), docs/bench.svg and the raw JSON."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from html import escape
from pathlib import Path

from auth_svc.config import Argon2Params
from bench.measure import Result
from bench.run import GATEWAY_THREADS, GATEWAY_WORKERS, HTTP_CONNECTIONS, BackendResults, Plan

BEGIN = "<!-- bench:begin (make bench rewrites everything down to bench:end) -->"
END = "<!-- bench:end -->"

PROFILE_ROWS = (
    ("gateway_profile", "(a) gateway: HTTP -> JWT -> gRPC -> profile_svc -> DB"),
    ("direct_profile", "(b) direct gRPC GetProfile (Python client)"),
    ("static_profile", "(c) floor: static Flask JSON route, same gunicorn settings"),
    ("reference_profile", "5.8 reference: single-process Flask, JWT check + indexed read"),
    ("reference2_profile", "the same reference with the gateway's 2 gunicorn workers"),
    ("cluster_profile", "cluster: nginx -> 2 gateways -> 2+2 replicas (CPU of every process)"),
)
LOGIN_ROWS = (
    ("gateway_login", "(a) gateway: HTTP -> gRPC Login"),
    ("direct_login", "(b) direct gRPC Login (Python client)"),
    ("argon2_login", "(c) floor: argon2id verify alone"),
)


# --- the machine ----------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    wrk = shutil.which("wrk")
    wrk_version = ""
    if wrk:
        completed = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_version = (completed.stdout + completed.stderr).split("\n")[0].strip()
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{memory_kib / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk_version,
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


# --- markdown -------------------------------------------------------------------------------


def _ratio(a: Result | None, b: Result | None, attr: str = "rps") -> str:
    if a is None or b is None or not getattr(b, attr):
        return "-"
    return f"{getattr(a, attr) / getattr(b, attr):.2f}"


def _row(label: str, result: Result | None) -> str:
    if result is None:
        return f"| {label} | - | - | - | - | - |"
    cpu = "-" if result.cpu_ms is None else f"{result.cpu_ms:.2f}"
    return (
        f"| {label} | {result.rps:,.1f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} "
        f"| {cpu} | {result.errors} |"
    )


def _table(rows: Sequence[tuple[str, str]], results: dict[str, Result]) -> list[str]:
    lines = [
        "| target | req/s | p50 ms | p99 ms | server CPU ms/request | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [_row(label, results.get(key)) for key, label in rows]
    return lines


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def targets(results: dict[str, Result]) -> list[str]:
    gateway, reference = results.get("gateway_profile"), results.get("reference_profile")
    login, argon2 = results.get("gateway_login"), results.get("argon2_login")
    lines = []
    if gateway and reference:
        throughput = gateway.rps / reference.rps
        p99 = gateway.p99_ms / reference.p99_ms
        lines += [
            f"- profile throughput, gateway / reference: **{throughput:.2f}** "
            f"(target >= 0.80): {_verdict(throughput >= 0.8)}",
            f"- profile p99, gateway / reference: **{p99:.2f}** "
            f"(target <= 2.00): {_verdict(p99 <= 2.0)}",
        ]
    two_workers = results.get("reference2_profile")
    if gateway and two_workers:
        lines.append(
            f"- for comparison (no target): against the same reference with 2 gunicorn "
            f"workers, throughput {gateway.rps / two_workers.rps:.2f}, p99 "
            f"{gateway.p99_ms / two_workers.p99_ms:.2f}"
        )
    cluster = results.get("cluster_profile")
    if gateway and cluster and gateway.cpu_ms and cluster.cpu_ms:
        lines.append(
            f"- the balancer hop (no target): CPU per request, cluster / one node: "
            f"**{cluster.cpu_ms / gateway.cpu_ms:.2f}** ({cluster.cpu_ms:.2f} ms against "
            f"{gateway.cpu_ms:.2f} ms, nginx and both gateways included)"
        )
    if login and argon2:
        ratio = login.rps / argon2.rps
        lines.append(
            f"- login throughput, gateway / argon2 alone: **{ratio:.2f}** "
            f"(target >= 0.90): {_verdict(ratio >= 0.9)}"
        )
    return lines


def markdown(
    results: Sequence[BackendResults],
    plan: Plan,
    argon2: Argon2Params,
    started: datetime,
    machine_before: dict[str, str],
    after: dict[str, str],
) -> str:
    out = [
        BEGIN,
        "",
        f"Run of {started:%Y-%m-%d %H:%M} UTC, {plan.seconds:g} s per measurement after a "
        "short warm-up.",
        "",
        "## Machine",
        "",
        f"- {machine_before['nproc']} CPUs: {machine_before['cpu']}; memory "
        f"{machine_before['memory']}; Linux {machine_before['kernel']}; Python "
        f"{machine_before['python']}; {machine_before['wrk']}",
        f"- load average (1, 5, 15 min) before the run: {machine_before['load']}; after: "
        f"{after['load']} (the machine is shared: other work runs beside the benchmark)",
        f"- argon2id: time_cost={argon2.time_cost}, memory={argon2.memory_kib} KiB, "
        f"parallelism={argon2.parallelism} (the configured parameters)",
        f"- gateway and static floor: gunicorn gthread, {GATEWAY_WORKERS} workers x "
        f"{GATEWAY_THREADS} threads; reference: 1 worker (one process) x {GATEWAY_THREADS} "
        f"threads; services: GRPC_MAX_WORKERS=16",
        f"- load: wrk, {HTTP_CONNECTIONS} connections for GET /v1/profile, "
        f"{plan.login_concurrency} for logins (= the argon2 concurrency bound); the gRPC "
        "and argon2 drivers use as many threads; GET /v1/profile cycles through "
        "1,000 users' tokens, logins through 20 users",
        "- server CPU ms/request: user + system CPU time of the serving processes (all "
        "three for the gateway, gunicorn workers included) per successful request; unlike "
        "req/s it hardly moves with other work on the machine",
        "- cluster row (MariaDB, largest population): `make cluster`'s topology (nginx, 2 "
        "gateways of the same gunicorn settings, 2 auth_svc and 2 profile_svc replicas) on "
        "the same databases, key and wrk load; its CPU is every process's, nginx included",
        "",
    ]
    for backend in results:
        for users, by_target in backend.by_users.items():
            out += [
                f"## {backend.backend}, {users:,} users",
                "",
                "GET /v1/profile",
                "",
                *_table(PROFILE_ROWS, by_target),
                "",
                f"Ratios (req/s): gateway / direct gRPC "
                f"{_ratio(by_target.get('gateway_profile'), by_target.get('direct_profile'))}, "
                f"gateway / static floor "
                f"{_ratio(by_target.get('gateway_profile'), by_target.get('static_profile'))}, "
                f"direct gRPC / static floor "
                f"{_ratio(by_target.get('direct_profile'), by_target.get('static_profile'))}.",
                "",
                "POST /v1/auth/login",
                "",
                *_table(LOGIN_ROWS, by_target),
                "",
                f"Ratios (req/s): gateway / direct gRPC "
                f"{_ratio(by_target.get('gateway_login'), by_target.get('direct_login'))}, "
                f"gateway / argon2 alone "
                f"{_ratio(by_target.get('gateway_login'), by_target.get('argon2_login'))}.",
                "",
                "Targets of issue 5.8:",
                "",
                *targets(by_target),
                "",
            ]
    out += growth(results, plan)
    out += ["![requests per second by target](bench.svg)", "", END]
    return "\n".join(out) + "\n"


def growth(results: Sequence[BackendResults], plan: Plan) -> list[str]:
    small, large = plan.small_users, plan.large_users
    lines = [
        f"## Cost at {small:,} and at {large:,} users",
        "",
        "| backend | target | req/s | p50 ms | p99 ms | req/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for backend in results:
        a, b = backend.by_users.get(small, {}), backend.by_users.get(large, {})
        for key in ("gateway_profile", "direct_profile", "gateway_login", "direct_login"):
            if key in a and key in b:
                x, y = a[key], b[key]
                lines.append(
                    f"| {backend.backend} | {key.replace('_', ' ')} | {x.rps:,.1f} | "
                    f"{x.p50_ms:.1f} | {x.p99_ms:.1f} | {y.rps:,.1f} | {y.p50_ms:.1f} | "
                    f"{y.p99_ms:.1f} |"
                )
    lines += ["", f"(left: {small:,} users; right: {large:,} users.)"]
    seeded = [
        f"{backend.backend} {users:,} users in {seconds:.0f} s"
        for backend in results
        for users, seconds in backend.seed_seconds.items()
    ]
    if seeded:
        lines += ["", "Bulk seeding (straight SQL): " + "; ".join(seeded) + "."]
    return [*lines, ""]


def write_markdown(path: Path, section: str) -> None:
    if path.exists():
        text = path.read_text()
        pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END) + "\n?", re.DOTALL)
        if pattern.search(text):
            path.write_text(pattern.sub(lambda _: section, text, count=1))
            return
        path.write_text(text.rstrip() + "\n\n" + section)
        return
    path.write_text("# Benchmarks\n\n" + section)


def write_json(path: Path, run: Run) -> None:
    data = {
        "plan": asdict(run.plan),
        "argon2": asdict(run.argon2),
        "started": run.started.isoformat(),
        "machine_before": run.machine_before,
        "machine": run.machine_after,
        "results": {
            backend.backend: {
                str(users): {key: result.as_dict() for key, result in by_target.items()}
                for users, by_target in backend.by_users.items()
            }
            for backend in run.results
        },
        "seed_seconds": {
            backend.backend: {str(users): s for users, s in backend.seed_seconds.items()}
            for backend in run.results
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Run:
    """A run written by write_json, to render the documents again without measuring."""
    data = json.loads(path.read_text())
    plan_fields = dict(data["plan"])
    plan_fields["backends"] = tuple(plan_fields["backends"])
    results = []
    for backend, populations in data["results"].items():
        entry = BackendResults(backend)
        for users, by_target in populations.items():
            entry.by_users[int(users)] = {key: Result(**raw) for key, raw in by_target.items()}
        for users, seconds in data.get("seed_seconds", {}).get(backend, {}).items():
            entry.seed_seconds[int(users)] = seconds
        results.append(entry)
    return Run(
        plan=Plan(**plan_fields),
        argon2=Argon2Params(**data["argon2"]),
        started=datetime.fromisoformat(data["started"]),
        machine_before=data["machine_before"],
        machine_after=data["machine"],
        results=results,
    )


@dataclass(frozen=True)
class Run:
    """Everything one benchmark run produced, and the circumstances."""

    plan: Plan
    argon2: Argon2Params
    started: datetime
    machine_before: dict[str, str]
    machine_after: dict[str, str]
    results: Sequence[BackendResults]


def write_documents(docs: Path, run: Run) -> str:
    """docs/BENCHMARKS.md's generated section and docs/bench.svg; the section."""
    section = markdown(
        run.results, run.plan, run.argon2, run.started, run.machine_before, run.machine_after
    )
    write_markdown(docs / "BENCHMARKS.md", section)
    (docs / "bench.svg").write_text(chart(run.results, run.plan))
    return section


# --- the chart (SVG written directly) --------------------------------------------------------

_COLOURS = {
    "gateway": "#1f77b4",
    "direct": "#2ca02c",
    "static": "#7f7f7f",
    "argon2": "#7f7f7f",
    "reference": "#ff7f0e",
    "reference2": "#ffbb78",
    "cluster": "#9467bd",
}
_SHORT_NAMES = {
    "gateway": "gateway",
    "direct": "direct gRPC",
    "static": "static floor",
    "argon2": "argon2 alone",
    "reference": "reference, 1 process",
    "reference2": "reference, 2 workers",
    "cluster": "cluster (nginx, 2 gateways)",
}


def chart(results: Sequence[BackendResults], plan: Plan) -> str:
    panels = [
        ("GET /v1/profile, req/s", [k for k, _ in PROFILE_ROWS]),
        ("POST /v1/auth/login, req/s", [k for k, _ in LOGIN_ROWS]),
    ]
    row_height, label_width, bar_width, gap = 18, 330, 380, 30
    rows: list[tuple[str, list[tuple[str, str, float]]]] = []
    for title, keys in panels:
        bars = []
        for backend in results:
            for users, by_target in backend.by_users.items():
                for key in keys:
                    if key in by_target:
                        kind = key.split("_")[0]
                        label = f"{backend.backend}, {users:,} users: {_SHORT_NAMES[kind]}"
                        bars.append((label, kind, by_target[key].rps))
        rows.append((title, bars))
    height = sum(gap + len(bars) * row_height for _, bars in rows) + 20
    width = label_width + bar_width + 90
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    y = 10
    for title, bars in rows:
        svg.append(f'<text x="4" y="{y + 14}" font-weight="bold">{escape(title)}</text>')
        y += gap
        top = max((value for _, _, value in bars), default=1.0) or 1.0
        for label, kind, value in bars:
            length = bar_width * value / top
            svg += [
                f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">'
                f"{escape(label)}</text>",
                f'<rect x="{label_width}" y="{y + 2}" width="{length:.1f}" '
                f'height="{row_height - 4}" fill="{_COLOURS.get(kind, "#999")}"/>',
                f'<text x="{label_width + length + 4:.1f}" y="{y + 12}">{value:,.1f}</text>',
            ]
            y += row_height
    svg.append("</svg>")
    return "\n".join(svg) + "\n"
