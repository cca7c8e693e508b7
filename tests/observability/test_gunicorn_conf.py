"""gateway/metrics_dir.py prepares a clean Prometheus multiprocess folder for each run."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway import metrics_dir


def test_a_configured_folder_is_emptied_of_an_earlier_runs_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"stale")
    (folder / "keep.txt").write_text("not a metrics file")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))

    metrics_dir.on_starting(SimpleNamespace())

    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_a_configured_folder_that_does_not_exist_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "new" / "metrics"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    metrics_dir.on_starting(SimpleNamespace())
    assert folder.is_dir()


def test_without_a_folder_a_fresh_one_is_made_for_the_run_and_removed_at_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Set, then deleted: monkeypatch then also undoes what on_starting sets.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "placeholder")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    server = SimpleNamespace()

    metrics_dir.on_starting(server)
    made = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert made.is_dir()
    assert list(made.iterdir()) == []

    metrics_dir.on_exit(server)
    assert not made.exists()


def test_a_configured_folder_is_left_in_place_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    server = SimpleNamespace()
    metrics_dir.on_starting(server)
    metrics_dir.on_exit(server)
    assert tmp_path.is_dir()
