"""usage_records loses ix_usage_records_configuration_id: every usage query filters by user or team (each with
its own (…, created_at) index), so this index was only written, one more B-tree insert per proxied request.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index('ix_usage_records_configuration_id', table_name='usage_records')


def downgrade() -> None:
    op.create_index('ix_usage_records_configuration_id', 'usage_records', ['configuration_id'], unique=False)
