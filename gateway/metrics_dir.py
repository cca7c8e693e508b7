"""Server hooks that prepare prometheus-client's multiprocess mode for the gateway.

/metrics adds up every worker: each worker writes its metrics to files in
PROMETHEUS_MULTIPROC_DIR, which must exist before the workers import the
library and must start empty on each run (stale files would add old counts).
With the variable set, that directory is made or emptied at start; without it,
a fresh temporary one is made and removed when gunicorn exits (not with
--preload, which imports the app before these hooks run: set the variable then).
gateway/gunicorn_conf.py exposes these hooks to gunicorn; gateway/granian_serve.py calls
them around granian's server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gateway.config import PROMETHEUS_MULTIPROC_DIR

MULTIPROC_VARIABLE = PROMETHEUS_MULTIPROC_DIR.name
_OWNED_ATTRIBUTE = "authgate_owned_metrics_dir"


def prepare_metrics_dir(directory: Path) -> None:
    """Make directory, or empty it of an earlier run's metric files."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def on_starting(server: Any) -> None:
    # Runs in the master before any worker forks: workers inherit the variable.
    configured = os.environ.get(MULTIPROC_VARIABLE)
    if configured:
        prepare_metrics_dir(Path(configured))
        return
    made = tempfile.mkdtemp(prefix="authgate-gateway-metrics-")
    os.environ[MULTIPROC_VARIABLE] = made
    setattr(server, _OWNED_ATTRIBUTE, made)


def mark_process_dead(pid: int) -> None:
    """A worker has exited: its live gauges (livemin, livemax, ...) stop counting."""
    # Imported here: the library picks its mode from the variable when first imported.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    made = getattr(server, _OWNED_ATTRIBUTE, None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
