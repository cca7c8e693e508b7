"""Server hooks that give the workers of one gateway instance a private folder to share.

The workers keep their shared rate-limit counts there (gateway.rate_limit_storage). The
master makes it (mode 0700) before any worker forks, and removes it when it exits; set
AUTHGATE_GATEWAY_SHARED_DIR to choose the folder instead (it is then kept). gunicorn
calls them through gateway/gunicorn_conf.py; gateway/granian_serve.py around granian.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from gateway.rate_limit_storage import SHARED_DIR_VARIABLE

_OWNED_ATTRIBUTE = "authgate_owned_shared_dir"


def on_starting(server: Any) -> None:
    configured = os.environ.get(SHARED_DIR_VARIABLE)
    if configured:
        os.makedirs(configured, mode=0o700, exist_ok=True)
        return
    made = tempfile.mkdtemp(prefix="authgate-gateway-shared-")
    os.environ[SHARED_DIR_VARIABLE] = made  # the workers inherit it
    setattr(server, _OWNED_ATTRIBUTE, made)


def on_exit(server: Any) -> None:
    made = getattr(server, _OWNED_ATTRIBUTE, None)
    if made:
        shutil.rmtree(made, ignore_errors=True)
