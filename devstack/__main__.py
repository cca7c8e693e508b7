"""`make run`: all three processes in the foreground with SQLite and dev keys; Ctrl-C stops them."""

from __future__ import annotations

import sys
from pathlib import Path

from auth_svc import config as auth_config
from authgate_common.config import Env, Setting
from devstack.launcher import Stack, StackSettings, launch
from gateway import config as gateway_config
from profile_svc import config as profile_config


def settings_from_env(env: Env) -> StackSettings:
    """The stack from the processes' own settings; unset database URLs: files in var/."""
    return StackSettings(
        state_dir=Path("var"),
        gateway_port=gateway_config.GATEWAY_PORT.read(env),
        auth_port=auth_config.AUTH_SERVICE.port.read(env),
        profile_port=profile_config.PROFILE_SERVICE.port.read(env),
        gateway_workers=gateway_config.GATEWAY_WORKERS.read(env),
        gateway_threads=gateway_config.GATEWAY_THREADS.read(env),
        gateway_server=gateway_config.GATEWAY_SERVER.read(env),
        auth_metrics_port=auth_config.AUTH_SERVICE.metrics_port.read(env),
        profile_metrics_port=profile_config.PROFILE_SERVICE.metrics_port.read(env),
        auth_database_url=_set_or_none(env, auth_config.AUTH_DATABASE_URL),
        profile_database_url=_set_or_none(env, profile_config.PROFILE_DATABASE_URL),
    )


def _set_or_none(env: Env, setting: Setting[str]) -> str | None:
    return setting.read(env) if env.values.get(setting.name, "").strip() else None


def main() -> int:
    return launch(lambda env: Stack(settings_from_env(env)), timeout=60)


if __name__ == "__main__":
    sys.exit(main())
