"""`make run`: all three processes in the foreground with SQLite and dev keys; Ctrl-C stops them."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

from authgate_common.config import ConfigError, Env, port
from authgate_common.metrics import metrics_port
from devstack.launcher import Stack, StackError, StackSettings, curl_example


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
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stack = Stack(settings)
    try:
        stack.start(timeout=60)
    except StackError as exc:
        print(f"authgate did not start: {exc}", file=sys.stderr)
        return 1
    settings = stack.settings  # with the ports the processes bound (a 0 picks a free one)
    url = settings.gateway_url
    metrics = settings.metrics_urls()

    def metrics_of(name: str) -> str:
        return f"   (metrics {metrics[name]})" if name in metrics else ""

    print(
        f"\nauthgate is running (state in {settings.state_dir.resolve()}):\n"
        f"  gateway      {url}   (API docs {url}/docs, readiness {url}/readyz,"
        f" metrics {metrics['gateway']})\n"
        f"  auth gRPC    {settings.host}:{settings.auth_port}{metrics_of('auth')}\n"
        f"  profile gRPC {settings.host}:{settings.profile_port}{metrics_of('profile')}\n\n"
        f"Try it:\n{curl_example(url)}\n\nCtrl-C stops all three.\n",
        flush=True,
    )
    code = 0
    while not stop.wait(0.5):
        try:
            stack.check_alive()
        except StackError as exc:
            print(f"stopping: {exc}", file=sys.stderr)
            code = 1
            break
    print("stopping authgate ...", file=sys.stderr, flush=True)
    stack.stop()
    return code


if __name__ == "__main__":
    sys.exit(main())
