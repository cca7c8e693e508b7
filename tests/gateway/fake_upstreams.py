"""Small in-memory AuthService and ProfileService on real gRPC servers, for gateway tests.

They record the metadata of every call, and a test can replace any RPC's behaviour
(to sleep past a deadline, or fail with a chosen status).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
import jwt
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc, revocation_pb2, revocation_pb2_grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import empty_pb2, timestamp_pb2

from authgate_common import metadata
from authgate_common.grpc_server import RunningServer, ServerSettings, start_server
from authgate_common.tokens import TokenSettings

Behaviour = Callable[[Any, grpc.ServicerContext], Any]


@dataclass
class ReceivedCall:
    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class Recorder:
    """The calls a fake received, and the behaviours a test put in place of the defaults."""

    calls: list[ReceivedCall] = field(default_factory=list)
    overrides: dict[str, Behaviour] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, request: Any, context: grpc.ServicerContext) -> Behaviour | None:
        received = {
            key: value for key, value in context.invocation_metadata() if isinstance(value, str)
        }
        with self.lock:
            self.calls.append(ReceivedCall(method, request, received, context.time_remaining()))
            return self.overrides.get(method)

    def last(self, method: str) -> ReceivedCall:
        matching = [call for call in self.calls if call.method == method]
        assert matching, f"{method} was not called"
        return matching[-1]

    def reset(self) -> None:
        with self.lock:
            self.calls.clear()
            self.overrides.clear()


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class TokenMinter:
    """An RSA key, its JWK (kid = RFC 7638 thumbprint) and RFC 9068 access tokens signed by it."""

    def __init__(self, settings: TokenSettings) -> None:
        self.settings = settings
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = self.private_key.public_key().public_numbers()
        members = {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}
        digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        self.jwk = {**members, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def mint(
        self,
        user_id: str = "",
        username: str = "alice",
        *,
        headers: Mapping[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.settings.issuer,
            "aud": self.settings.audience,
            "sub": user_id or str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": uuid.uuid4().hex,
            "client_id": "authgate",
            "preferred_username": username,
        }
        payload.update(claims)
        header = {"kid": self.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(payload, self.private_key, algorithm="RS256", headers=header)


class FakeAuthService(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, minter: TokenMinter, recorder: Recorder) -> None:
        self.minter = minter
        self.recorder = recorder
        self.users: dict[str, tuple[str, str]] = {}
        self.refresh_tokens: dict[str, str] = {}

    def _override(
        self, method: str, request: Any, context: grpc.ServicerContext
    ) -> Behaviour | None:
        return self.recorder.record(method, request, context)

    def Register(self, request: auth_pb2.RegisterRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if (behaviour := self._override("Register", request, context)) is not None:
            return behaviour(request, context)
        if request.username.lower() in self.users:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, "that username is taken")
        user_id = str(uuid.uuid4())
        self.users[request.username.lower()] = (user_id, request.password)
        return auth_pb2.RegisterResponse(user_id=user_id, username=request.username)

    def Login(self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if (behaviour := self._override("Login", request, context)) is not None:
            return behaviour(request, context)
        user = self.users.get(request.username.lower())
        if user is None or user[1] != request.password:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid username or password")
        return self._pair(user[0], request.username)

    def LoginMfa(self, request: auth_pb2.LoginMfaRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if (behaviour := self._override("LoginMfa", request, context)) is not None:
            return behaviour(request, context)
        return context.abort(grpc.StatusCode.UNAUTHENTICATED, "the mfa_token is invalid")

    def Refresh(self, request: auth_pb2.RefreshRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if (behaviour := self._override("Refresh", request, context)) is not None:
            return behaviour(request, context)
        user_id = self.refresh_tokens.pop(request.refresh_token, None)
        if user_id is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "the refresh token is not valid")
        return self._pair(user_id, "alice")

    def Logout(self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if (behaviour := self._override("Logout", request, context)) is not None:
            return behaviour(request, context)
        self.refresh_tokens.pop(request.refresh_token, None)
        return empty_pb2.Empty()

    def GetJwks(self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext) -> Any:  # noqa: N802
        if (behaviour := self._override("GetJwks", request, context)) is not None:
            return behaviour(request, context)
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**self.minter.jwk)])

    def GetOpenIdConfiguration(  # noqa: N802
        self, request: auth_pb2.GetOpenIdConfigurationRequest, context: grpc.ServicerContext
    ) -> Any:
        return auth_pb2.OpenIdConfiguration(issuer="fake", jwks_uri="http://fake/jwks.json")

    def _pair(self, user_id: str, username: str) -> auth_pb2.TokenResponse:
        refresh = uuid.uuid4().hex
        self.refresh_tokens[refresh] = user_id
        return auth_pb2.TokenResponse(
            access_token=self.minter.mint(user_id, username),
            token_type="Bearer",
            expires_in=900,
            refresh_token=refresh,
            refresh_expires_in=2592000,
        )


class FakeRevocationService(revocation_pb2_grpc.RevocationServiceServicer):
    """A revocation feed with nothing revoked: the given key ids, a status twice a second."""

    def __init__(self, kids: list[str]) -> None:
        self.kids = kids
        # Set: the stream stays open but sends nothing (a replica that cannot read its
        # database, or hangs).
        self.silent = threading.Event()
        self.streams = 0  # how many were opened

    def WatchRevocations(  # noqa: N802
        self, request: revocation_pb2.WatchRevocationsRequest, context: grpc.ServicerContext
    ) -> Any:
        self.streams += 1
        stopped = threading.Event()
        context.add_callback(stopped.set)
        while context.is_active():
            if not self.silent.is_set():
                yield revocation_pb2.RevocationEvent(
                    status=revocation_pb2.FeedStatus(last_id=0, kids=self.kids)
                )
            stopped.wait(0.5)


class FakeProfileService(profile_pb2_grpc.ProfileServiceServicer):
    """Trusts x-user-id blindly (the gateway tests check what the gateway sends)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.profiles: dict[str, profile_pb2.Profile] = {}

    def GetProfile(  # noqa: N802
        self, request: profile_pb2.GetProfileRequest, context: grpc.ServicerContext
    ) -> Any:
        if (behaviour := self.recorder.record("GetProfile", request, context)) is not None:
            return behaviour(request, context)
        return self._profile(context)

    def UpdateProfile(  # noqa: N802
        self, request: profile_pb2.UpdateProfileRequest, context: grpc.ServicerContext
    ) -> Any:
        if (behaviour := self.recorder.record("UpdateProfile", request, context)) is not None:
            return behaviour(request, context)
        profile = self._profile(context)
        for name in ("display_name", "email", "bio"):
            if request.HasField(name):
                setattr(profile, name, getattr(request, name))
        profile.updated_at.GetCurrentTime()
        return profile

    def _profile(self, context: grpc.ServicerContext) -> profile_pb2.Profile:
        received = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        user_id = received.get(metadata.USER_ID)
        if not user_id:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no identity")
        if user_id not in self.profiles:
            now = timestamp_pb2.Timestamp()
            now.GetCurrentTime()
            self.profiles[user_id] = profile_pb2.Profile(
                user_id=user_id,
                username=received.get(metadata.USERNAME, ""),
                created_at=now,
                updated_at=now,
            )
        return self.profiles[user_id]


@dataclass
class FakeUpstreams:
    minter: TokenMinter
    auth: RunningServer
    profile: RunningServer
    auth_calls: Recorder
    profile_calls: Recorder
    auth_service: FakeAuthService
    profile_service: FakeProfileService

    def reset(self) -> None:
        self.auth_calls.reset()
        self.profile_calls.reset()
        self.auth_service.users.clear()
        self.auth_service.refresh_tokens.clear()
        self.profile_service.profiles.clear()
        self.auth.set_serving(True)
        self.profile.set_serving(True)

    def stop(self) -> None:
        self.auth.stop(0)
        self.profile.stop(0)


def start_fake_auth(
    minter: TokenMinter, recorder: Recorder, feed: FakeRevocationService | None = None
) -> tuple[RunningServer, FakeAuthService]:
    service = FakeAuthService(minter, recorder)
    feed = feed or FakeRevocationService([minter.kid])

    def register(server: grpc.Server) -> None:
        auth_pb2_grpc.add_AuthServiceServicer_to_server(service, server)
        revocation_pb2_grpc.add_RevocationServiceServicer_to_server(feed, server)

    server = start_server(
        # Each gateway's revocation stream holds a thread as long as it lasts.
        ServerSettings(host="127.0.0.1", port=0, max_workers=32),
        register=register,
        service_names=[auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name],
    )
    return server, service


def start_fake_profile(recorder: Recorder) -> tuple[RunningServer, FakeProfileService]:
    service = FakeProfileService(recorder)
    server = start_server(
        ServerSettings(host="127.0.0.1", port=0, max_workers=8),
        register=lambda s: profile_pb2_grpc.add_ProfileServiceServicer_to_server(service, s),
        service_names=[profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name],
    )
    return server, service


def start_fake_upstreams(settings: TokenSettings) -> FakeUpstreams:
    minter = TokenMinter(settings)
    auth_calls, profile_calls = Recorder(), Recorder()
    auth, auth_service = start_fake_auth(minter, auth_calls)
    profile, profile_service = start_fake_profile(profile_calls)
    return FakeUpstreams(
        minter, auth, profile, auth_calls, profile_calls, auth_service, profile_service
    )
