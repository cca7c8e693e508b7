"""generated/ is exactly what `make protos` makes from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_generated_code_is_up_to_date_with_protos(tmp_path: Path) -> None:
    fresh = tmp_path / "generated"
    subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_protos.py"), "--out", str(fresh)], check=True
    )
    committed, regenerated = _files(ROOT / "generated"), _files(fresh)
    assert sorted(committed) == sorted(regenerated), "run `make protos`: the file list differs"
    stale = [name for name in committed if committed[name] != regenerated[name]]
    assert not stale, f"run `make protos`: these differ from protos/: {stale}"


def test_generated_modules_import_as_an_installed_package() -> None:
    code = "import authgate.auth.v1.auth_pb2_grpc, authgate.profile.v1.profile_pb2_grpc"
    # A fresh interpreter from another folder: nothing but the installed package resolves it.
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
