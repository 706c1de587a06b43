"""IMAP: recent and keyword state per mailbox, cached structure, expunge log, subscriptions.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("owner", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.PrimaryKeyConstraint("owner", "name", name=op.f("pk_subscriptions")),
    )
    op.execute(
        "INSERT INTO subscriptions (owner, name) SELECT owner, name FROM mailboxes WHERE subscribed"
    )
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("subscribed")
        batch.add_column(
            sa.Column("recent_uid", sa.BigInteger(), nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("keywords", sa.Text(), nullable=False, server_default=""))
    with op.batch_alter_table("mailbox_messages") as batch:
        batch.add_column(sa.Column("structure", sa.Text(), nullable=True))
    op.create_table(
        "mailbox_expunges",
        sa.Column("mailbox_id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.Column("modseq", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_mailbox_expunges_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("mailbox_id", "uid", name=op.f("pk_mailbox_expunges")),
    )
    op.create_index(
        op.f("ix_mailbox_expunges_mailbox_id_modseq"),
        "mailbox_expunges",
        ["mailbox_id", "modseq"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_mailbox_expunges_mailbox_id_modseq"), table_name="mailbox_expunges")
    op.drop_table("mailbox_expunges")
    with op.batch_alter_table("mailbox_messages") as batch:
        batch.drop_column("structure")
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("keywords")
        batch.drop_column("recent_uid")
        batch.add_column(
            sa.Column("subscribed", sa.Boolean(), nullable=False, server_default=sa.true())
        )
    op.drop_table("subscriptions")
