"""bench.profile_path's summary of py-spy's raw (collapsed) stacks."""

from __future__ import annotations

from pathlib import Path

from bench.profile_path import summarize


def test_a_frame_name_holding_a_line_break_stays_in_its_record(tmp_path: Path) -> None:
    # py-spy writes a generated function's source, line breaks included, as its frame name.
    raw = tmp_path / "worker.txt"
    raw.write_text(
        "run (app.py:1);handle (views.py:2) 3\n"
        "run (app.py:1);<lambda> (    return target(fn, self, bind)\n"
        " (def __init__(self, bind):\n"
        ");dispatch (views.py:9) 2\n"
    )
    summary = summarize(raw)
    assert summary.splitlines()[0] == "worker.txt: 5 samples"
    assert "100.0%  run (app.py)" in summary
    assert "60.0%  handle (views.py)" in summary
    assert "40.0%  dispatch (views.py)" in summary
