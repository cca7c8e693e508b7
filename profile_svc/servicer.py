"""ProfileService over gRPC: translates messages to domain calls and back, nothing more."""

from __future__ import annotations

from datetime import datetime

import grpc
from authgate.profile.v1 import profile_pb2, profile_pb2_grpc
from google.protobuf import empty_pb2
from google.protobuf.timestamp_pb2 import Timestamp

from authgate_common.interceptors import CallerIdentity
from profile_svc.models import Profile
from profile_svc.profiles import ProfileChanges, Profiles

SERVICE_NAME: str = profile_pb2.DESCRIPTOR.services_by_name["ProfileService"].full_name
ADMIN_SERVICE_NAME: str = profile_pb2.DESCRIPTOR.services_by_name["ProfileAdminService"].full_name


class ProfileServicer(profile_pb2_grpc.ProfileServiceServicer):
    def __init__(self, profiles: Profiles, caller: CallerIdentity) -> None:
        self._profiles = profiles
        self._caller = caller

    def GetProfile(  # noqa: N802 (the generated base class names the RPCs)
        self, request: profile_pb2.GetProfileRequest, context: grpc.ServicerContext
    ) -> profile_pb2.Profile:
        return to_message(self._profiles.get_profile(self._caller.get()))

    def UpdateProfile(  # noqa: N802
        self, request: profile_pb2.UpdateProfileRequest, context: grpc.ServicerContext
    ) -> profile_pb2.Profile:
        changes = ProfileChanges(
            display_name=request.display_name if request.HasField("display_name") else None,
            email=request.email if request.HasField("email") else None,
            bio=request.bio if request.HasField("bio") else None,
        )
        return to_message(self._profiles.update_profile(self._caller.get(), changes))


class ProfileAdminServicer(profile_pb2_grpc.ProfileAdminServiceServicer):
    """What the auth service tells the profile service; its interceptor has checked the
    internal token and its role."""

    def __init__(self, profiles: Profiles) -> None:
        self._profiles = profiles

    def DeleteUserProfile(  # noqa: N802
        self, request: profile_pb2.DeleteUserProfileRequest, context: grpc.ServicerContext
    ) -> empty_pb2.Empty:
        self._profiles.delete_for_good(request.user_id)
        return empty_pb2.Empty()


def to_message(profile: Profile) -> profile_pb2.Profile:
    return profile_pb2.Profile(
        user_id=profile.user_id,
        username=profile.username,
        display_name=profile.display_name,
        email=profile.email,
        bio=profile.bio,
        created_at=_timestamp(profile.created_at),
        updated_at=_timestamp(profile.updated_at),
    )


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)  # an aware datetime is converted to UTC
    return stamp
