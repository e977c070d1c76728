"""imap sync state

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26

IMAP sync state for the smtp_imap backend: per-mailbox UIDVALIDITY/last UID, and where each
synced message lives on the server.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('imapstate',
    sa.Column('inbox_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('last_uid', sa.Integer(), nullable=False),
    sa.Column('synced_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inbox.id'], ),
    sa.PrimaryKeyConstraint('inbox_id', 'mailbox')
    )
    op.create_table('imapmessage',
    sa.Column('message_pk', sa.Integer(), nullable=False),
    sa.Column('inbox_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('uid', sa.Integer(), nullable=False),
    sa.Column('flags', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['inbox_id'], ['inbox.id'], ),
    sa.ForeignKeyConstraint(['message_pk'], ['message.pk'], ),
    sa.PrimaryKeyConstraint('message_pk'),
    sa.UniqueConstraint('inbox_id', 'mailbox', 'uidvalidity', 'uid')
    )


def downgrade() -> None:
    op.drop_table('imapmessage')
    op.drop_table('imapstate')
