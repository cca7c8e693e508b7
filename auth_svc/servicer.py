"""The gRPC edge of the auth service: proto messages in, domain calls, proto messages out.

Domain errors propagate; the shared ErrorInterceptor maps them to status codes.
"""

from __future__ import annotations

import grpc
from authgate.auth.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf import empty_pb2

from auth_svc.service import AuthService, TokenPair
from authgate_common.call_context import note_user

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
        )
        note_user(user.user_id)
        return auth_pb2.RegisterResponse(user_id=user.user_id, username=user.username)

    def Login(  # noqa: N802
        self, request: auth_pb2.LoginRequest, context: grpc.ServicerContext
    ) -> auth_pb2.TokenResponse:
        return _token_response(self._service.login(request.username, request.password))

    def Refresh(  # noqa: N802
        self, request: auth_pb2.RefreshRequest, context: grpc.ServicerContext
    ) -> auth_pb2.TokenResponse:
        return _token_response(self._service.refresh(request.refresh_token))

    def Logout(  # noqa: N802
        self, request: auth_pb2.LogoutRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._service.logout(request.refresh_token)
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


def _token_response(pair: TokenPair) -> auth_pb2.TokenResponse:
    note_user(pair.user_id)  # the rpc log line says whom the tokens are for
    return auth_pb2.TokenResponse(
        access_token=pair.access_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
        refresh_expires_in=pair.refresh_expires_in,
    )
