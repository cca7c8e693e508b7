"""deploy/nginx/nginx.conf: the balancer in front of the compose gateways, parsed and checked.

The file is parsed with crossplane (nginx's own parser library). When an nginx binary is
installed, `nginx -t` also checks it; an nginx older than 1.27.3 (Debian's) lacks the
upstream `resolve` parameter the compose image (nginx 1.28) has, so for it only that
parameter is dropped and the compose host names are pointed at loopback.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import crossplane
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Methods nginx may send to another gateway after a failure: never POST or PATCH.
RETRY_CONDITIONS = ["error", "timeout", "http_502", "http_503"]

Directive = dict[str, Any]


@pytest.fixture(scope="module")
def config() -> list[Directive]:
    parsed = crossplane.parse(str(NGINX_CONF), comments=False, single=True)
    assert parsed["status"] == "ok", parsed["errors"]
    directives: list[Directive] = parsed["config"][0]["parsed"]
    return directives


def block(directives: list[Directive], name: str, *args: str) -> list[Directive]:
    (found,) = [
        d for d in directives if d["directive"] == name and d["args"][: len(args)] == list(args)
    ]
    result: list[Directive] = found["block"]
    return result


def values(directives: list[Directive], name: str) -> list[list[str]]:
    return [d["args"] for d in directives if d["directive"] == name]


def every(directives: list[Directive], name: str) -> list[list[str]]:
    """The arguments of each `name` directive at any depth."""
    found = []
    for directive in directives:
        if directive["directive"] == name:
            found.append(directive["args"])
        found.extend(every(directive.get("block", []), name))
    return found


def location(config: list[Directive], *args: str) -> list[Directive]:
    return block(block(block(config, "http"), "server"), "location", *args)


def compose_services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    return services


def test_the_upstream_is_every_gateway_replica_with_passive_health_checks(
    config: list[Directive],
) -> None:
    gateway = compose_services()["gateway"]
    port = gateway["environment"]["GATEWAY_PORT"]
    upstream = block(block(config, "http"), "upstream", "gateways")
    (server,) = values(upstream, "server")
    # `resolve`: the name's every address is a server, re-resolved as replicas come and go.
    assert server[0] == f"gateway:{port}"
    assert "resolve" in server[1:]
    parameters = dict(arg.split("=", 1) for arg in server[1:] if "=" in arg)
    assert int(parameters["max_fails"]) >= 1
    assert re.fullmatch(r"\d+s", parameters["fail_timeout"])
    # `resolve` needs a shared zone and a resolver: Docker's embedded DNS.
    assert values(upstream, "zone")
    assert values(block(config, "http"), "resolver")[0][0] == "127.0.0.11"


def test_only_failures_before_an_answer_or_502_503_are_retried_on_another_gateway(
    config: list[Directive],
) -> None:
    proxied = location(config, "/")
    assert values(proxied, "proxy_pass") == [["http://gateways"]]
    assert values(proxied, "proxy_next_upstream") == [RETRY_CONDITIONS]
    # No `non_idempotent` anywhere: a login, a refresh or a profile update is never sent
    # twice.
    assert [args for args in every(config, "proxy_next_upstream") if "non_idempotent" in args] == []


def test_the_client_address_is_appended_to_x_forwarded_for(config: list[Directive]) -> None:
    headers = {
        args[0].lower(): args[1] for args in values(location(config, "/"), "proxy_set_header")
    }
    # Appended, not replaced by what the client sent: the gateway trusts one hop
    # (GATEWAY_TRUSTED_PROXY_COUNT=1) and takes the rightmost address, nginx's peer.
    assert headers["x-forwarded-for"] == "$proxy_add_x_forwarded_for"
    gateway = compose_services()["gateway"]
    assert gateway["environment"]["GATEWAY_TRUSTED_PROXY_COUNT"] == "1"


def test_nginx_listens_where_compose_publishes_it_and_names_no_version(
    config: list[Directive],
) -> None:
    server = block(block(config, "http"), "server")
    (published,) = compose_services()["nginx"]["ports"]
    container_port = published.rsplit(":", 1)[1]
    assert values(server, "listen") == [[container_port]]
    assert values(block(config, "http"), "server_tokens") == [["off"]]


def test_nginx_writes_only_under_tmp(config: list[Directive]) -> None:
    # Its container runs unprivileged on a read-only root with a tmpfs at /tmp.
    http = block(config, "http")
    written = [
        *values(config, "pid"),
        *(
            values(http, f"{kind}_temp_path")[0]
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
    ]
    assert all(args[0].startswith("/tmp/") for args in written), written  # noqa: S108
    nginx = compose_services()["nginx"]
    assert nginx["read_only"] is True
    assert nginx["tmpfs"] == ["/tmp"]  # noqa: S108


def test_the_healthcheck_endpoint_answers_only_from_inside(config: list[Directive]) -> None:
    health = location(config, "=", "/nginx-health")
    assert values(health, "allow") == [["127.0.0.1"]]
    assert values(health, "deny") == [["all"]]
    test = compose_services()["nginx"]["healthcheck"]["test"]
    assert test[-1] == "http://127.0.0.1:8080/nginx-health"


def nginx_version(binary: str) -> tuple[int, ...]:
    shown = subprocess.run([binary, "-v"], capture_output=True, text=True, check=True).stderr
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", shown)
    assert found, shown
    return tuple(int(part) for part in found.groups())


@pytest.mark.skipif(shutil.which("nginx") is None, reason="no nginx binary installed")
def test_nginx_accepts_the_file(tmp_path: Path) -> None:
    binary = shutil.which("nginx")
    assert binary is not None
    text = NGINX_CONF.read_text()
    # Compose's names do not resolve here; nginx -t resolves upstream hosts.
    text = text.replace("server gateway:8080", "server 127.0.0.1:8080")
    if nginx_version(binary) < (1, 27, 3):
        text = re.sub(r"(server 127\.0\.0\.1:8080) resolve", r"\1", text)
    checked = tmp_path / "nginx.conf"
    checked.write_text(text)
    result = subprocess.run(
        [binary, "-t", "-q", "-c", str(checked), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
