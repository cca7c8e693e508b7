"""Calls between the services that no user may make: their audience and roles.

The auth service signs a short-lived token for such a call with its own key (the key
every verifier already trusts) for the audience `<JWT_AUDIENCE>:internal`. A user's
access token is for JWT_AUDIENCE itself, so it is refused wherever an internal token is
expected, and an internal token is refused by the gateway and every user-facing RPC. The
RPC's `required_roles` names the one thing the token allows.
"""

from __future__ import annotations

import dataclasses

from authgate_common.tokens import TokenSettings

INTERNAL_AUDIENCE_SUFFIX = ":internal"
# The role of the auth service's calls that delete a deleted user's profile.
PROFILE_DELETE_ROLE = "internal:profile-delete"
# The `sub` of the auth service's internal tokens.
AUTH_SERVICE_SUBJECT = "service:auth_svc"
INTERNAL_TOKEN_TTL_SECONDS = 60


def internal_token_settings(settings: TokenSettings) -> TokenSettings:
    """What an internal token looks like: the users' settings with the internal audience."""
    return dataclasses.replace(settings, audience=settings.audience + INTERNAL_AUDIENCE_SUFFIX)
