"""One JSON object per log line on stderr, through python-json-logger."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure_logging(service: str, level: str = "INFO") -> None:
    # The lines name neither thread nor source line, so the record need not look them up:
    # the Logging HOWTO's "Optimization" settings, about a third of the cost of the line
    # logged per request and per RPC (docs/BENCHMARKS.md). The process id stays: gunicorn's
    # own lines print it (%(process)d), and a None there was a traceback at every exit.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
