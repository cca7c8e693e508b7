"""How a service notices it is to stop: at once, wherever the signal lands, and its /metrics
endpoint with it (authgate_common.service, authgate_common.metrics)."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType

import pytest
import requests
from prometheus_client import CollectorRegistry, Counter

from authgate_common import service
from authgate_common.metrics import serve_metrics

# Far beyond what a wake-up takes: a wait that only the safety-net timeout ends fails.
SAFETY_NET_SECONDS = 120.0


@pytest.fixture
def stop_on_sigusr1() -> Iterator[threading.Event]:
    """A handler that sets the event on SIGUSR1, as serve's SIGTERM handler does."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGUSR1, request_stop)
    yield stop
    signal.signal(signal.SIGUSR1, previous)


def test_a_signal_handled_by_another_thread_ends_the_wait_without_the_timeout(
    stop_on_sigusr1: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "_SIGNAL_CHECK_SECONDS", SAFETY_NET_SECONDS)
    # The kernel may hand a process's signal to any of its threads; this one takes it.
    other = threading.Thread(
        target=lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
    )
    started = time.monotonic()
    other.start()

    service._wait_for_stop(stop_on_sigusr1)

    other.join()
    assert stop_on_sigusr1.is_set()
    assert time.monotonic() - started < SAFETY_NET_SECONDS / 2


def test_the_wait_leaves_no_wakeup_fd_behind(stop_on_sigusr1: threading.Event) -> None:
    stop_on_sigusr1.set()

    service._wait_for_stop(stop_on_sigusr1)

    assert signal.set_wakeup_fd(-1) == -1


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        pytest.param(
            "::1", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback")
        ),
    ],
)
def test_the_metrics_endpoint_serves_its_registry_and_stop_frees_the_port(host: str) -> None:
    registry = CollectorRegistry()
    Counter("authgate_probe", "A counter of this test.", registry=registry).inc()
    endpoint = serve_metrics(registry, host, 0)
    address = f"[{host}]" if ":" in host else host
    try:
        page = requests.get(f"http://{address}:{endpoint.port}/metrics", timeout=5)
        assert page.status_code == 200
        assert "authgate_probe_total 1.0" in page.text
    finally:
        endpoint.stop()

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as again:
        # As the next server would: SO_REUSEADDR passes the scrape's TIME_WAIT, not a
        # socket still listening.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind((host, endpoint.port))
        again.listen()
