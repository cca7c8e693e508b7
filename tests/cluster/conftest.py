"""One running cluster (nginx, two gateways, two replicas of each service) for this folder.

It listens on a port block of its own (18xxx), away from `make run` and `make cluster`,
and keeps its state in two MariaDB databases and a Redis key prefix of this run's own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from devstack.cluster import Cluster, ClusterSettings
from tests.conftest import temporary_mysql_database
from tests.harness import CHEAP_ARGON2_ENV
from tests.observability.metrics_text import sample

PASSWORD = "correct horse battery staple"
JSON = {"Content-Type": "application/json"}


@dataclass
class RunningCluster:
    cluster: Cluster
    settings: ClusterSettings

    @property
    def url(self) -> str:
        return self.settings.url

    def gateway(self, index: int) -> str:
        return self.settings.gateway_url(index)

    def handled(self, service: str, index: int, method: str) -> float:
        """How many calls of method one replica has answered, from its own metrics."""
        text = requests.get(self.settings.metrics_url(service, index), timeout=5).text
        return sample(text, "grpc_server_handled_total", {"grpc_method": method})

    def register_and_login(self, base: str | None = None) -> dict[str, str]:
        base = base or self.url
        username = f"cl_{uuid.uuid4().hex[:12]}"
        body = {"username": username, "password": PASSWORD}
        assert requests.post(f"{base}/v1/auth/register", json=body, timeout=10).status_code == 201
        login = requests.post(f"{base}/v1/auth/login", json=body, timeout=10)
        assert login.status_code == 200, login.text
        return {"username": username, **login.json()}


@pytest.fixture(scope="package")
def running_cluster(
    tmp_path_factory: pytest.TempPathFactory, mysql_server_url: str, redis_url: str
) -> Iterator[RunningCluster]:
    state: Path = tmp_path_factory.mktemp("cluster")
    with ExitStack() as cleanup:
        auth_db = cleanup.enter_context(temporary_mysql_database(mysql_server_url, "cl_auth"))
        profile_db = cleanup.enter_context(temporary_mysql_database(mysql_server_url, "cl_profile"))
        settings = ClusterSettings(
            state_dir=state,
            balancer_port=18080,
            gateway_ports=(18081, 18082),
            auth_ports=(18061, 18062),
            profile_ports=(18071, 18072),
            auth_metrics_ports=(18111, 18112),
            profile_metrics_ports=(18121, 18122),
            mysql_server_url=mysql_server_url,
            auth_database=auth_db.rsplit("/", 1)[1],
            profile_database=profile_db.rsplit("/", 1)[1],
            redis_url=redis_url,
            rate_limit_key_prefix=f"authgate-cluster-test-{uuid.uuid4().hex}",
            extra_env={
                **CHEAP_ARGON2_ENV,
                # Replicas see a new key within 0.5 s and sign with it 2 s after it is written;
                # a verifier refetches an unknown kid 1 s after its last fetch at the latest.
                # Activation > reload + cooldown, as the defaults are (60 > 30 + 5).
                "AUTH_KEYS_RELOAD_SECONDS": "0.5",
                "AUTH_KEY_ACTIVATION_SECONDS": "2",
                "JWKS_REFETCH_COOLDOWN_SECONDS": "1",
            },
        )
        cluster = Cluster(settings)
        cluster.start(timeout=120)
        cleanup.callback(cluster.stop)
        yield RunningCluster(cluster, settings)


@dataclass
class Load:
    """Requests sent in a loop from a few threads until stopped; each answer timed."""

    send: Callable[[requests.Session], requests.Response]
    threads: int = 4
    answers: list[tuple[float, int]] = field(default_factory=list)
    # What each failed answer said ("503 GET /v1/profile: <detail>"), for the assertion.
    failed: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Load:
        self._pool = ThreadPoolExecutor(max_workers=self.threads)
        self._futures = [self._pool.submit(self._loop) for _ in range(self.threads)]
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=60)
        self._pool.shutdown()

    def _loop(self) -> None:
        deadline = time.monotonic() + 60  # bounded, whatever the test does
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                failure = ""
                try:
                    response = self.send(session)
                    status = response.status_code
                    if status >= 500:
                        failure = f"{status} {response.request.path_url}: {response.text[:300]}"
                except requests.RequestException as exc:
                    status = 599  # no answer at all counts as a failure
                    failure = f"599: {type(exc).__name__}"
                with self._lock:
                    now = time.monotonic()
                    self.answers.append((now, status))
                    if failure:
                        self.failed.append((now, failure))

    def count(self) -> int:
        with self._lock:
            return len(self.answers)

    def wait_for(self, more: int, timeout: float = 20) -> None:
        """Until `more` further answers have come (the load is really running)."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            assert time.monotonic() < deadline, "the load made no progress"
            time.sleep(0.02)

    def run_for(self, seconds: float) -> None:
        """Let the load go on for `seconds` (and make progress meanwhile)."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.wait_for(1)

    def failures(self, after: float, before: float = float("inf")) -> Counter[str]:
        """The failed answers between after and before, each by what it said."""
        with self._lock:
            return Counter(said for at, said in self.failed if after <= at < before)
