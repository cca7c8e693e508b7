"""revocations feed

`revocations` holds what the auth service pushes to the token verifiers (users,
sessions and signing keys no longer honoured); `revocation_sequence` has the one
row whose lock orders the ids of concurrent writers.

Revision ID: 6febfc50d4f1
Revises: 23d4a6313d18
Create Date: 2026-12-01 08:52:42.502859
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "6febfc50d4f1"
down_revision: str | Sequence[str] | None = "23d4a6313d18"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    sequence = op.create_table(
        "revocation_sequence",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # auth_svc.models.REVOCATION_SEQUENCE when this was written (revisions never import models).
    op.bulk_insert(sequence, [{"name": "revocations", "last_id": 0}])
    op.create_table(
        "revocations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=False),
        sa.Column(
            "not_before", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "created_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.Column(
            "expires_at", sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.create_index("ix_revocations_expires_at", ["expires_at"], unique=False)
        batch_op.create_index("ix_revocations_kind_subject", ["kind", "subject"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_index("ix_revocations_kind_subject")
        batch_op.drop_index("ix_revocations_expires_at")

    op.drop_table("revocations")
    op.drop_table("revocation_sequence")
