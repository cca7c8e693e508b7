"""`make run`: all three processes in the foreground with SQLite and dev keys; Ctrl-C stops them."""

from __future__ import annotations

import sys
from pathlib import Path

from authgate_common.config import ConfigError, Env, port
from authgate_common.metrics import metrics_port
from devstack.launcher import Stack, StackSettings, curl_example, run_in_foreground


def settings_from_env(env: Env) -> StackSettings:
    return StackSettings(
        state_dir=Path("var"),
        gateway_port=port(env, "GATEWAY_PORT", 8080),
        auth_port=port(env, "AUTH_GRPC_PORT", 50051),
        profile_port=port(env, "PROFILE_GRPC_PORT", 50052),
        gateway_workers=env.int("GATEWAY_WORKERS", 2, minimum=1),
        gateway_threads=env.int("GATEWAY_THREADS", 8, minimum=1),
        auth_metrics_port=metrics_port(env, "AUTH_METRICS_PORT", 9101),
        profile_metrics_port=metrics_port(env, "PROFILE_METRICS_PORT", 9102),
        auth_database_url=env.values.get("AUTH_DATABASE_URL"),
        profile_database_url=env.values.get("PROFILE_DATABASE_URL"),
    )


def main() -> int:
    try:
        settings = settings_from_env(Env.from_os())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    stack = Stack(settings)
    url = settings.gateway_url
    metrics = settings.metrics_urls()

    def metrics_of(name: str) -> str:
        return f"   (metrics {metrics[name]})" if name in metrics else ""

    banner = (
        f"\nauthgate is running (state in {settings.state_dir.resolve()}):\n"
        f"  gateway      {url}   (API docs {url}/docs, readiness {url}/readyz,"
        f" metrics {metrics['gateway']})\n"
        f"  auth gRPC    {settings.host}:{settings.auth_port}{metrics_of('auth')}\n"
        f"  profile gRPC {settings.host}:{settings.profile_port}{metrics_of('profile')}\n\n"
        f"Try it:\n{curl_example(url)}\n\nCtrl-C stops all three.\n"
    )
    return run_in_foreground(stack, banner, timeout=60)


if __name__ == "__main__":
    sys.exit(main())
