"""The gRPC edge of the auth service: proto messages in, domain calls, proto messages out.

Domain errors propagate; the shared ErrorInterceptor maps them to status codes.
"""

from __future__ import annotations

import re

import grpc
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf import empty_pb2

from auth_svc.audit import Origin
from auth_svc.mfa import MfaChallenge
from auth_svc.service import AuthService, SecondFactorRequired, TokenPair
from authgate_common import metadata
from authgate_common.call_context import note_user
from authgate_common.field_rules import rules_for
from authgate_common.interceptors import request_id

# grpc's peer strings: "ipv4:127.0.0.1:5000", "ipv6:[::1]:5000".
_PEER = re.compile(r"ipv4:(?P<v4>[0-9.]+):\d+|ipv6:\[(?P<v6>[0-9A-Fa-f:.]+)(?:%[^\]]*)?\]:\d+")


def origin_of(context: grpc.ServicerContext, *, actor_id: str | None = None) -> Origin:
    """Where the call came from, for the audit log.

    The gateway sets x-client-ip (its trusted-proxy rule) and x-client-user-agent; a direct
    gRPC caller's values are taken as sent, and without x-client-ip the peer address is
    recorded. These are records of what was claimed, never used to decide anything.
    """
    sent = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
    client_ip = sent.get(metadata.CLIENT_IP) or _peer_ip(context.peer())
    return Origin(
        actor_id=actor_id,
        client_ip=client_ip,
        user_agent=sent.get(metadata.CLIENT_USER_AGENT),
        request_id=request_id(context),
    )


def _peer_ip(peer: str | None) -> str | None:
    match = _PEER.fullmatch(peer or "")
    return None if match is None else match.group("v4") or match.group("v6")


_MFA_TOKEN_RULES = rules_for(auth_pb2.LoginMfaRequest, "mfa_token")
_MFA_CODE_RULES = rules_for(auth_pb2.LoginMfaRequest, "code")

# Response metadata the gateway copies into the HTTP answer (see gateway.views).
CACHE_CONTROL = "cache-control"


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    def __init__(self, service: AuthService, *, jwks_max_age_seconds: int = 0) -> None:
        self._service = service
        self._jwks_cache_control = (
            f"public, max-age={jwks_max_age_seconds}" if jwks_max_age_seconds else "no-cache"
        )

    def Register(  # noqa: N802 - names come from the proto
        self, request: auth_pb2.RegisterRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RegisterResponse:
        user = self._service.register(
            request.username,
            request.password,
            email=request.email,
            display_name=request.display_name,
            origin=origin_of(context),
        )
        note_user(user.user_id)
        return auth_pb2.RegisterResponse(user_id=user.user_id, username=user.username)

    def Login(  # noqa: N802
        self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.TokenResponse:
        try:
            pair = self._service.login(
                request.username, request.password, origin=origin_of(context)
            )
        except SecondFactorRequired as due:
            return token_response(due.challenge)
        return token_response(pair)

    def LoginMfa(  # noqa: N802
        self, request: auth_pb2.LoginMfaRequest, context: grpc.ServicerContext
    ) -> auth_pb2.TokenResponse:
        return token_response(
            self._service.login_mfa(
                _MFA_TOKEN_RULES.check(request.mfa_token),
                _MFA_CODE_RULES.check(request.code),
                origin=origin_of(context),
            )
        )

    def Refresh(  # noqa: N802
        self, request: auth_pb2.RefreshRequest, context: grpc.ServicerContext
    ) -> auth_pb2.TokenResponse:
        return token_response(
            self._service.refresh(request.refresh_token, origin=origin_of(context))
        )

    def Logout(  # noqa: N802
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._service.logout(request.refresh_token, origin=origin_of(context))
        return empty_pb2.Empty()

    def GetJwks(  # noqa: N802
        self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        context.send_initial_metadata(((CACHE_CONTROL, self._jwks_cache_control),))
        return auth_pb2.GetJwksResponse(keys=[auth_pb2.Jwk(**key) for key in self._service.jwks()])

    def GetOpenIdConfiguration(  # noqa: N802
        self, request: auth_pb2.GetOpenIdConfigurationRequest, context: grpc.ServicerContext
    ) -> auth_pb2.OpenIdConfiguration:
        found = self._service.openid_configuration()
        context.send_initial_metadata(((CACHE_CONTROL, self._jwks_cache_control),))
        return auth_pb2.OpenIdConfiguration(
            issuer=found.issuer,
            jwks_uri=found.jwks_uri,
            response_types_supported=["id_token"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=list(found.algorithms),
        )


def token_response(pair: TokenPair | MfaChallenge) -> auth_pb2.TokenResponse:
    note_user(pair.user_id)  # the rpc log line says whom the tokens are for
    if isinstance(pair, MfaChallenge):
        return auth_pb2.TokenResponse(
            mfa_required=True, mfa_token=pair.mfa_token, expires_in=pair.expires_in
        )
    return auth_pb2.TokenResponse(
        access_token=pair.access_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )
