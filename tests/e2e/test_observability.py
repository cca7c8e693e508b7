"""Tracing and metrics across the three real processes, started the way `make run` starts them.

The gateway runs with two workers (under gunicorn, and under granian too for the metrics):
/metrics must add up both.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.metrics import recorded_files
from tests.harness import RealStack, children_of, real_stack, wait_until
from tests.observability.metrics_text import sample

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
REQUESTS = "authgate_gateway_requests_total"


# Every test on either server: one stack each, where parametrizing only the metrics tests
# made a third (pytest runs a module's unparametrized and parametrized uses apart).
@pytest.fixture(scope="module", params=["gunicorn", "granian"])
def observed(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[RealStack]:
    server: str = request.param
    with real_stack(
        tmp_path_factory.mktemp("observed"), metrics=True, gateway_workers=2, gateway_server=server
    ) as stack:
        yield stack


def post(observed: RealStack, path: str, body: object, request_id: str) -> requests.Response:
    return requests.post(
        f"{observed.url}{path}", json=body, headers={"X-Request-ID": request_id}, timeout=10
    )


def lines_appear(observed: RealStack, name: str, request_id: str, message: str) -> bool:
    return bool(observed.wait_for_lines_of(name, request_id, message, within=5))


def test_one_request_id_ties_the_gateway_line_to_the_service_line_of_each_request(
    observed: RealStack,
) -> None:
    registered = post(
        observed, "/v1/auth/register", {"username": "tracy", "password": PASSWORD}, "e2e-reg"
    )
    assert registered.status_code == 201
    user_id = registered.json()["user_id"]
    login = post(
        observed, "/v1/auth/login", {"username": "tracy", "password": PASSWORD}, "e2e-login"
    )
    assert login.status_code == 200
    profile = requests.get(
        f"{observed.url}/v1/profile",
        headers={
            "Authorization": f"Bearer {login.json()['access_token']}",
            "X-Request-ID": "e2e-profile",
        },
        timeout=10,
    )
    assert profile.status_code == 200

    for request_id, service, method in (
        ("e2e-reg", "auth", "/authgate.auth.v1.AuthService/Register"),
        ("e2e-login", "auth", "/authgate.auth.v1.AuthService/Login"),
        ("e2e-profile", "profile", "/authgate.profile.v1.ProfileService/GetProfile"),
    ):
        assert lines_appear(observed, service, request_id, "rpc")
        [http] = observed.lines_of("gateway", request_id, "request")
        [rpc] = observed.lines_of(service, request_id, "rpc")
        assert http["status"] in {200, 201}
        assert isinstance(http["latency_ms"], float)
        assert rpc["method"] == method
        assert rpc["code"] == "OK"
        assert rpc["user_id"] == user_id
        assert isinstance(rpc["latency_ms"], float)
    assert observed.lines_of("gateway", "e2e-profile", "request")[0]["user_id"] == user_id

    logs = "\n".join(
        (observed.log_dir / f"{n}.log").read_text() for n in ("gateway", "auth", "profile")
    )
    assert PASSWORD not in logs
    assert login.json()["access_token"] not in logs
    assert login.json()["refresh_token"] not in logs


def healthz_served_per_worker(metrics_dir: Path) -> dict[str, float]:
    """Requests to /healthz counted in each worker's own file (counter_<pid>.db)."""
    served: dict[str, float] = {}
    # As /metrics reads them: a worker's file still being made (empty) is passed over.
    for path in map(Path, recorded_files(metrics_dir)):
        if not path.name.startswith("counter_"):
            continue
        total = 0.0
        for metric in MultiProcessCollector.merge([str(path)]):  # type: ignore[no-untyped-call]
            for found in metric.samples:
                if found.name == REQUESTS and found.labels.get("route") == "/healthz":
                    total += found.value
        served[path.stem] = total
    return served


def test_gateway_metrics_add_up_every_worker(observed: RealStack) -> None:
    def healthz(_: int) -> int:
        # A new connection each time, so that both workers get to accept some.
        return requests.get(f"{observed.url}/healthz", timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(max_workers=16) as pool:
        for _ in range(20):
            assert set(pool.map(healthz, range(40))) == {200}
            sent += 40
            served = healthz_served_per_worker(observed.settings.gateway_metrics_dir)
            if sum(1 for count in served.values() if count > 0) >= 2:
                break
    served = healthz_served_per_worker(observed.settings.gateway_metrics_dir)
    assert sum(1 for count in served.values() if count > 0) >= 2, served

    text = requests.get(f"{observed.url}/metrics", timeout=10).text

    assert sample(text, REQUESTS, {"route": "/healthz", "method": "GET", "status": "200"}) == sent
    assert sum(served.values()) == sent


def test_a_dead_workers_live_gauges_stop_counting(observed: RealStack) -> None:
    # The revocation feed's gauges are "live" ones: a worker's files must go when it dies
    # (gunicorn's child_exit hook; gateway.granian_serve when granian replaces the worker).
    folder = observed.settings.gateway_metrics_dir
    victim = children_of(observed.pid("gateway"))[0]
    live = f"gauge_live*_{victim}.db"
    wait_until(lambda: list(folder.glob(live)), what=f"worker {victim}'s live gauge files")

    os.kill(victim, signal.SIGKILL)

    wait_until(lambda: not list(folder.glob(live)), what=f"{victim}'s files removed")
    observed.wait_until_ready()
    assert len(children_of(observed.pid("gateway"))) == 2


def test_each_service_serves_its_metrics_on_its_configured_port(observed: RealStack) -> None:
    post(observed, "/v1/auth/register", {"username": "metra", "password": PASSWORD}, "e2e-m1")
    post(observed, "/v1/auth/login", {"username": "metra", "password": PASSWORD}, "e2e-m2")

    urls = observed.settings.metrics_urls()
    auth = requests.get(urls["auth"], timeout=5).text
    profile = requests.get(urls["profile"], timeout=5)

    assert sample(auth, "authgate_auth_logins_total", {"result": "ok"}) >= 1
    assert sample(auth, "grpc_server_handled_total", {"grpc_method": "Register"}) >= 1
    assert profile.status_code == 200
    assert "grpc_server_handled_total" in profile.text
