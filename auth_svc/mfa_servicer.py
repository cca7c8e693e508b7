"""The gRPC edge of MfaService: the caller's second factor, for the user of the access token.

The user comes from the verified token that the auth interceptor bound, never from
metadata or the request.
"""

from __future__ import annotations

import grpc
from authgate.auth.v1 import mfa_pb2, mfa_pb2_grpc
from google.protobuf import empty_pb2

from auth_svc.second_factor import SecondFactor
from auth_svc.servicer import origin_of
from authgate_common.field_rules import rules_for
from authgate_common.interceptors import CallerIdentity

_CONFIRM_CODE = rules_for(mfa_pb2.ConfirmTotpRequest, "code")
_DISABLE_CODE = rules_for(mfa_pb2.DisableTotpRequest, "code")


class MfaServicer(mfa_pb2_grpc.MfaServiceServicer):
    def __init__(self, second_factor: SecondFactor, caller: CallerIdentity) -> None:
        self._second_factor = second_factor
        self._caller = caller

    def EnrollTotp(  # noqa: N802 - names come from the proto
        self, request: mfa_pb2.EnrollTotpRequest, context: grpc.ServicerContext
    ) -> mfa_pb2.EnrollTotpResponse:
        enrolment = self._second_factor.enroll(self._caller.get().user_id)
        return mfa_pb2.EnrollTotpResponse(
            secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri
        )

    def ConfirmTotp(  # noqa: N802
        self, request: mfa_pb2.ConfirmTotpRequest, context: grpc.ServicerContext
    ) -> mfa_pb2.ConfirmTotpResponse:
        codes = self._second_factor.confirm(
            self._caller.get().user_id,
            _CONFIRM_CODE.check(request.code),
            origin=origin_of(context),
        )
        return mfa_pb2.ConfirmTotpResponse(recovery_codes=codes)

    def DisableTotp(  # noqa: N802
        self, request: mfa_pb2.DisableTotpRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._second_factor.disable(
            self._caller.get().user_id,
            _DISABLE_CODE.check(request.code),
            origin=origin_of(context),
        )
        return empty_pb2.Empty()
