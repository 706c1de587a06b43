"""IMAP index cache: the ENVELOPE as sent and the decoded Subject, beside the structure.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: not computed yet (the first FETCH or SEARCH that needs them fills them in).
    with op.batch_alter_table("mailbox_messages") as batch:
        batch.add_column(sa.Column("envelope", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("subject", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("mailbox_messages") as batch:
        batch.drop_column("subject")
        batch.drop_column("envelope")
