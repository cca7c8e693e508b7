"""profile_svc's schema history (Alembic): `profiles`, version table of its own."""

from __future__ import annotations

from authgate_common.migrations import MigrationSet
from profile_svc.models import metadata

PROFILE_MIGRATIONS = MigrationSet(
    service="profile_svc",
    script_location="profile_svc:migrations",
    version_table="alembic_version_profile",
    metadata=metadata,
)
