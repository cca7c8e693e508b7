"""auth_svc's schema history (Alembic): `users` and `refresh_tokens`, version table of its own."""

from __future__ import annotations

from auth_svc.models import metadata
from authgate_common.migrations import MigrationSet

AUTH_MIGRATIONS = MigrationSet(
    service="auth_svc",
    script_location="auth_svc:migrations",
    version_table="alembic_version_auth",
    metadata=metadata,
)
