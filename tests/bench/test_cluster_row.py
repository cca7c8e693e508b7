"""The cluster row of `make bench`: the cluster it starts, and how the row is reported."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from auth_svc.config import Argon2Params
from bench import report
from bench.cluster_row import BALANCER_PORT, GATEWAY_PORTS, cluster_settings
from bench.measure import Result
from bench.run import BackendResults, Plan
from devstack.launcher import StackError


def test_the_cluster_runs_on_the_one_node_stacks_databases_in_a_port_block_of_its_own(
    tmp_path: Path,
) -> None:
    settings = cluster_settings(
        tmp_path,
        auth_database_url="mysql+pymysql://root@127.0.0.1:3306/bench_auth",
        profile_database_url="mysql+pymysql://root@127.0.0.1:3306/bench_profile",
        redis_url="redis://127.0.0.1:6379/0",
        gateway_workers=2,
        gateway_threads=8,
    )
    assert settings.auth_database_url == "mysql+pymysql://root@127.0.0.1:3306/bench_auth"
    assert settings.profile_database_url == "mysql+pymysql://root@127.0.0.1:3306/bench_profile"
    assert settings.url == f"http://127.0.0.1:{BALANCER_PORT}"
    assert settings.gateway_ports == GATEWAY_PORTS
    assert settings.common_environment()["GATEWAY_THREADS"] == "8"
    # Away from make cluster's ports and the cluster tests' (18xxx).
    used = {
        settings.balancer_port,
        *settings.gateway_ports,
        *settings.auth_ports,
        *settings.profile_ports,
        *settings.auth_metrics_ports,
        *settings.profile_metrics_ports,
    }
    assert all(28000 <= port < 29000 for port in used)
    assert len(used) == 11


def test_the_cluster_refuses_sqlite(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="MySQL"):
        cluster_settings(
            tmp_path,
            auth_database_url=f"sqlite:///{tmp_path / 'auth.db'}",
            profile_database_url=f"sqlite:///{tmp_path / 'profile.db'}",
            redis_url="redis://127.0.0.1:6379/0",
            gateway_workers=2,
            gateway_threads=8,
        )


def result(rps: float, cpu_ms: float) -> Result:
    return Result(requests=1000, seconds=10, rps=rps, p50_ms=5, p99_ms=20, cpu_ms=cpu_ms)


def test_the_report_shows_the_cluster_row_and_its_cpu_against_one_node(tmp_path: Path) -> None:
    backend = BackendResults("mariadb")
    backend.by_users[1000] = {
        "gateway_profile": result(900, 2.0),
        "cluster_profile": result(700, 2.6),
    }
    plan = Plan(("mariadb",), 10, 1000, 1000, 4, "mysql+pymysql://root@127.0.0.1:3306/")
    run = report.Run(
        plan,
        Argon2Params(time_cost=3, memory_kib=65536, parallelism=4),
        datetime(2026, 12, 1, tzinfo=UTC),
        report.machine(),
        report.machine(),
        [backend],
    )
    section = report.write_documents(tmp_path, run)
    assert "| cluster: nginx -> 2 gateways -> 2+2 replicas (CPU of every process) | 700.0 |" in (
        section
    )
    assert "cluster / one node: **1.30** (2.60 ms against 2.00 ms" in section
    assert "cluster (nginx, 2 gateways)" in (tmp_path / "bench.svg").read_text()
    # The raw figures keep the row.
    report.write_json(tmp_path / "results.json", run)
    again = report.read_json(tmp_path / "results.json")
    assert again.results[0].by_users[1000]["cluster_profile"] == result(700, 2.6)
