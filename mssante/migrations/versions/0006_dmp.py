"""DMP-like document store: documents with versions and visibility, oppositions.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from mssante.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dmp_documents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unique_id", sa.String(length=255), nullable=False),
        sa.Column("set_id", sa.String(length=255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("ins_oid", sa.String(length=64), nullable=False),
        sa.Column("type_code", sa.String(length=64), nullable=False),
        sa.Column("type_system", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=128), nullable=False),
        sa.Column("blob_sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("author", sa.String(length=320), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("superseded_by", sa.Integer(), nullable=True),
        sa.Column("invisible_patient", sa.Boolean(), nullable=False),
        sa.Column("invisible_legal_reps", sa.Boolean(), nullable=False),
        sa.Column("masked_ps", sa.Boolean(), nullable=False),
        sa.Column("deposited_at", UTCDateTime(), nullable=False),
        sa.Column("visible_since", UTCDateTime(), nullable=True),
        sa.Column("patient_notified_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["superseded_by"],
            ["dmp_documents.id"],
            name=op.f("fk_dmp_documents_superseded_by_dmp_documents"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dmp_documents")),
        sa.UniqueConstraint("unique_id", name=op.f("uq_dmp_documents_unique_id")),
    )
    op.create_index(
        op.f("ix_dmp_documents_ins_status"), "dmp_documents", ["ins", "status"], unique=False
    )
    op.create_index(op.f("ix_dmp_documents_set_id"), "dmp_documents", ["set_id"], unique=False)
    op.create_table(
        "dmp_oppositions",
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("recorded_by", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("ins", name=op.f("pk_dmp_oppositions")),
    )


def downgrade() -> None:
    op.drop_table("dmp_oppositions")
    op.drop_index(op.f("ix_dmp_documents_set_id"), table_name="dmp_documents")
    op.drop_index(op.f("ix_dmp_documents_ins_status"), table_name="dmp_documents")
    op.drop_table("dmp_documents")
