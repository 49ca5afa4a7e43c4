"""cameras: path, snapshot URL, daily snapshot, stored password, device info, refused password

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa

import bot.db.types
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ('via', sa.String(length=16)),
    ('snapshot_url', sa.String(length=512)),
    ('daily_snapshot', sa.String(length=5)),
    ('password_secret', sa.String(length=128)),
    ('model', sa.String(length=128)),
    ('serial', sa.String(length=128)),
    ('firmware', sa.String(length=128)),
    ('refused_password', sa.String(length=64)),
)


def upgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        for name, type_ in COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=name != 'via',
                                          server_default='droplet' if name == 'via' else None))
        batch_op.add_column(sa.Column('refused_at', bot.db.types.UTCDateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.alter_column('via', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_column('refused_at')
        for name, _ in reversed(COLUMNS):
            batch_op.drop_column(name)
