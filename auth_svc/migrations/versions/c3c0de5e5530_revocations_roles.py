"""revocations roles

A revocation of kind `roles` (a role taken from a user) carries the user's roles right
after the change: earlier access tokens are narrowed to them instead of refused.

Revision ID: c3c0de5e5530
Revises: 6febfc50d4f1
Create Date: 2026-12-01 09:55:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3c0de5e5530"
down_revision: str | Sequence[str] | None = "6febfc50d4f1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("roles", sa.Text(), nullable=True))


def downgrade() -> None:
    # The earlier code cannot narrow: it refuses those users' earlier tokens instead, as it did.
    op.execute("UPDATE revocations SET kind = 'user' WHERE kind = 'roles'")
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_column("roles")
