"""Real stacks on MariaDB behind a proxy the tests control, one per test module.

Each test may kill, freeze or cut off a part of its module's stack; `healthy_stack` puts
everything back (restarts, SIGCONT, reopens the proxy) before the next test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import RealStack, real_stack

# Small, so that a frozen upstream is noticed quickly (issue 5.2).
SHORT_GRPC_TIMEOUT_SECONDS = 1.0


@pytest.fixture(scope="module")
def grpc_timeout_seconds() -> float | None:
    """The gateway's deadline for the module's stack (None: the default, 5 s)."""
    return None


@pytest.fixture(scope="module")
def faults_stack(
    mysql_server_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    grpc_timeout_seconds: float | None,
) -> Iterator[RealStack]:
    env = {}
    if grpc_timeout_seconds is not None:
        env["GATEWAY_GRPC_TIMEOUT_SECONDS"] = str(grpc_timeout_seconds)
    with real_stack(
        tmp_path_factory.mktemp("faults"),
        mysql_server_url=mysql_server_url,
        db_proxy=True,
        extra_env=env,
    ) as stack:
        yield stack


@pytest.fixture
def healthy_stack(faults_stack: RealStack) -> RealStack:
    faults_stack.ensure_running()
    return faults_stack
