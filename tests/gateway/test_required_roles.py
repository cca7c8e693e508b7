"""The `required_roles` option at the gateway: read into the routes from the descriptors,
checked as whole role names against the verified token, answered 403 insufficient_scope."""

from __future__ import annotations

import pytest

from authgate_common.authorization import required_roles
from authgate_common.jwks import JwksCache
from authgate_common.tokens import TokenSettings, TokenVerifier
from gateway.auth import Authenticator
from gateway.errors import Problem
from gateway.routes import build_routes, fronted_services, route_table
from tests.token_factory import TokenFactory


def test_every_admin_route_requires_admin_and_no_other_route_requires_a_role() -> None:
    for route in build_routes(fronted_services()):
        expected = ("admin",) if route.template.startswith("/v1/admin/") else ()
        assert route.required_roles == expected, route.template
        # The services read the very same option by the gRPC path.
        assert required_roles(route.grpc_path) == expected


def test_a_path_the_descriptors_do_not_know_requires_nothing() -> None:
    assert required_roles("/no.such.Service/Call") == ()
    assert required_roles("garbage") == ()


@pytest.fixture
def factory(token_settings: TokenSettings) -> TokenFactory:
    return TokenFactory(token_settings)


@pytest.fixture
def authenticator(factory: TokenFactory, token_settings: TokenSettings) -> Authenticator:
    keys = JwksCache(factory.jwks_source(), allowed_algorithms=token_settings.algorithms)
    return Authenticator(TokenVerifier(token_settings, keys), max_token_bytes=8192)


@pytest.mark.parametrize(
    "roles",
    [[], ["admins"], ["Admin"], ["sysadmin"], ["admin:read"], ["adm"], ["", "user"]],
)
def test_roles_that_are_not_exactly_admin_get_403_insufficient_scope(
    authenticator: Authenticator, factory: TokenFactory, roles: list[str]
) -> None:
    caller = authenticator.authenticate(f"Bearer {factory.mint('u1', 'bob', roles=roles)}")

    with pytest.raises(Problem) as raised:
        authenticator.authorize(caller, ("admin",))

    assert raised.value.status == 403
    assert 'error="insufficient_scope"' in raised.value.headers["WWW-Authenticate"]


def test_any_one_required_role_suffices_and_no_requirement_admits_everyone(
    authenticator: Authenticator, factory: TokenFactory
) -> None:
    caller = authenticator.authenticate(
        f"Bearer {factory.mint('u1', 'bob', roles=['support', 'admin'])}"
    )
    authenticator.authorize(caller, ("auditor", "admin"))
    nobody = authenticator.authenticate(f"Bearer {factory.mint('u2', 'eve')}")
    authenticator.authorize(nobody, ())
    assert nobody.identity.roles == frozenset()


@pytest.mark.parametrize("roles", ["admin", {"admin": True}, [1], [["admin"]]])
def test_a_roles_claim_that_is_not_a_list_of_strings_is_refused(
    authenticator: Authenticator, factory: TokenFactory, roles: object
) -> None:
    with pytest.raises(Problem) as raised:
        authenticator.authenticate(f"Bearer {factory.mint('u1', 'bob', roles=roles)}")
    assert raised.value.status == 401


def test_the_route_table_shows_access_and_limits() -> None:
    table = route_table(build_routes(fronted_services())).splitlines()
    assert table[0].split() == ["METHOD", "PATH", "RPC", "ACCESS", "RATE", "LIMIT"]
    rows = {(line.split()[0], line.split()[1]): line for line in table[1:]}
    assert "roles: admin" in rows[("POST", "/v1/admin/users/{user_id}:disable")]
    assert "public" in rows[("POST", "/v1/auth/login")]
    assert "10/minute" in rows[("POST", "/v1/auth/login")]
    assert "authenticated" in rows[("GET", "/v1/profile")]
