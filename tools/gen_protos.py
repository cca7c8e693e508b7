"""Compile protos/ into Python modules, gRPC stubs and type stubs under an output folder."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# Our files (not their imports) with comments and options, read by
# authgate_common.descriptor_set.
DESCRIPTOR_SET = Path("authgate") / "descriptors.binpb"


def _include_dirs() -> list[Path]:
    # googleapis-common-protos ships google/api/*.proto inside site-packages;
    # grpc_tools ships google/protobuf/*.proto.
    import google.api

    googleapis_root = Path(next(iter(google.api.__path__))).parent.parent
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    return [PROTOS, googleapis_root, well_known]


def _plugin(name: str) -> Path:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit(f"{name} not found: install the dev extras (pip install -e '.[dev]')")
    return Path(found)


def generate(out_dir: Path) -> None:
    """Replace out_dir with freshly generated code for every .proto under protos/."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    (out_dir / DESCRIPTOR_SET).parent.mkdir(parents=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    args = ["grpc_tools.protoc", *(f"-I{d}" for d in _include_dirs())]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    # The Python modules drop the comments; this set keeps them for the API docs.
    args += [f"--descriptor_set_out={out_dir / DESCRIPTOR_SET}", "--include_source_info"]
    # grpcio-tools types the messages only; mypy-protobuf's plugin types the stubs.
    args += [
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out={out_dir}",
    ]
    if protoc.main([*args, *sources]) != 0:
        raise SystemExit("protoc failed")
    # Every folder is a regular package so that setuptools installs it, and
    # the .pyi stubs are what type checkers read (PEP 561).
    for folder in [p for p in out_dir.rglob("*") if p.is_dir()]:
        (folder / "__init__.py").touch()
    for top in [p for p in out_dir.iterdir() if p.is_dir()]:
        (top / "py.typed").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "generated")
    generate(parser.parse_args().out)


if __name__ == "__main__":
    main()
