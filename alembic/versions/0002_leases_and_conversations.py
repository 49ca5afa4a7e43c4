"""operation leases, one active operation per site, persisted conversations

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence

import sqlalchemy as sa

import bot.db.types
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = sa.text("state IN ('queued', 'running') AND site_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('operations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_host', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('owner_pid', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('owner_token', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('heartbeat_at', bot.db.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('retry_of', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('retried_by', sa.Integer(), nullable=True))
    # Rows a previous version left running have no owner to wait for: they are interrupted.
    op.execute("UPDATE operations SET state = 'interrupted', "
               "error = 'camreach stopped before this finished' "
               "WHERE state IN ('queued', 'running')")
    op.create_index('uq_operations_active_site', 'operations', ['site_id'], unique=True,
                    sqlite_where=ACTIVE, postgresql_where=ACTIVE)
    op.create_table('conversation_states',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('handler', sa.String(length=64), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('updated_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_conversation_states')),
    sa.UniqueConstraint('handler', 'key', name='uq_conversation_states_key')
    )
    op.create_table('flow_data',
    sa.Column('user_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('updated_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_flow_data'))
    )


def downgrade() -> None:
    op.drop_table('flow_data')
    op.drop_table('conversation_states')
    op.drop_index('uq_operations_active_site', table_name='operations')
    with op.batch_alter_table('operations', schema=None) as batch_op:
        for column in ('retried_by', 'retry_of', 'heartbeat_at', 'owner_token', 'owner_pid',
                       'owner_host'):
            batch_op.drop_column(column)
