"""Initial schema: counters, mailbox index and audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from mssante.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "counters",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_counters"),
    )
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner", sa.String(320), nullable=False),
        sa.Column("name", sa.String(1024), nullable=False),
        sa.Column("special_use", sa.String(32), nullable=True),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uidnext", sa.BigInteger(), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger(), nullable=False),
        sa.Column("subscribed", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_mailboxes"),
        sa.UniqueConstraint("owner", "name", name="uq_mailboxes_owner_name"),
    )
    op.create_table(
        "mailbox_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("blob_sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("internal_date", UTCDateTime(), nullable=False),
        sa.Column("flags", sa.Text(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.Column("delivery_key", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mailbox_messages"),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name="fk_mailbox_messages_mailbox_id_mailboxes",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("mailbox_id", "uid", name="uq_mailbox_messages_mailbox_id_uid"),
        sa.UniqueConstraint("delivery_key", name="uq_mailbox_messages_delivery_key"),
    )
    op.create_index(
        "ix_mailbox_messages_mailbox_id_modseq", "mailbox_messages", ["mailbox_id", "modseq"]
    )
    op.create_index("ix_mailbox_messages_blob_sha256", "mailbox_messages", ["blob_sha256"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target_kind", sa.String(32), nullable=False),
        sa.Column("target", sa.String(320), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_target_kind_target", "audit_log", ["target_kind", "target"])
    op.create_index("ix_audit_log_actor", "audit_log", ["actor"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("mailbox_messages")
    op.drop_table("mailboxes")
    op.drop_table("counters")
