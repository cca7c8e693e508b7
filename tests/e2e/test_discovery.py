"""Issuer discovery: a resource server verifies authgate tokens with configuration only."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator

import jwt
import pytest
import requests

from tests.harness import real_stack

PASSWORD = "correct horse battery staple"
ISSUER = "https://auth.example.test"
AUDIENCE = "orders-api"


@pytest.fixture(scope="module")
def published_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stack with a URL issuer and its public URL set, as a deployment would."""
    with real_stack(
        tmp_path_factory.mktemp("discovery"),
        gateway_workers=1,
        extra_env={"JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE},
    ) as running:
        # Where clients reach this gateway, known once it has bound its port: the auth
        # service is started again with it, as an operator sets it before deploying.
        stack = running.stack
        public = {**stack.settings.extra_env, "AUTH_PUBLIC_URL": running.url}
        stack.settings = dataclasses.replace(stack.settings, extra_env=public)
        running.restart("auth")
        yield running.url


def _access_token(gateway: str) -> str:
    body = {"username": f"rs_{uuid.uuid4().hex[:10]}", "password": PASSWORD}
    assert requests.post(f"{gateway}/v1/auth/register", json=body, timeout=10).status_code == 201
    login = requests.post(f"{gateway}/v1/auth/login", json=body, timeout=10)
    assert login.status_code == 200, login.text
    token: str = login.json()["access_token"]
    return token


def test_the_discovery_document_names_the_issuer_the_jwks_and_the_algorithms(
    published_gateway: str,
) -> None:
    answer = requests.get(f"{published_gateway}/.well-known/openid-configuration", timeout=10)
    assert answer.status_code == 200
    assert answer.json() == {
        "issuer": ISSUER,
        "jwks_uri": f"{published_gateway}/.well-known/jwks.json",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }


def test_a_stock_pyjwkclient_at_the_published_jwks_uri_verifies_a_token(
    published_gateway: str,
) -> None:
    discovery = requests.get(
        f"{published_gateway}/.well-known/openid-configuration", timeout=10
    ).json()
    token = _access_token(published_gateway)

    # What a resource server of another team writes: configuration only, no authgate code.
    client = jwt.PyJWKClient(discovery["jwks_uri"])
    claims = jwt.decode(
        token,
        client.get_signing_key_from_jwt(token).key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience=AUDIENCE,
        issuer=discovery["issuer"],
    )
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE


def test_the_jwks_may_be_cached_for_less_than_a_new_key_waits_before_signing(
    published_gateway: str,
) -> None:
    """Defaults: keys reloaded every 30 s, signing 60 s after publication: max-age 30."""
    for path in ("/.well-known/jwks.json", "/.well-known/openid-configuration"):
        answer = requests.get(f"{published_gateway}{path}", timeout=10)
        assert answer.headers["Cache-Control"] == "public, max-age=30"


def test_other_answers_are_still_not_stored(published_gateway: str) -> None:
    body = {"username": "nobody-at-all", "password": PASSWORD}
    login = requests.post(f"{published_gateway}/v1/auth/login", json=body, timeout=10)
    assert login.headers["Cache-Control"] == "no-store"
