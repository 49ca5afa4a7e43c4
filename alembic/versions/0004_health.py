"""health: latest per part, hourly figures, sweep leases, alert outbox

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa

import bot.db.types
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alert_outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('component', sa.String(length=80), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('has_camera', sa.Boolean(), nullable=False),
    sa.Column('created_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('claimed_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sent_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_alert_outbox_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_outbox'))
    )
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_outbox_sent_at'), ['sent_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alert_outbox_site_id'), ['site_id'], unique=False)

    op.create_table('component_health',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('component', sa.String(length=80), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('since', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('checked_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('figures', sa.JSON(), nullable=False),
    sa.Column('machine', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_component_health_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_component_health')),
    sa.UniqueConstraint('site_id', 'component', name='uq_component_health_part')
    )
    # The biggest table (a row per part per hour): its key is the row (no id, no second
    # index; SQLite stores it WITHOUT ROWID), small numbers as small types.
    op.create_table('health_hours',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('component', sa.String(length=80), nullable=False),
    sa.Column('hour', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checks', sa.SmallInteger(), nullable=False),
    sa.Column('up', sa.SmallInteger(), nullable=False),
    sa.Column('value_min', sa.REAL(), nullable=True),
    sa.Column('value_sum', sa.REAL(), nullable=False),
    sa.Column('value_count', sa.SmallInteger(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_health_hours_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'component', 'hour', name=op.f('pk_health_hours')),
    sqlite_with_rowid=False,
    )

    op.create_table('site_sweeps',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('next_due_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('owner_host', sa.String(length=255), nullable=True),
    sa.Column('owner_pid', sa.Integer(), nullable=True),
    sa.Column('owner_token', sa.String(length=32), nullable=True),
    sa.Column('lease_until', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_swept_at', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('sweeps', sa.BigInteger(), nullable=False),
    sa.Column('muted_until', bot.db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_site_sweeps_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', name=op.f('pk_site_sweeps'))
    )
    with op.batch_alter_table('site_sweeps', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_site_sweeps_next_due_at'), ['next_due_at'], unique=False)

    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_check_results_site_id'))

    op.drop_table('check_results')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cause', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('alerts_sent', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('muted', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.alter_column('target',
               existing_type=sa.VARCHAR(length=64),
               type_=sa.String(length=80),
               existing_nullable=False)
    # The defaults were for the rows already there; the models set them from now on.
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.alter_column('alerts_sent', server_default=None)
        batch_op.alter_column('muted', server_default=None)



def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.alter_column('target',
               existing_type=sa.String(length=80),
               type_=sa.VARCHAR(length=64),
               existing_nullable=False)
        batch_op.drop_column('muted')
        batch_op.drop_column('alerts_sent')
        batch_op.drop_column('cause')

    op.create_table('check_results',
    sa.Column('id', sa.INTEGER(), nullable=False),
    sa.Column('site_id', sa.INTEGER(), nullable=False),
    sa.Column('target', sa.VARCHAR(length=64), nullable=False),
    sa.Column('ok', sa.BOOLEAN(), nullable=False),
    sa.Column('latency_ms', sa.FLOAT(), nullable=True),
    sa.Column('error', sa.TEXT(), nullable=True),
    sa.Column('checked_at', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_check_results_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_check_results'))
    )
    with op.batch_alter_table('check_results', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_check_results_site_id'), ['site_id'], unique=False)

    with op.batch_alter_table('site_sweeps', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_site_sweeps_next_due_at'))

    op.drop_table('site_sweeps')
    op.drop_table('health_hours')
    op.drop_table('component_health')
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_outbox_site_id'))
        batch_op.drop_index(batch_op.f('ix_alert_outbox_sent_at'))

    op.drop_table('alert_outbox')
