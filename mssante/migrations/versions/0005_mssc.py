"""MSS-C: conversations, automatic-reply log, notification times, size as received.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from mssante.schema import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("queue_messages") as batch:
        batch.add_column(sa.Column("received_size", sa.BigInteger(), nullable=True))
    op.create_table(
        "conversations",
        sa.Column("professional", sa.String(length=320), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("opened_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("professional", "ins", name=op.f("pk_conversations")),
    )
    op.create_table(
        "auto_replies",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_auto_replies")),
    )
    op.create_index(
        op.f("ix_auto_replies_created_at"), "auto_replies", ["created_at"], unique=False
    )
    op.create_table(
        "patient_notifications",
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("last_sent_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ins", name=op.f("pk_patient_notifications")),
    )
    op.create_index(
        op.f("ix_mailbox_messages_mailbox_id_internal_date"),
        "mailbox_messages",
        ["mailbox_id", "internal_date"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(
        op.f("ix_mailbox_messages_mailbox_id_internal_date"), table_name="mailbox_messages"
    )
    op.drop_table("patient_notifications")
    op.drop_index(op.f("ix_auto_replies_created_at"), table_name="auto_replies")
    op.drop_table("auto_replies")
    op.drop_table("conversations")
    with op.batch_alter_table("queue_messages") as batch:
        batch.drop_column("received_size")
