"""SMTP queue: accepted messages, one row per recipient to deliver, the transport map.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

import mssante.schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("queue_id", sa.String(length=32), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("received_sha256", sa.String(length=64), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=False),
        sa.Column("envid", sa.String(length=100), nullable=True),
        sa.Column("ret", sa.String(length=8), nullable=True),
        sa.Column("body", sa.String(length=16), nullable=True),
        sa.Column("smtputf8", sa.Boolean(), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("client", sa.String(length=512), nullable=False),
        sa.Column("received_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_messages")),
        sa.UniqueConstraint("queue_id", name=op.f("uq_queue_messages_queue_id")),
    )
    op.create_index(
        op.f("ix_queue_messages_blob_sha256"), "queue_messages", ["blob_sha256"], unique=False
    )
    op.create_table(
        "queue_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("notify", sa.String(length=32), nullable=True),
        sa.Column("orcpt", sa.String(length=500), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", mssante.schema.UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.String(length=512), nullable=True),
        sa.Column("delay_notified", sa.Boolean(), nullable=False),
        sa.Column("created_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["queue_messages.id"],
            name=op.f("fk_queue_recipients_message_id_queue_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_queue_recipients")),
        sa.UniqueConstraint(
            "message_id", "recipient", name=op.f("uq_queue_recipients_message_id_recipient")
        ),
    )
    op.create_index(
        op.f("ix_queue_recipients_next_attempt_at"),
        "queue_recipients",
        ["next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_queue_recipients_domain"), "queue_recipients", ["domain"], unique=False
    )
    op.create_table(
        "transports",
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("updated_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("domain", name=op.f("pk_transports")),
    )


def downgrade() -> None:
    op.drop_table("transports")
    op.drop_index(op.f("ix_queue_recipients_domain"), table_name="queue_recipients")
    op.drop_index(op.f("ix_queue_recipients_next_attempt_at"), table_name="queue_recipients")
    op.drop_table("queue_recipients")
    op.drop_index(op.f("ix_queue_messages_blob_sha256"), table_name="queue_messages")
    op.drop_table("queue_messages")
