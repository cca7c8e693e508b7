"""The cluster of `make bench`'s cluster row: `make cluster`'s topology on a bench's databases.

nginx -> two gateways -> two auth_svc and two profile_svc replicas over gRPC round_robin,
on the MariaDB databases a one-node stack was measured on (already seeded) and with its
signing key, so the same tokens and the same wrk load measure both. The figure that
matters is CPU per request of every process of the cluster (nginx and the gunicorn
workers included) against one node's: the cost of the balancer hop and of spreading the
work over more processes. Requests per second say little: both run on the same cores.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from auth_svc.keys import key_files
from devstack.cluster import Cluster, ClusterSettings
from devstack.launcher import StackError

# A port block of its own, away from `make run`, `make cluster` (8080-8082, 50061-50072,
# 9111-9122) and the cluster tests (18xxx).
BALANCER_PORT = 28080
GATEWAY_PORTS = (28081, 28082)
AUTH_PORTS = (28061, 28062)
PROFILE_PORTS = (28071, 28072)
AUTH_METRICS_PORTS = (28111, 28112)
PROFILE_METRICS_PORTS = (28121, 28122)


@dataclass(frozen=True)
class RunningCluster:
    url: str
    # Per tier ("nginx", "gateway", "auth", "profile"): nginx's master, the gunicorn
    # masters, the replicas; their children (nginx's and gunicorn's workers) count with them.
    tiers: Mapping[str, tuple[int, ...]]

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(pid for pids in self.tiers.values() for pid in pids)


def cluster_settings(
    state: Path,
    *,
    auth_database_url: str,
    profile_database_url: str,
    redis_url: str,
    gateway_workers: int,
    gateway_threads: int,
) -> ClusterSettings:
    auth, profile = make_url(auth_database_url), make_url(profile_database_url)
    if not auth.drivername.startswith("mysql") or not auth.database or not profile.database:
        raise StackError("the cluster runs on MySQL/MariaDB databases only")
    return ClusterSettings(
        state_dir=state,
        balancer_port=BALANCER_PORT,
        gateway_ports=GATEWAY_PORTS,
        auth_ports=AUTH_PORTS,
        profile_ports=PROFILE_PORTS,
        auth_metrics_ports=AUTH_METRICS_PORTS,
        profile_metrics_ports=PROFILE_METRICS_PORTS,
        gateway_workers=gateway_workers,
        mysql_server_url=auth.set(database=None).render_as_string(hide_password=False),
        auth_database=auth.database,
        profile_database=profile.database,
        redis_url=redis_url,
        rate_limit_key_prefix=f"authgate-bench-{uuid.uuid4().hex}",
        extra_env={"GATEWAY_THREADS": str(gateway_threads)},
    )


@contextlib.contextmanager
def running_cluster(
    *,
    auth_database_url: str,
    profile_database_url: str,
    keys_dir: Path,
    redis_url: str,
    gateway_workers: int,
    gateway_threads: int,
) -> Iterator[RunningCluster]:
    """The cluster, started and ready, signing with (a copy of) keys_dir's keys.

    Raises StackError when it cannot start (no nginx and no way to install it, no Redis).
    """
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as state_dir:
        settings = cluster_settings(
            Path(state_dir),
            auth_database_url=auth_database_url,
            profile_database_url=profile_database_url,
            redis_url=redis_url,
            gateway_workers=gateway_workers,
            gateway_threads=gateway_threads,
        )
        settings.keys_dir.mkdir(mode=0o700)
        for key in key_files(keys_dir):
            shutil.copy2(key, settings.keys_dir / key.name)
        cluster = Cluster(settings)
        cluster.start(timeout=180)
        try:
            tiers: dict[str, tuple[int, ...]] = {}
            for name, _ in cluster.commands():
                tier = name.partition("-")[0]
                tiers[tier] = (*tiers.get(tier, ()), cluster.process(name).pid)
            yield RunningCluster(settings.url, tiers)
        finally:
            cluster.stop()
