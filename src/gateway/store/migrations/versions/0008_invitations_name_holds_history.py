"""Invitations, held team names, and team history that outlives users.

- `team_invitations`: a pending invitation (team, invitee, role, inviter's name); membership starts only when the
  invitee accepts. One per team and user.
- `team_name_holds`: a name a team gave up (renamed or deleted), one row per user who was a member then; no other
  team may take the name while any of them exists, so their `<team>/<name>` labels never start meaning another
  team's configurations.
- `usage_records.user_id` and `audit_events.user_id` no longer cascade from users: SET NULL, so a team's spend
  and its trail of who changed its keys stay when a member is deleted; `usage_records.user_name` keeps who it
  was (audit events keep `actor`).

Downgrade deletes the usage rows of deleted users (user_id NULL) before user_id is NOT NULL again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TEAM_USAGE_INDEX = 'ix_usage_records_team_id_created_at'


def _team_usage_index(batch_op: object) -> None:
    # Recreated in the batch so SQLite's rebuilt table keeps it partial (0007).
    batch_op.create_index(TEAM_USAGE_INDEX, ['team_id', 'created_at'], unique=False,  # type: ignore[attr-defined]
                          sqlite_where=sa.text('team_id IS NOT NULL'),
                          postgresql_where=sa.text('team_id IS NOT NULL'))


def _user_fk(table: str, ondelete: str) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_constraint(f'fk_{table}_user_id_users', type_='foreignkey')
        batch_op.create_foreign_key(f'fk_{table}_user_id_users', 'users', ['user_id'], ['id'], ondelete=ondelete)


def upgrade() -> None:
    op.create_table('team_invitations',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('team_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('invited_by', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'member')", name=op.f('ck_team_invitations_role')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_invitations_team_id_teams'),
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_team_invitations_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_invitations'))
    )
    with op.batch_alter_table('team_invitations', schema=None) as batch_op:
        batch_op.create_index('uq_team_invitations_team_id_user_id', ['team_id', 'user_id'], unique=True)
        batch_op.create_index(batch_op.f('ix_team_invitations_user_id'), ['user_id'], unique=False)

    op.create_table('team_name_holds',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('team_id', sa.Uuid(), nullable=False),
    sa.Column('released_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_team_name_holds_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('name', 'user_id', name=op.f('pk_team_name_holds'))
    )
    with op.batch_alter_table('team_name_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_name_holds_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index(TEAM_USAGE_INDEX)
        batch_op.add_column(sa.Column('user_name', sa.String(length=100), nullable=True))
        batch_op.alter_column('user_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.drop_constraint('fk_usage_records_user_id_users', type_='foreignkey')
        batch_op.create_foreign_key('fk_usage_records_user_id_users', 'users', ['user_id'], ['id'],
                                    ondelete='SET NULL')
        _team_usage_index(batch_op)
    _user_fk('audit_events', 'SET NULL')


def downgrade() -> None:
    _user_fk('audit_events', 'CASCADE')
    op.execute(sa.text('DELETE FROM usage_records WHERE user_id IS NULL'))
    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index(TEAM_USAGE_INDEX)
        batch_op.drop_constraint('fk_usage_records_user_id_users', type_='foreignkey')
        batch_op.create_foreign_key('fk_usage_records_user_id_users', 'users', ['user_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.alter_column('user_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column('user_name')
        _team_usage_index(batch_op)

    with op.batch_alter_table('team_name_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_name_holds_user_id'))
    op.drop_table('team_name_holds')

    with op.batch_alter_table('team_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_invitations_user_id'))
        batch_op.drop_index('uq_team_invitations_team_id_user_id')
    op.drop_table('team_invitations')
