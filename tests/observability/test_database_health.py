"""Each service's grpc.health.v1 status follows its database; the gateway's /readyz follows both.

The database is taken away by cutting a TCP proxy between the service and
MariaDB; the real server is never touched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import temporary_mysql_database
from tests.fixtures.services_fixtures import Services, ServicesFactory, health_status
from tests.harness import wait_until
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.mysql


def through(proxy: TcpProxy, database_url: str) -> str:
    return (
        make_url(database_url)
        .set(host=proxy.host, port=proxy.port)
        .render_as_string(hide_password=False)
    )


@pytest.fixture
def proxies(mysql_server_url: str) -> Iterator[dict[str, TcpProxy]]:
    server = make_url(mysql_server_url)
    with (
        TcpProxy(server.host or "127.0.0.1", server.port or 3306) as auth_proxy,
        TcpProxy(server.host or "127.0.0.1", server.port or 3306) as profile_proxy,
    ):
        yield {"auth": auth_proxy, "profile": profile_proxy}


@pytest.fixture
def proxied_services(
    services_factory: ServicesFactory, mysql_server_url: str, proxies: dict[str, TcpProxy]
) -> Iterator[Services]:
    with (
        temporary_mysql_database(mysql_server_url, "health_auth") as auth_db,
        temporary_mysql_database(mysql_server_url, "health_profile") as profile_db,
    ):
        services = services_factory(
            through(proxies["auth"], auth_db), through(proxies["profile"], profile_db)
        )
        yield services
        services.auth.stop(0)
        services.profile.stop(0)


def targets(services: Services) -> dict[str, str]:
    return {"auth": services.auth.target, "profile": services.profile_target}


def test_both_services_serve_while_their_databases_answer(proxied_services: Services) -> None:
    for target in targets(proxied_services).values():
        assert health_status(target) == "SERVING"
    assert proxied_services.gateway.get("/readyz").status_code == 200


@pytest.mark.parametrize("down", ["auth", "profile"])
def test_a_service_whose_database_is_unreachable_is_not_serving_and_readyz_is_503(
    proxied_services: Services, proxies: dict[str, TcpProxy], down: str
) -> None:
    proxies[down].cut()

    status = targets(proxied_services)
    assert wait_until(lambda: health_status(status[down]) == "NOT_SERVING", within=5)
    other = "profile" if down == "auth" else "auth"
    assert health_status(status[other]) == "SERVING"
    ready = proxied_services.gateway.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["upstreams"] == {down: "NOT_SERVING", other: "SERVING"}


@pytest.mark.parametrize("down", ["auth", "profile"])
def test_a_service_serves_again_when_its_database_returns_without_a_restart(
    proxied_services: Services, proxies: dict[str, TcpProxy], down: str
) -> None:
    target = targets(proxied_services)[down]
    proxies[down].cut()
    assert wait_until(lambda: health_status(target) == "NOT_SERVING", within=5)

    proxies[down].restore()

    assert wait_until(lambda: health_status(target) == "SERVING", within=5)
    # The gateway's revocation feed and upstream channels reconnect with their own backoff
    # (up to 2 s and 1 s a round): ready again without a restart, in its own time, which a
    # busy machine has stretched past 10 s once.
    assert wait_until(lambda: proxied_services.gateway.get("/readyz").status_code == 200, within=30)
    # And the service really works again: a full flow through the gateway.
    registered = proxied_services.gateway.post(
        "/v1/auth/register", json={"username": "back", "password": "correct horse battery"}
    )
    assert registered.status_code == 201


def test_a_database_that_stops_answering_is_not_serving_after_the_check_timeout(
    proxied_services: Services, proxies: dict[str, TcpProxy]
) -> None:
    proxies["auth"].stall()  # connections stay open, no byte passes: a frozen server

    assert wait_until(lambda: health_status(proxied_services.auth.target) == "NOT_SERVING")
    proxies["auth"].restore()
    assert wait_until(lambda: health_status(proxied_services.auth.target) == "SERVING", within=10)
