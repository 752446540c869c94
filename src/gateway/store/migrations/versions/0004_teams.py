"""Teams: teams, team_members, team_keys, member_defaults; team configurations, usage and audit carry the team.

A configuration belongs to exactly one user or one team (CHECK one_owner), so llm_configurations.user_id becomes
nullable; names are unique per team as they are per user. A team configuration's key is encrypted under its
team's data key (team_keys, wrapped by the key ring); its `key_id` names the team key, not a ring key.

Defaults (one per user, whichever kind): a personal default stays `llm_configurations.is_default` (a team row is
never is_default: CHECK team_not_default); a member whose default is a team configuration has one row in
`member_defaults` (user_id primary key). Writes that set one clear the other under the user's lock. The row goes
away by itself when the membership ends (foreign key to team_members) or the configuration is deleted.

On SQLite the batch rebuild of llm_configurations relies on env.py running migrations with foreign keys off, so
dropping the old table does not cascade into conversation_configurations.

Downgrade deletes every team configuration (their keys cannot become personal) before user_id is NOT NULL again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('teams',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('name', name=op.f('uq_teams_name'))
    )
    op.create_table('team_members',
    sa.Column('team_id', sa.Uuid(), nullable=False),
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('role', sa.String(length=10), nullable=False),
    sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("role IN ('owner', 'member')", name=op.f('ck_team_members_role')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_members_team_id_teams'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_team_members_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('team_id', 'user_id', name=op.f('pk_team_members'))
    )
    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_members_user_id'), ['user_id'], unique=False)

    op.create_table('team_keys',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('team_id', sa.Uuid(), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('wrapped_key', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_team_keys_team_id_teams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_team_keys'))
    )
    with op.batch_alter_table('team_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_team_keys_key_id'), ['key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_team_keys_team_id'), ['team_id'], unique=False)

    with op.batch_alter_table('llm_configurations', schema=None) as batch_op:
        batch_op.alter_column('user_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(sa.Column('team_id', sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_llm_configurations_team_id_teams'), 'teams', ['team_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_check_constraint('one_owner', '(user_id IS NULL) <> (team_id IS NULL)')
        batch_op.create_check_constraint('team_not_default', 'team_id IS NULL OR NOT is_default')
        batch_op.create_index('uq_llm_configurations_team_id_name', ['team_id', 'name'], unique=True)

    op.create_table('member_defaults',
    sa.Column('user_id', sa.Uuid(), nullable=False),
    sa.Column('team_id', sa.Uuid(), nullable=False),
    sa.Column('configuration_id', sa.Uuid(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['configuration_id'], ['llm_configurations.id'], name='fk_member_defaults_configuration_id',
                            ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['team_id', 'user_id'], ['team_members.team_id', 'team_members.user_id'],
                            name='fk_member_defaults_team_id_team_members', ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_member_defaults_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_member_defaults'))
    )
    with op.batch_alter_table('member_defaults', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_defaults_configuration_id'), ['configuration_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_member_defaults_team_id'), ['team_id'], unique=False)

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team_id', sa.Uuid(), nullable=True))
        batch_op.create_index('ix_usage_records_team_id_created_at', ['team_id', 'created_at'], unique=False)

    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('team_id', sa.Uuid(), nullable=True))
        batch_op.create_index('ix_audit_events_team_id_created_at', ['team_id', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_team_id_created_at')
        batch_op.drop_column('team_id')

    with op.batch_alter_table('usage_records', schema=None) as batch_op:
        batch_op.drop_index('ix_usage_records_team_id_created_at')
        batch_op.drop_column('team_id')

    with op.batch_alter_table('member_defaults', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_defaults_team_id'))
        batch_op.drop_index(batch_op.f('ix_member_defaults_configuration_id'))
    op.drop_table('member_defaults')

    op.execute(sa.text('DELETE FROM conversation_configurations WHERE configuration_id IN '
                       '(SELECT id FROM llm_configurations WHERE team_id IS NOT NULL)'))
    op.execute(sa.text('DELETE FROM llm_configurations WHERE team_id IS NOT NULL'))
    with op.batch_alter_table('llm_configurations', schema=None) as batch_op:
        batch_op.drop_index('uq_llm_configurations_team_id_name')
        batch_op.drop_constraint(batch_op.f('ck_llm_configurations_team_not_default'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_llm_configurations_one_owner'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_llm_configurations_team_id_teams'), type_='foreignkey')
        batch_op.drop_column('team_id')
        batch_op.alter_column('user_id', existing_type=sa.Uuid(), nullable=False)

    with op.batch_alter_table('team_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_keys_team_id'))
        batch_op.drop_index(batch_op.f('ix_team_keys_key_id'))
    op.drop_table('team_keys')

    with op.batch_alter_table('team_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_team_members_user_id'))
    op.drop_table('team_members')
    op.drop_table('teams')
