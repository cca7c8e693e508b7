"""The profile service's token check: every ProfileService call needs a valid access token
whose identity agrees with any identity metadata; health and reflection stay open."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from authgate.auth.v1 import auth_pb2, revocation_pb2_grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from authgate_common.errors import Unauthenticated
from authgate_common.grpc_server import RunningServer
from authgate_common.interceptors import CallerIdentity
from authgate_common.tokens import TokenSettings
from tests.fixtures.profile_fixtures import ProfileServerFactory, start_profile_server
from tests.gateway.fake_upstreams import FakeRevocationService
from tests.profile.helpers import make_identity
from tests.token_factory import TokenFactory

USER_ID = str(uuid.uuid4())
USERNAME = "alice"
Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    token_settings: TokenSettings,
    token_factory: TokenFactory,
) -> Iterator[RunningServer]:
    # One SQLite-backed server for the whole module: these tests are about tokens, not storage.
    database = tmp_path_factory.mktemp("profile-auth") / "profile.db"
    running = start_profile_server(
        f"sqlite:///{database}", tokens=token_settings, jwks_source=token_factory.jwks_source()
    )
    yield running
    running.stop(grace=0)


@pytest.fixture(scope="module")
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> profile_pb2_grpc.ProfileServiceStub:
    return profile_pb2_grpc.ProfileServiceStub(channel)


def get_profile(stub: profile_pb2_grpc.ProfileServiceStub, metadata: Metadata) -> grpc.RpcError:
    """The error of a GetProfile call that must fail."""
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=metadata, timeout=5)
    return raised.value


def bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def test_a_valid_token_gets_the_profile(
    stub: profile_pb2_grpc.ProfileServiceStub, token_factory: TokenFactory
) -> None:
    token = token_factory.mint(USER_ID, USERNAME)

    profile = stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=bearer(token), timeout=5)

    assert (profile.user_id, profile.username) == (USER_ID, USERNAME)


def test_the_bearer_scheme_is_case_insensitive(
    stub: profile_pb2_grpc.ProfileServiceStub, token_factory: TokenFactory
) -> None:
    token = token_factory.mint(USER_ID, USERNAME)
    metadata = (("authorization", f"bearer {token}"),)

    assert stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=metadata, timeout=5).user_id


# Each case builds the metadata of a call that must be refused, from the factory.
HOSTILE: dict[str, Callable[[TokenFactory], Metadata]] = {
    "no metadata": lambda f: (),
    "empty authorization": lambda f: (("authorization", ""),),
    "scheme without token": lambda f: (("authorization", "Bearer"),),
    "basic scheme": lambda f: (("authorization", "Basic YWxpY2U6cGFzc3dvcmQ="),),
    "token without scheme": lambda f: (("authorization", f.mint(USER_ID, USERNAME)),),
    "garbage": lambda f: bearer("not.a.jwt"),
    "random bytes": lambda f: bearer("a" * 300),
    "refresh-token-like opaque string": lambda f: bearer("rt_" + uuid.uuid4().hex * 2),
    "expired": lambda f: bearer(
        f.mint(USER_ID, USERNAME, iat=int(time.time()) - 1000, exp=int(time.time()) - 100)
    ),
    "not yet valid": lambda f: bearer(f.mint(USER_ID, USERNAME, nbf=int(time.time()) + 600)),
    "issued in the future": lambda f: bearer(
        f.mint(USER_ID, USERNAME, iat=int(time.time()) + 600, exp=int(time.time()) + 900)
    ),
    "lifetime too long": lambda f: bearer(
        f.mint(USER_ID, USERNAME, exp=int(time.time()) + 30 * 86400)
    ),
    "wrong audience": lambda f: bearer(f.mint(USER_ID, USERNAME, aud="someone-else")),
    "wrong issuer": lambda f: bearer(f.mint(USER_ID, USERNAME, iss="https://evil.example")),
    "missing sub": lambda f: bearer(f.mint(USER_ID, USERNAME, sub=None)),
    "missing jti": lambda f: bearer(f.mint(USER_ID, USERNAME, jti=None)),
    "missing exp": lambda f: bearer(f.mint(USER_ID, USERNAME, exp=None)),
    "alg none": lambda f: bearer(f.alg_none(USER_ID, USERNAME)),
    "HS256 signed with the public key": lambda f: bearer(f.hs256_with_public_key(USER_ID)),
    "tampered payload": lambda f: bearer(f.tampered(f.mint(USER_ID, USERNAME), sub="admin")),
    "foreign key with the same kid": lambda f: bearer(f.foreign_key_same_kid(USER_ID)),
    "unknown kid": lambda f: bearer(f.mint_with_header({"kid": "unknown-kid"})),
    "no kid": lambda f: bearer(f.mint_with_header({"kid": None})),
    "not an access token (typ JWT)": lambda f: bearer(f.mint_with_header({"typ": "JWT"})),
    "no typ": lambda f: bearer(f.mint_with_header({"typ": None})),
    "algorithm not configured (RS512)": lambda f: bearer(f.mint_with_header({"alg": "RS512"})),
    "two authorization values": lambda f: (
        *bearer(f.mint(USER_ID, USERNAME)),
        *bearer(f.mint(str(uuid.uuid4()), "mallory")),
    ),
    "spoofed x-user-id": lambda f: (
        *bearer(f.mint(USER_ID, USERNAME)),
        ("x-user-id", str(uuid.uuid4())),
    ),
    "spoofed x-username": lambda f: (
        *bearer(f.mint(USER_ID, USERNAME)),
        ("x-username", "admin"),
    ),
    "spoofed x-user-id beside a matching one": lambda f: (
        *bearer(f.mint(USER_ID, USERNAME)),
        ("x-user-id", USER_ID),
        ("x-user-id", str(uuid.uuid4())),
    ),
    "x-user-id differing only in case": lambda f: (
        *bearer(f.mint(USER_ID, USERNAME)),
        ("x-user-id", USER_ID.upper()),
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_calls_without_a_valid_matching_token_are_unauthenticated(
    stub: profile_pb2_grpc.ProfileServiceStub, token_factory: TokenFactory, case: str
) -> None:
    metadata = HOSTILE[case](token_factory)

    error = get_profile(stub, metadata)

    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    details = error.details() or ""
    assert 0 < len(details) < 100
    # The answer never echoes a token or anything else long that was sent.
    assert all(value not in details for _, value in metadata if len(value) > 16)


def test_update_without_a_token_is_unauthenticated_and_writes_nothing(
    stub: profile_pb2_grpc.ProfileServiceStub, token_factory: TokenFactory
) -> None:
    victim = str(uuid.uuid4())
    forged = token_factory.foreign_key_same_kid(victim, "victim")

    with pytest.raises(grpc.RpcError) as raised:
        stub.UpdateProfile(
            profile_pb2.UpdateProfileRequest(bio="pwned"), metadata=bearer(forged), timeout=5
        )

    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    genuine = bearer(token_factory.mint(victim, "victim"))
    assert stub.GetProfile(profile_pb2.GetProfileRequest(), metadata=genuine, timeout=5).bio == ""


def test_health_check_needs_no_token(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)

    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_profile_service_health_is_reported(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)

    response = health.Check(
        health_pb2.HealthCheckRequest(service="authgate.profile.v1.ProfileService"), timeout=5
    )

    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_services_without_a_token(channel: grpc.Channel) -> None:
    services = set(ProtoReflectionDescriptorDatabase(channel).get_services())

    assert {"authgate.profile.v1.ProfileService", "grpc.health.v1.Health"} <= services


def test_reflection_describes_the_profile_service_without_a_token(channel: grpc.Channel) -> None:
    database = ProtoReflectionDescriptorDatabase(channel)

    described = database.FindFileContainingSymbol("authgate.profile.v1.ProfileService")

    assert described.package == "authgate.profile.v1"


def test_the_servicer_cannot_get_an_identity_outside_a_verified_call() -> None:
    caller = CallerIdentity()

    with pytest.raises(Unauthenticated):
        caller.get()


def test_a_bound_identity_is_unbound_after_the_call() -> None:
    caller = CallerIdentity()
    identity = make_identity()

    with caller.bound(identity):
        assert caller.get() == identity

    with pytest.raises(Unauthenticated):
        caller.get()


# --- where the keys come from -----------------------------------------------------------


class FakeAuthService:
    """Serves AuthService.GetJwks, with the factory's key, and counts the calls; and a
    revocation feed with nothing revoked."""

    def __init__(self, factory: TokenFactory) -> None:
        self.factory = factory
        self.calls = 0

    def get_jwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        self.calls += 1
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**self.factory.jwk())])

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "authgate.auth.v1.AuthService",
            {
                "GetJwks": grpc.unary_unary_rpc_method_handler(
                    self.get_jwks,
                    request_deserializer=auth_pb2.GetJwksRequest.FromString,
                    response_serializer=auth_pb2.GetJwksResponse.SerializeToString,
                )
            },
        )


@pytest.fixture
def fake_auth(token_factory: TokenFactory) -> Iterator[tuple[str, FakeAuthService]]:
    service = FakeAuthService(token_factory)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((service.handler(),))
    revocation_pb2_grpc.add_RevocationServiceServicer_to_server(
        FakeRevocationService([token_factory.kid]), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", service
    server.stop(0).wait()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


StubFactory = Callable[..., profile_pb2_grpc.ProfileServiceStub]
OnFakeAuth = Callable[..., tuple[profile_pb2_grpc.ProfileServiceStub, FakeAuthService]]


@pytest.fixture
def stub_of_own_server(
    profile_server_factory: ProfileServerFactory, tmp_path: Path
) -> Iterator[StubFactory]:
    """start(**profile_server_factory options) -> a stub of a profile server of the test's
    own, on a fresh SQLite database; its channel is closed after the test."""
    with ExitStack() as channels:

        def start(**options: Any) -> profile_pb2_grpc.ProfileServiceStub:
            running = profile_server_factory(f"sqlite:///{tmp_path / 'p.db'}", **options)
            address = f"127.0.0.1:{running.port}"
            channel = channels.enter_context(grpc.insecure_channel(address))
            return profile_pb2_grpc.ProfileServiceStub(channel)

        yield start


@pytest.fixture
def on_fake_auth(
    stub_of_own_server: StubFactory, fake_auth: tuple[str, FakeAuthService]
) -> OnFakeAuth:
    """start(**profile_server_factory options) -> a stub of a profile server of the test's
    own that asks the fake auth service for keys, and that fake (it counts the calls)."""
    target, auth_service = fake_auth

    def start(**options: Any) -> tuple[profile_pb2_grpc.ProfileServiceStub, FakeAuthService]:
        return stub_of_own_server(auth_target=target, **options), auth_service

    return start


def test_keys_are_fetched_from_the_auth_service_once_and_cached(
    on_fake_auth: OnFakeAuth,
    token_factory: TokenFactory,
) -> None:
    stub, auth_service = on_fake_auth()
    for _ in range(3):
        token = token_factory.mint(USER_ID, USERNAME)
        profile = stub.GetProfile(
            profile_pb2.GetProfileRequest(), metadata=bearer(token), timeout=5
        )
        assert profile.user_id == USER_ID

    assert auth_service.calls == 1


def test_unreachable_auth_service_is_unavailable_not_unauthenticated(
    stub_of_own_server: StubFactory, token_factory: TokenFactory
) -> None:
    stub = stub_of_own_server(auth_target=f"127.0.0.1:{_closed_port()}")

    error = get_profile(stub, bearer(token_factory.mint(USER_ID, USERNAME)))

    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_a_flood_of_unknown_kids_fetches_the_keys_once_per_cooldown(
    on_fake_auth: OnFakeAuth,
    token_factory: TokenFactory,
) -> None:
    stub, auth_service = on_fake_auth(jwks_refetch_cooldown_seconds=60)
    for index in range(10):
        token = token_factory.mint_with_header({"kid": f"random-{index}"})
        assert get_profile(stub, bearer(token)).code() == grpc.StatusCode.UNAUTHENTICATED

    assert auth_service.calls == 1
