"""granian serves the gateway with the settings gunicorn gets (gateway/granian_serve.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from authgate_common.config import ConfigError, Env
from gateway import granian_serve
from gateway.config import GATEWAY_SERVER
from gateway.serving import ServingSettings

SERVE = [sys.executable, "-m", "gateway.granian_serve"]


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        SERVE, env={**os.environ, **env}, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        ("GATEWAY_THREADS", "0", "GATEWAY_THREADS must be at least 1 and at most 1024, got 0"),
        (
            "GATEWAY_MAX_BODY_BYTES",
            "0",
            "GATEWAY_MAX_BODY_BYTES must be at least 1 and at most 16777216, got 0",
        ),
    ],
    ids=["a serving row", "an application row"],
)
def test_a_bad_value_stops_it_with_one_clear_line(variable: str, value: str, line: str) -> None:
    result = serve({variable: value})
    assert result.returncode == 2
    assert result.stderr.strip() == f"gateway: configuration error: {line}"
    assert result.stdout == ""


def test_a_port_in_use_is_one_line_too() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve({"GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(port)})
    assert result.returncode == 1
    assert result.stderr.startswith(f"gateway: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_module_leaves_prometheus_client_unimported() -> None:
    # The workers fork from this process after it has set PROMETHEUS_MULTIPROC_DIR.
    probe = "import sys, gateway.granian_serve; print('prometheus_client' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"


def test_port_0_binds_a_free_port_that_the_listener_reports() -> None:
    with granian_serve.bind("127.0.0.1", 0) as listener:
        host, port = listener.getsockname()[:2]
        assert (host, listener.get_inheritable()) == ("127.0.0.1", True)
        assert port > 0


def test_an_ipv6_host_binds_an_ipv6_socket() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        listener = granian_serve.bind("::1", 0)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with listener:
        assert listener.family == socket.AF_INET6


def test_keepalive_and_header_size_map_onto_granians_http1_settings() -> None:
    settings = ServingSettings.from_env(Env({"GATEWAY_KEEPALIVE": "75"}))
    http1 = granian_serve.http1_settings(settings)
    assert (http1.keep_alive, http1.header_read_timeout) == (True, 75_000)
    # The head as a whole: a 16 KiB header and the rest of the request fit.
    assert http1.max_buffer_size == 2 * settings.max_header_field_bytes


def test_a_keepalive_of_0_turns_keep_alive_off() -> None:
    settings = ServingSettings.from_env(Env({"GATEWAY_KEEPALIVE": "0"}))
    assert granian_serve.http1_settings(settings).keep_alive is False


def test_the_server_setting_names_gunicorn_or_granian() -> None:
    assert GATEWAY_SERVER.read(Env({})) == "gunicorn"
    assert GATEWAY_SERVER.read(Env({"GATEWAY_SERVER": "granian"})) == "granian"
    with pytest.raises(ConfigError, match="GATEWAY_SERVER must be one of granian, gunicorn"):
        GATEWAY_SERVER.read(Env({"GATEWAY_SERVER": "uwsgi"}))
