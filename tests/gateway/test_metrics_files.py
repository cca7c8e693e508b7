"""/metrics in multiprocess mode (gunicorn's workers): every worker's file is added up, and
a file a worker is still making (empty) is passed over rather than failing the scrape."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from tests.fixtures.gateway_fixtures import GatewayClientFactory
from tests.observability.metrics_text import sample

REQUESTS = "authgate_gateway_requests_total"
HEALTHZ = {"route": "/healthz", "method": "GET", "status": "200"}


def write_worker_file(folder: Path, pid: int, healthz_served: float) -> None:
    """A worker's counter file, in prometheus-client's own format."""
    key = mmap_key(
        "authgate_gateway_requests", REQUESTS, list(HEALTHZ), list(HEALTHZ.values()), "requests"
    )
    values = MmapedDict(str(folder / f"counter_{pid}.db"))  # type: ignore[no-untyped-call]
    try:
        values.write_value(key, healthz_served, 0.0)  # type: ignore[no-untyped-call]
    finally:
        values.close()  # type: ignore[no-untyped-call]


def test_every_workers_file_is_added_up(
    fakes_client_factory: GatewayClientFactory, tmp_path: Path
) -> None:
    write_worker_file(tmp_path, 101, 3)
    write_worker_file(tmp_path, 102, 4)
    client = fakes_client_factory(metrics_multiprocess_dir=str(tmp_path))

    assert sample(client.get("/metrics").get_data(as_text=True), REQUESTS, HEALTHZ) == 7


def test_a_file_a_worker_is_still_making_does_not_fail_the_scrape(
    fakes_client_factory: GatewayClientFactory, tmp_path: Path
) -> None:
    write_worker_file(tmp_path, 101, 3)
    # prometheus-client creates the file, then sizes it: a scrape may fall in between, and
    # a worker killed then leaves it so (prometheus/client_python#1199).
    (tmp_path / "counter_102.db").touch()
    client = fakes_client_factory(metrics_multiprocess_dir=str(tmp_path))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert sample(response.get_data(as_text=True), REQUESTS, HEALTHZ) == 3
