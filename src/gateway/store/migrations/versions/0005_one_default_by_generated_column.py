"""llm_configurations.default_of (generated: user_id when is_default, else NULL) with a plain unique index in
place of the partial one: the same rule, stated without a dialect's partial-index option.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recreate() -> Literal['always', 'auto']:
    # SQLite cannot ALTER TABLE ADD a stored generated column: batch mode copies the table there.
    return 'always' if op.get_bind().dialect.name == 'sqlite' else 'auto'


def upgrade() -> None:
    with op.batch_alter_table('llm_configurations', recreate=_recreate()) as batch_op:
        batch_op.drop_index('uq_llm_configurations_one_default', postgresql_where=sa.text('is_default'),
                            sqlite_where=sa.text('is_default'))
        batch_op.add_column(sa.Column('default_of', sa.Uuid(),
                                      sa.Computed('CASE WHEN is_default THEN user_id END', persisted=True),
                                      nullable=True))
        batch_op.create_index('uq_llm_configurations_one_default', ['default_of'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('llm_configurations', recreate=_recreate()) as batch_op:
        batch_op.drop_index('uq_llm_configurations_one_default')
        batch_op.drop_column('default_of')
        batch_op.create_index('uq_llm_configurations_one_default', ['user_id'], unique=True,
                              postgresql_where=sa.text('is_default'), sqlite_where=sa.text('is_default'))
