"""refresh_tokens: an index on family_expires_at, for the session pruner (auth_svc/retention.py),
whose hourly lookup of long-expired families would otherwise scan the whole table.

Revision ID: 4c1d7e2a9b30
Revises: 73a329c1e4fa
Create Date: 2026-12-01 22:55:00
"""

from alembic import op

revision = "4c1d7e2a9b30"
down_revision = "73a329c1e4fa"
branch_labels = None
depends_on = None
INDEX = "ix_refresh_tokens_family_expires_at"


def upgrade() -> None:
    op.create_index(INDEX, "refresh_tokens", ["family_expires_at"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="refresh_tokens")
