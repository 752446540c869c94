"""ix_usage_records_team_id_created_at becomes partial (WHERE team_id IS NOT NULL): most usage rows are personal,
and their inserts no longer write a (NULL, created_at) entry into it; a team's usage is asked by its id, which
implies the condition on SQLite and PostgreSQL alike, so its queries keep the index.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = 'ix_usage_records_team_id_created_at'


def upgrade() -> None:
    op.drop_index(INDEX, table_name='usage_records')
    op.create_index(INDEX, 'usage_records', ['team_id', 'created_at'], unique=False,
                    sqlite_where=sa.text('team_id IS NOT NULL'), postgresql_where=sa.text('team_id IS NOT NULL'))


def downgrade() -> None:
    op.drop_index(INDEX, table_name='usage_records')
    op.create_index(INDEX, 'usage_records', ['team_id', 'created_at'], unique=False)
