"""deleted users

`deleted_users` remembers the ids of deleted accounts, so that their profile is never
created again (a token issued before the deletion may still be honoured for a moment).

Revision ID: b7d31e7e0a11
Revises: f9b2dbade651
Create Date: 2026-12-01 09:56:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "b7d31e7e0a11"
down_revision: str | Sequence[str] | None = "f9b2dbade651"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deleted_users",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column(
            "deleted_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("deleted_users")
