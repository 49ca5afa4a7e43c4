"""health_days: finished days of hourly health figures, packed one row a part and day

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa

import bot.db.types
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('health_days',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('component', sa.String(length=80), nullable=False),
    sa.Column('day', bot.db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('hours', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['sites.id'], name=op.f('fk_health_days_site_id_sites'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('site_id', 'component', 'day', name=op.f('pk_health_days')),
    sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table('health_days')
