"""bench.ab's report (no measuring here: `make bench` is not part of the tests)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from bench.ab import BEGIN, END, GATEWAY, REFERENCE, BackendRun, Row, render, write_section
from bench.measure import Result


def _row(name: str, rps: float, p99: float, cpu: dict[str, float]) -> Row:
    return Row(name, Result(int(rps * 8), 8.0, rps, p99 / 3, p99), cpu)


def _report(run: BackendRun) -> str:
    args = argparse.Namespace(rounds=2, seconds=8.0)
    return render(
        [run], started=datetime(2026, 12, 1, tzinfo=UTC), load=((1.0,), (2.0,)), args=args
    )


def test_every_round_is_listed_with_its_process_breakdown_and_the_median_decides() -> None:
    run = BackendRun("sqlite")
    run.rows = [
        _row(f"{GATEWAY} #1", 900, 60, {"gateway": 0.4, "profile": 0.3}),
        _row(f"{REFERENCE} #1", 1000, 50, {"reference": 0.5}),
        _row(f"{GATEWAY} #2", 500, 90, {"gateway": 0.5, "profile": 0.4}),
        _row(f"{REFERENCE} #2", 1000, 50, {"reference": 0.5}),
        _row(f"{GATEWAY} #3", 850, 70, {"gateway": 0.4, "profile": 0.2}),
        _row(f"{REFERENCE} #3", 1000, 50, {"reference": 0.5}),
    ]
    run.memory = {10_000: {"gateway": 100.0}, 100_000: {"gateway": 115.0}}

    text = _report(run)

    assert text.count("| A gateway #") == 3
    assert "gateway 0.50, profile 0.40" in text
    assert "throughput 0.90 / 0.50 / 0.85 (target >= 0.80): **met**" in text
    assert "server CPU per request 1.40 / 1.80 / 1.20 (target <= 1.25): **missed**" in text
    assert "| gateway | 100.0 | 115.0 | +15.0% |" in text
    assert "largest growth +15.0%: **missed**" in text


def test_the_section_is_replaced_between_its_markers_and_added_when_missing(
    tmp_path: Path,
) -> None:
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("intro\n")

    write_section(doc, "first")
    write_section(doc, "second")

    text = doc.read_text()
    assert text.startswith("intro\n")
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    assert "second" in text
    assert "first" not in text
