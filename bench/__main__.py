"""`make bench` (python -m bench): measure the gateway path against its floors and peers.

    python -m bench [--backends sqlite,mariadb] [--seconds 10] [--large-users 1000000]
    python -m bench --render [docs/bench-results.json]     # documents again, no measuring

Starts the stack once per backend (SQLite files, then fresh MariaDB databases that are
dropped afterwards) with the configured argon2 parameters, seeds users with straight SQL,
and measures with wrk and in-process drivers. With BENCH_GATEWAY_URL set it measures a
running stack instead (then also BENCH_AUTH_TARGET, BENCH_PROFILE_TARGET,
BENCH_AUTH_DATABASE_URL, BENCH_PROFILE_DATABASE_URL and BENCH_KEYS_DIR). Writes
docs/BENCHMARKS.md (between its bench markers), docs/bench.svg and docs/bench-results.json.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench import report
from bench.measure import BenchError
from bench.run import REPO, Plan, log, run

DEFAULT_MYSQL_SERVER = "mysql+pymysql://root@127.0.0.1:3306/"
DOCS = REPO / "docs"


def parse(argv: list[str]) -> tuple[Plan, Path]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    parser.add_argument("--small-users", type=int, default=1_000)
    parser.add_argument("--large-users", type=int, default=1_000_000)
    parser.add_argument("--login-concurrency", type=int, default=0, help="0: the hash bound")
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    if os.environ.get("BENCH_GATEWAY_URL"):
        backends = ("external",)
    if not set(backends) <= {"sqlite", "mariadb", "external"}:
        parser.error("--backends: sqlite and/or mariadb")
    login_concurrency = args.login_concurrency or _hash_bound()
    plan = Plan(
        backends=backends,
        seconds=args.seconds,
        small_users=args.small_users,
        large_users=args.large_users,
        login_concurrency=login_concurrency,
        mysql_server_url=os.environ.get("AUTHGATE_TEST_MYSQL_URL", DEFAULT_MYSQL_SERVER),
    )
    return plan, args.docs


def _hash_bound() -> int:
    from auth_svc.config import AuthConfig
    from authgate_common.config import Env

    bound = AuthConfig.from_env(Env.from_os()).max_concurrent_hashes
    return bound or 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--render"]:
        # Render the documents again from a run's raw figures, without measuring.
        saved = report.read_json(Path(args[1]) if len(args) > 1 else DOCS / "bench-results.json")
        print(report.write_documents(DOCS, saved))
        return 0
    plan, docs = parse(args)
    # SIGTERM unwinds like Ctrl-C: the stacks, apps and databases are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = datetime.now(UTC)
    before = report.machine()
    log(f"plan: {plan}")
    try:
        results, argon2 = run(plan)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    docs.mkdir(parents=True, exist_ok=True)
    finished = report.Run(plan, argon2, started, before, report.machine(), results)
    report.write_json(docs / "bench-results.json", finished)
    print(report.write_documents(docs, finished))
    return 0


if __name__ == "__main__":
    sys.exit(main())
