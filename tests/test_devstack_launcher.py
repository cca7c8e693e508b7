"""devstack.launcher reads the port each process bound from the line it logs at start."""

from __future__ import annotations

import json

from devstack.launcher import BoundPorts, reported_ports


def test_the_gateway_port_comes_from_gunicorns_listening_line() -> None:
    line = "[2026-12-01 08:45:32 +0000] [16785] [INFO] Listening at: http://127.0.0.1:55343 (16785)"

    assert reported_ports("gateway", line) == BoundPorts(55343)
    assert reported_ports("gateway", "[INFO] Booting worker with pid: 16787") is None


def test_a_services_ports_come_from_its_start_line() -> None:
    start = {"message": "auth service listening", "address": "127.0.0.1:38097", "metrics_port": 9}
    no_metrics = {
        "message": "profile service started",
        "address": "[::1]:4242",
        "metrics_port": None,
    }

    assert reported_ports("auth", json.dumps(start)) == BoundPorts(38097, 9)
    assert reported_ports("profile", json.dumps(no_metrics)) == BoundPorts(4242, None)


def test_other_lines_of_a_service_are_not_its_start_line() -> None:
    metrics_endpoint = {"message": "metrics endpoint listening", "address": "127.0.0.1:9101"}

    assert reported_ports("auth", json.dumps(metrics_endpoint)) is None
    assert reported_ports("auth", "Traceback (most recent call last):") is None
    assert reported_ports("auth", json.dumps(["address", "metrics_port"])) is None
