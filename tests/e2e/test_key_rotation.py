"""Signing-key rotation without downtime, on the three real processes.

Log in (token A, old kid); rotate with the CLI; the running auth service picks the
new key up by itself; token A keeps working at the gateway and at the profile
service; a new login carries the new kid, which the gateway learns through its
unknown-kid refetch; the JWKS lists both keys.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import jwt
import pytest
import requests
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc

from tests.fixtures.auth_fixtures import rotate_keys
from tests.harness import RealStack, real_stack, wait_until

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
RELOAD_SECONDS = 0.2
COOLDOWN_SECONDS = 0.2


@pytest.fixture(scope="module")
def rotating_stack(
    tmp_path_factory: pytest.TempPathFactory, auth_key_pem: bytes
) -> Iterator[RealStack]:
    with real_stack(
        tmp_path_factory.mktemp("rotation"),
        signing_key_pem=auth_key_pem,
        extra_env={
            "AUTH_KEYS_RELOAD_SECONDS": str(RELOAD_SECONDS),
            # One replica: nothing to wait for before signing (tests/cluster has two).
            "AUTH_KEY_ACTIVATION_SECONDS": "0",
            "JWKS_REFETCH_COOLDOWN_SECONDS": str(COOLDOWN_SECONDS),
        },
    ) as stack:
        yield stack


def _login(stack: RealStack, username: str) -> str:
    response = stack.post("/v1/auth/login", {"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def _kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def _profile_at_gateway(stack: RealStack, token: str) -> requests.Response:
    return requests.get(
        f"{stack.url}/v1/profile", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _profile_at_service(stack: RealStack, token: str) -> Any:
    with grpc.insecure_channel(stack.profile_target) as channel:
        stub: Any = profile_pb2_grpc.ProfileServiceStub(channel)
        return stub.GetProfile(
            profile_pb2.GetProfileRequest(),
            metadata=(("authorization", f"Bearer {token}"),),
            timeout=10,
        )


def _published_kids(stack: RealStack) -> list[str]:
    with grpc.insecure_channel(stack.auth_target) as channel:
        stub: Any = auth_pb2_grpc.AuthServiceStub(channel)
        return [key.kid for key in stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=5).keys]


def _rotate(stack: RealStack) -> str:
    """`python -m auth_svc.keys rotate` as an operator runs it; the new kid it prints."""
    result = rotate_keys(stack.stack.settings.environment())
    assert result.returncode == 0, result.stderr
    return result.stdout.split()[3]  # "new signing key <kid> in <path>; ..."


def test_rotation_keeps_old_tokens_valid_and_new_tokens_carry_the_new_kid(
    rotating_stack: RealStack,
) -> None:
    stack = rotating_stack
    username = f"user_{uuid.uuid4().hex[:10]}"
    created = stack.post("/v1/auth/register", {"username": username, "password": PASSWORD})
    assert created.status_code == 201, created.text
    token_a = _login(stack, username)
    old_kid = _kid(token_a)
    assert _profile_at_gateway(stack, token_a).status_code == 200  # the gateway caches old_kid

    new_kid = _rotate(stack)
    assert new_kid != old_kid
    wait_until(  # no restart
        lambda: _published_kids(stack) == [new_kid, old_kid], within=15, what="both kids published"
    )

    # Tokens of the old key keep working everywhere.
    assert _profile_at_gateway(stack, token_a).status_code == 200
    assert _profile_at_service(stack, token_a).username == username

    # New tokens carry the new kid, unknown to the verifiers' caches until they refetch.
    time.sleep(COOLDOWN_SECONDS)
    token_b = _login(stack, username)
    assert _kid(token_b) == new_kid
    response = _profile_at_gateway(stack, token_b)
    assert response.status_code == 200, response.text
    assert _profile_at_service(stack, token_b).username == username

    jwks = requests.get(f"{stack.url}/.well-known/jwks.json", timeout=10).json()
    assert [key["kid"] for key in jwks["keys"]] == [new_kid, old_kid]
    assert stack.stack.process("auth").poll() is None  # the same process all along
