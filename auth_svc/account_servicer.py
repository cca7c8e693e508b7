"""The gRPC edge of AccountService: the caller's own account, named by the verified token.

The auth interceptor has verified the access token before anything here runs; the user
and session acted on are the token's `sub` and `sid`, never metadata or the request.
"""

from __future__ import annotations

from datetime import datetime

import grpc
from authgate.auth.v1 import account_pb2, account_pb2_grpc, auth_pb2
from google.protobuf import empty_pb2, timestamp_pb2

from auth_svc.repository import SessionRecord
from auth_svc.service import AuthService
from auth_svc.servicer import origin_of, token_response
from authgate_common.interceptors import CallerIdentity

SERVICE_NAME = account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name


class AccountServicer(account_pb2_grpc.AccountServiceServicer):
    def __init__(self, service: AuthService, caller: CallerIdentity) -> None:
        self._service = service
        self._caller = caller

    def ChangePassword(  # noqa: N802 - names come from the proto
        self, request: account_pb2.ChangePasswordRequest, context: grpc.ServicerContext
    ) -> auth_pb2.TokenResponse:
        caller = self._caller.get()
        pair = self._service.change_password(
            caller.user_id,
            caller.session_id,
            request.current_password,
            request.new_password,
            code=request.code,
            origin=origin_of(context),
        )
        return token_response(pair)

    def ListSessions(  # noqa: N802
        self, request: account_pb2.ListSessionsRequest, context: grpc.ServicerContext
    ) -> account_pb2.ListSessionsResponse:
        caller = self._caller.get()
        found = self._service.list_sessions(caller.user_id)
        return account_pb2.ListSessionsResponse(
            sessions=[_session(record, caller.session_id) for record in found]
        )

    def RevokeSession(  # noqa: N802
        self, request: account_pb2.RevokeSessionRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        caller = self._caller.get()
        self._service.revoke_session(caller.user_id, request.session_id, origin=origin_of(context))
        return empty_pb2.Empty()

    def RevokeOtherSessions(  # noqa: N802
        self, request: account_pb2.RevokeOtherSessionsRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        caller = self._caller.get()
        self._service.revoke_other_sessions(
            caller.user_id, caller.session_id, origin=origin_of(context)
        )
        return empty_pb2.Empty()

    def DeleteAccount(  # noqa: N802
        self, request: account_pb2.DeleteAccountRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        caller = self._caller.get()
        self._service.delete_account(
            caller.user_id, request.password, code=request.code, origin=origin_of(context)
        )
        return empty_pb2.Empty()


def _session(record: SessionRecord, current_session_id: str) -> account_pb2.Session:
    return account_pb2.Session(
        session_id=record.id,
        created_at=_timestamp(record.created_at),
        last_used_at=_timestamp(record.last_used_at),
        client_ip=record.client_ip or "",
        user_agent=record.user_agent or "",
        amr=list(record.amr),
        current=bool(current_session_id) and record.id == current_session_id,
    )


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp
