"""lockout columns and login refusal slots

users.failed_logins / locked_until hold the per-account lockout; login_refusals
gets its fixed slots, which the service counts refused logins in.

Revision ID: 7385b57386e8
Revises: cd3dc19f1e20
Create Date: 2026-11-25 21:37:17.784169
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "7385b57386e8"
down_revision: str | Sequence[str] | None = "cd3dc19f1e20"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# auth_svc.models.LOGIN_REFUSAL_SLOTS when this was written (revisions never import models).
REFUSAL_SLOTS = 16


def upgrade() -> None:
    refusals = op.create_table(
        "login_refusals",
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("refusals", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("slot"),
    )
    op.bulk_insert(refusals, [{"slot": slot, "refusals": 0} for slot in range(REFUSAL_SLOTS)])
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "locked_until",
                sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")

    op.drop_table("login_refusals")
