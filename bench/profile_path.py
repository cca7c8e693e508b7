"""Profile GET /v1/profile under load: py-spy samples every process of the path while wrk runs.

    python -m bench.profile_path [--seconds 10] [--out var/profile]

Starts the stack on SQLite with 1,000 users, drives GET /v1/profile with wrk and records
each process (gateway workers, profile_svc) with `py-spy record --format raw` (collapsed
stacks), then prints the functions with the most samples, inclusive and exclusive
("self"), per process. py-spy comes from PyPI (`pip install py-spy`).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from auth_svc.config import Argon2Params
from auth_svc.passwords import PasswordHasher
from bench import seed
from bench.measure import lua_rotating_requests, run_wrk
from bench.run import (
    HTTP_CONNECTIONS,
    PASSWORD,
    TOKENS,
    mint_tokens,
    running_stack,
)

USERS = 1000


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def record(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "--gil",  # only the thread that holds the GIL: CPU spent in Python
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


_RECORD = re.compile(r"(.+?) (\d+)$", re.DOTALL | re.MULTILINE)


def summarize(raw: Path, top: int = 25) -> str:
    inclusive: Counter[str] = Counter()
    exclusive: Counter[str] = Counter()
    total = 0
    # One record per "stack count" line, except that py-spy copies a frame name that holds a
    # line break (a generated function's source) as it is: a record ends at " <count>".
    for match in _RECORD.finditer(raw.read_text()):
        stack, count = match.group(1).strip().replace("\n", " "), int(match.group(2))
        total += count
        frames = [_short(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        exclusive[frames[-1]] += count
    lines = [f"{raw.name}: {total} samples"]
    lines.append("  inclusive:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines.append("  self:")
    lines += [f"    {100 * n / total:5.1f}%  {f}" for f, n in exclusive.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (module.py)"
    name, _, where = frame.partition(" (")
    module = where.split(":")[0].rsplit("/", 1)[-1]
    return f"{name} ({module})"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_path")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("var/profile"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as state_dir:
        state = Path(state_dir)
        auth_db = f"sqlite:///{state / 'auth.db'}"
        profile_db = f"sqlite:///{state / 'profile.db'}"
        with running_stack(state, auth_db, profile_db) as target:
            hasher = PasswordHasher(Argon2Params())
            seed.seed(auth_db, profile_db, first=1, last=USERS, password_hash=hasher.hash(PASSWORD))
            sample = random.Random(0).sample(range(1, USERS + 1), min(TOKENS, USERS))  # noqa: S311
            tokens = mint_tokens(target, sample)
            script = lua_rotating_requests(
                "GET", "/v1/profile", headers=[{"Authorization": f"Bearer {t}"} for t in tokens]
            )
            run_wrk(target.gateway_url, script, seconds=2, connections=HTTP_CONNECTIONS)
            stack = target.stack
            assert stack is not None
            pids = {
                "profile_svc": stack.process("profile").pid,
                **{
                    f"gateway_worker_{i}": pid
                    for i, pid in enumerate(children(stack.process("gateway").pid))
                },
            }
            recorders = [
                record(pid, args.seconds, args.out / f"{name}.txt") for name, pid in pids.items()
            ]
            result: list[object] = []
            load = threading.Thread(
                target=lambda: result.append(
                    run_wrk(
                        target.gateway_url,
                        script,
                        seconds=args.seconds + 2,
                        connections=HTTP_CONNECTIONS,
                    )
                )
            )
            load.start()
            for recorder in recorders:
                recorder.wait()
            load.join()
    print(result[0] if result else "no load result")
    for name in pids:
        print(summarize(args.out / f"{name}.txt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
