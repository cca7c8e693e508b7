"""Container healthcheck: exit 0 when a gRPC server is SERVING or an HTTP URL answers 200.

    python -m authgate_common.healthcheck 127.0.0.1:50051
    python -m authgate_common.healthcheck http://127.0.0.1:8080/readyz

gRPC is checked over TLS when GRPC_TLS_CA is set (with GRPC_TLS_CLIENT_CERT and
GRPC_TLS_CLIENT_KEY for a server that requires client certificates), as every
authgate client does; `--tls-server-name` names the certificate's host when it
is not the target's (e.g. `auth` while the probe dials 127.0.0.1).
Exit status 1 otherwise, with one line on stderr saying why (Docker keeps it
in `docker inspect`). Proxies from the environment are ignored: the target is
always this container.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authgate_common.channels import open_channel
from authgate_common.config import ConfigError, Env
from authgate_common.tls import ClientTls, channel_credentials

DEFAULT_TIMEOUT_SECONDS = 3.0


class Unhealthy(Exception):
    """The target answered, or failed to, in a way that is not healthy."""


def check_grpc(
    target: str,
    *,
    service: str = "",
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    tls: ClientTls | None = None,
    server_name: str | None = None,
) -> None:
    """Raise Unhealthy unless grpc.health.v1 Check on target reports SERVING."""
    credentials = channel_credentials(tls)
    with open_channel(target, credentials=credentials, server_name=server_name) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            # Channel-level errors are also grpc.Call objects that carry the status code.
            code = getattr(exc, "code", None)
            reason = code().name if callable(code) else type(exc).__name__
            raise Unhealthy(f"health check of {target} failed: {reason}") from None
    if response.status != health_pb2.HealthCheckResponse.SERVING:
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        raise Unhealthy(f"{target} reports {status}")


def check_http(url: str, *, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
    """Raise Unhealthy unless GET url answers 200."""
    if not url.startswith(("http://", "https://")):
        raise Unhealthy(f"not an http(s) URL: {url}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # The scheme is checked above, so urlopen cannot be pointed at a local file.
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"GET {url} failed: {type(exc).__name__}") from None
    if status != 200:
        raise Unhealthy(f"GET {url} answered {status}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m authgate_common.healthcheck",
        description="Exit 0 when a gRPC server is SERVING (host:port) or a URL answers 200.",
    )
    parser.add_argument("target", help="host:port of a gRPC server, or an http(s):// URL")
    parser.add_argument(
        "--service", default="", help="gRPC service name to check (default: server)"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, help="seconds")
    parser.add_argument(
        "--tls-server-name", default=None, help="host name in the server's TLS certificate"
    )
    args = parser.parse_args(argv)
    target: str = args.target
    try:
        if target.startswith(("http://", "https://")):
            check_http(target, timeout=args.timeout)
        else:
            check_grpc(
                target,
                service=args.service,
                timeout=args.timeout,
                tls=ClientTls.from_env(Env.from_os()),
                server_name=args.tls_server_name,
            )
    except ConfigError as exc:
        # Exit 1, not 2: Docker reserves 2 for healthchecks.
        print(f"unhealthy: configuration error: {exc}", file=sys.stderr)
        return 1
    except Unhealthy as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
