"""The REST contract of DESIGN.md: every route the gateway must serve, as (method, path),
and the fields of the answers more than one test checks."""

from __future__ import annotations

RPC_ROUTES = frozenset(
    {
        ("POST", "/v1/auth/register"),
        ("POST", "/v1/auth/login"),
        ("POST", "/v1/auth/login/mfa"),
        ("POST", "/v1/auth/refresh"),
        ("POST", "/v1/auth/logout"),
        ("GET", "/.well-known/jwks.json"),
        ("GET", "/.well-known/openid-configuration"),
        ("GET", "/v1/profile"),
        ("PATCH", "/v1/profile"),
        ("GET", "/v1/admin/users"),
        ("GET", "/v1/admin/users/{user_id}"),
        ("POST", "/v1/admin/users/{user_id}:disable"),
        ("POST", "/v1/admin/users/{user_id}:enable"),
        ("POST", "/v1/admin/users/{user_id}:unlock"),
        ("PUT", "/v1/admin/users/{user_id}/roles"),
        ("POST", "/v1/admin/users/{user_id}:revokeSessions"),
        ("GET", "/v1/admin/audit-events"),
        ("POST", "/v1/account/password"),
        ("GET", "/v1/account/sessions"),
        ("DELETE", "/v1/account/sessions/{session_id}"),
        ("POST", "/v1/account/sessions:revokeOthers"),
        ("POST", "/v1/account:delete"),
        ("POST", "/v1/account/mfa/totp:enroll"),
        ("POST", "/v1/account/mfa/totp:confirm"),
        ("POST", "/v1/account/mfa/totp:disable"),
    }
)
# The gateway's own routes, documented beside the RPCs' (metrics and docs are not).
OPERATIONAL_ROUTES = frozenset({("GET", "/healthz"), ("GET", "/readyz")})
# The fields of a token response (login, refresh, password change).
TOKEN_RESPONSE_FIELDS = frozenset(
    {"access_token", "token_type", "expires_in", "refresh_token", "refresh_expires_in"}
)
# What an administrator is shown of a user, in this order (ListUsers, GetUser, ...).
ADMIN_USER_FIELDS = (
    "user_id",
    "username",
    "email",
    "display_name",
    "roles",
    "disabled",
    "locked_until",
    "mfa_enabled",
    "created_at",
)
