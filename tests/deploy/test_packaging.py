"""The installed package (as the Docker image installs it) carries the migration scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# What the Dockerfile copies into its build stage.
BUILD_INPUTS = ("pyproject.toml", "README.md", "generated", "authgate_common", "auth_svc",
                "profile_svc", "gateway")  # fmt: skip
MIGRATION_FOLDERS = ("auth_svc/migrations", "profile_svc/migrations")


def test_the_wheel_contains_every_migration_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(source)],
        check=True,
        timeout=120,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())

    expected = {
        path.relative_to(ROOT).as_posix()
        for folder in MIGRATION_FOLDERS
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"auth_svc/migrations/script.py.mako", "auth_svc/migrations/env.py"} <= expected
    assert expected - packaged == set()
