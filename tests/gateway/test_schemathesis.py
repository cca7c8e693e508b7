"""Property-based API tests: schemathesis drives the gateway from its own /openapi.json.

The gateway runs in front of the real auth and profile services (SQLite and MariaDB), so
every generated request goes the whole way. Checks: no 5xx, and every response (status,
content type, body, headers) as the document says. Schema-valid requests that the
services' own rules refuse (a password containing the username, say) are fine: those
rules are not in the protos, so the document cannot state them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from auth_svc.server import AuthServer
from authgate_common.tokens import TokenSettings
from gateway.app import close_app, create_app
from gateway.config import GatewayConfig
from gateway.rate_limits import RateLimitSettings
from tests.fixtures.profile_fixtures import ProfileServerFactory

USERNAME = "schemathesis"
PASSWORD = "correct horse battery staple"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Per operation and mode; the whole file stays well under 30 s on both backends.
MAX_EXAMPLES = 30
EXAMPLES = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


@pytest.fixture
def gateway_apps(
    auth_server: AuthServer,
    profile_server_factory: ProfileServerFactory,
    database_url: str,
    token_settings: TokenSettings,
) -> Iterator[Callable[[RateLimitSettings], Flask]]:
    """Makes gateway apps in front of the real services on `database_url`; closes them after."""
    profile = profile_server_factory(database_url, auth_target=auth_server.target)
    apps: list[Flask] = []

    def make(rate_limits: RateLimitSettings) -> Flask:
        config = GatewayConfig(
            auth_target=auth_server.target,
            profile_target=f"127.0.0.1:{profile.port}",
            tokens=token_settings,
            rate_limits=rate_limits,
        )
        apps.append(create_app(config))
        return apps[-1]

    yield make
    for app in apps:
        close_app(app)


@pytest.fixture
def live_gateway(gateway_apps: Callable[[RateLimitSettings], Flask]) -> Flask:
    """The gateway with the rate limits the protos declare."""
    return gateway_apps(RateLimitSettings())


@pytest.fixture
def api_schema(live_gateway: Flask) -> BaseSchema:
    return schemathesis.openapi.from_wsgi("/openapi.json", live_gateway)


@pytest.fixture
def bearer_headers(live_gateway: Flask) -> dict[str, str]:
    """A real user's access token, so that the secured operations are exercised past auth."""
    client = live_gateway.test_client()
    credentials = {"username": USERNAME, "password": PASSWORD}
    registered = client.post("/v1/auth/register", json=credentials)
    assert registered.status_code == 201, registered.get_data(as_text=True)
    login = client.post("/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.get_data(as_text=True)
    return {"Authorization": f"Bearer {login.get_json()['access_token']}"}


def exercise(
    operation: APIOperation[Any, Any, Any, Any],
    mode: GenerationMode,
    bearer_headers: dict[str, str],
) -> None:
    # Cases with a body carry the real token so that the body reaches validation; the
    # others keep the Authorization header schemathesis makes up (hostile tokens).
    headers = bearer_headers if mode.is_positive or operation.body else None

    @given(case=operation.as_strategy(generation_mode=mode))
    @EXAMPLES
    def run(case: Case[Any]) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def test_every_generated_valid_request_is_answered_as_the_document_says(
    api_schema: BaseSchema, bearer_headers: dict[str, str]
) -> None:
    """Positive cases fit the document: none may get a 5xx or an answer it does not state."""
    exercise_every_operation(api_schema, GenerationMode.POSITIVE, bearer_headers)


# Cases that break the document are refused by the gateway's checks before a service reads
# its database, so one backend is enough for them (their generation is the costliest).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_generated_invalid_request_is_answered_as_the_document_says(
    api_schema: BaseSchema, bearer_headers: dict[str, str]
) -> None:
    """Negative cases break the document: none may get a 5xx or an answer it does not state."""
    exercise_every_operation(api_schema, GenerationMode.NEGATIVE, bearer_headers)


def exercise_every_operation(
    api_schema: BaseSchema, mode: GenerationMode, bearer_headers: dict[str, str]
) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # a valid document has no broken operation
        operation = result.ok()
        try:
            exercise(operation, mode, bearer_headers)
        except Unsatisfiable:
            assert mode.is_negative, operation.label  # nothing to break: it takes no input
        except Exception as exc:  # one report for every operation
            failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)


# The only refusals of schema-valid input allowed: rules JSON Schema cannot state.
UNSTATABLE_RULES = re.compile(r"password must not contain the username|password is too common")


@pytest.fixture
def unlimited_gateway(gateway_apps: Callable[[RateLimitSettings], Flask]) -> Flask:
    """Without rate limits: a 429 must not hide a refused valid request."""
    return gateway_apps(RateLimitSettings(enabled=False))


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/auth/register"), ("PATCH", "/v1/profile")]
)
def test_requests_the_document_calls_valid_are_not_refused_as_bad_input(
    unlimited_gateway: Flask, method: str, path: str
) -> None:
    """The field rules the document states are the services' rules: no 400 for valid data."""
    schema = schemathesis.openapi.from_wsgi("/openapi.json", unlimited_gateway)
    client = unlimited_gateway.test_client()
    credentials = {"username": USERNAME, "password": PASSWORD}
    assert client.post("/v1/auth/register", json=credentials).status_code == 201
    login = client.post("/v1/auth/login", json=credentials).get_json()
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    operation = schema[path][method]

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE))
    @EXAMPLES
    def run(case: Case[Any]) -> None:
        response = case.call(headers=headers)
        if response.status_code == 400:
            detail = response.json()["detail"]
            assert UNSTATABLE_RULES.search(detail), f"{case.body!r} refused: {detail}"
        else:
            assert response.status_code < 400 or response.status_code == 409, response.text

    run()
