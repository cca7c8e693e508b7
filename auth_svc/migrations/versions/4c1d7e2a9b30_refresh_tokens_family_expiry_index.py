"""refresh_tokens: an index on family_expires_at

The session pruner (auth_svc.retention) deletes the families that expired long ago; the
index keeps its hourly lookup off a full scan of the table.

Revision ID: 4c1d7e2a9b30
Revises: 73a329c1e4fa
Create Date: 2026-12-01 22:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "4c1d7e2a9b30"
down_revision: str | Sequence[str] | None = "73a329c1e4fa"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_refresh_tokens_family_expires_at", "refresh_tokens", ["family_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_family_expires_at", table_name="refresh_tokens")
