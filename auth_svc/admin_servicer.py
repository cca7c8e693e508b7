"""The gRPC edge of AdminService: proto messages in, Administration calls, messages out.

The caller's identity (the actor of every change) comes from the verified token that the
auth interceptor bound, never from metadata; the interceptor has also checked the RPC's
required roles before anything here runs.
"""

from __future__ import annotations

from datetime import datetime

import grpc
from authgate.auth.v1 import admin_pb2, admin_pb2_grpc
from google.protobuf import empty_pb2, struct_pb2, timestamp_pb2

from auth_svc.admin import Administration
from auth_svc.audit import Origin
from auth_svc.repository import StoredEvent, UserView
from auth_svc.servicer import origin_of
from authgate_common.clock import Clock
from authgate_common.interceptors import CallerIdentity


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, admin: Administration, caller: CallerIdentity, *, clock: Clock) -> None:
        self._admin = admin
        self._caller = caller
        self._clock = clock

    def ListUsers(  # noqa: N802 - names come from the proto
        self, request: admin_pb2.ListUsersRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListUsersResponse:
        page = self._admin.list_users(
            username_prefix=request.username_prefix,
            size=request.page_size,
            page_token=request.page_token,
        )
        now = self._clock()
        return admin_pb2.ListUsersResponse(
            users=[_user(view, now) for view in page.items], next_page_token=page.next_page_token
        )

    def GetUser(  # noqa: N802
        self, request: admin_pb2.GetUserRequest, context: grpc.ServicerContext
    ) -> admin_pb2.User:
        return _user(self._admin.user(request.user_id), self._clock())

    def DisableUser(  # noqa: N802
        self, request: admin_pb2.DisableUserRequest, context: grpc.ServicerContext
    ) -> admin_pb2.User:
        return _user(self._admin.disable(request.user_id, self._origin(context)), self._clock())

    def EnableUser(  # noqa: N802
        self, request: admin_pb2.EnableUserRequest, context: grpc.ServicerContext
    ) -> admin_pb2.User:
        return _user(self._admin.enable(request.user_id, self._origin(context)), self._clock())

    def UnlockUser(  # noqa: N802
        self, request: admin_pb2.UnlockUserRequest, context: grpc.ServicerContext
    ) -> admin_pb2.User:
        return _user(self._admin.unlock(request.user_id, self._origin(context)), self._clock())

    def SetUserRoles(  # noqa: N802
        self, request: admin_pb2.SetUserRolesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.User:
        view = self._admin.set_roles(request.user_id, list(request.roles), self._origin(context))
        return _user(view, self._clock())

    def RevokeUserSessions(  # noqa: N802
        self, request: admin_pb2.RevokeUserSessionsRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._admin.revoke_sessions(request.user_id, self._origin(context))
        return empty_pb2.Empty()

    def ListAuditEvents(  # noqa: N802
        self, request: admin_pb2.ListAuditEventsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListAuditEventsResponse:
        page = self._admin.events(
            user_id=request.user_id,
            event_type=request.type,
            size=request.page_size,
            page_token=request.page_token,
        )
        return admin_pb2.ListAuditEventsResponse(
            events=[_event(event) for event in page.items], next_page_token=page.next_page_token
        )

    def _origin(self, context: grpc.ServicerContext) -> Origin:
        return origin_of(context, actor_id=self._caller.get().user_id)


def _user(view: UserView, now: datetime) -> admin_pb2.User:
    user = view.user
    locked = view.locked_until is not None and view.locked_until > now
    return admin_pb2.User(
        user_id=user.id,
        username=user.username,
        email=user.email or "",
        display_name=user.display_name or "",
        roles=sorted(view.roles),
        disabled=user.disabled,
        locked_until=_rfc3339(view.locked_until) if locked and view.locked_until else "",
        mfa_enabled=view.mfa_enabled,
        created_at=_timestamp(user.created_at),
    )


def _event(event: StoredEvent) -> admin_pb2.Event:
    detail = struct_pb2.Struct()
    detail.update(event.detail)
    return admin_pb2.Event(
        event_id=str(event.id),
        type=event.type,
        user_id=event.user_id or "",
        actor_id=event.actor_id or "",
        client_ip=event.client_ip or "",
        user_agent=event.user_agent or "",
        request_id=event.request_id or "",
        detail=detail,
        created_at=_timestamp(event.created_at),
    )


def _timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _rfc3339(value: datetime) -> str:
    # The same text proto3 JSON gives a Timestamp, so both times of a User read alike.
    return _timestamp(value).ToJsonString()
