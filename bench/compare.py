"""A markdown table of two benchmark runs side by side (raw JSON from `make bench`).

python -m bench.compare docs/bench-before.json docs/bench-results.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TARGETS = ("gateway_profile", "direct_profile", "reference_profile", "gateway_login")


def _cell(result: dict[str, Any] | None) -> str:
    if not result:
        return "- | - | - | -"
    cpu = result.get("cpu_ms")
    cpu_text = "-" if cpu is None else f"{cpu:.2f}"
    return f"{result['rps']:,.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} | {cpu_text}"


def table(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = [
        "| backend, users | target | before: req/s | p50 ms | p99 ms | CPU ms/req "
        "| after: req/s | p50 ms | p99 ms | CPU ms/req |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for backend, populations in after["results"].items():
        for users, results in populations.items():
            old = before["results"].get(backend, {}).get(users, {})
            for target in TARGETS:
                if target in results:
                    lines.append(
                        f"| {backend}, {int(users):,} | {target.replace('_', ' ')} | "
                        f"{_cell(old.get(target))} | {_cell(results[target])} |"
                    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    before, after = (json.loads(Path(path).read_text()) for path in argv)
    print(table(before, after))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
