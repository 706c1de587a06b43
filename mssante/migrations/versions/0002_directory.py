"""Directory: mailboxes (BAL), members, credentials, patients, whitelist, national extraction.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

import mssante.schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("address_key", sa.String(length=320), nullable=False),
        sa.Column("bal_type", sa.String(length=3), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("person_id_type", sa.String(length=8), nullable=True),
        sa.Column("person_id", sa.String(length=16), nullable=True),
        sa.Column("facility_id_type", sa.String(length=8), nullable=True),
        sa.Column("facility_id", sa.String(length=16), nullable=True),
        sa.Column("facility_name", sa.String(length=256), nullable=True),
        sa.Column("service", sa.String(length=256), nullable=True),
        sa.Column("profession_code", sa.String(length=16), nullable=True),
        sa.Column("profession_label", sa.String(length=128), nullable=True),
        sa.Column("specialty_code", sa.String(length=16), nullable=True),
        sa.Column("specialty_label", sa.String(length=128), nullable=True),
        sa.Column("city", sa.String(length=128), nullable=True),
        sa.Column("postal_code", sa.String(length=16), nullable=True),
        sa.Column("pharmacy_accepts_patient_initiation", sa.Boolean(), nullable=False),
        sa.Column("preferred_rank", sa.Integer(), nullable=True),
        sa.Column("liste_rouge", sa.Boolean(), nullable=False),
        sa.Column("created_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bal")),
        sa.UniqueConstraint("address_key", name=op.f("uq_bal_address_key")),
    )
    op.create_table(
        "directory_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("record_key", sa.String(length=64), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("address_key", sa.String(length=320), nullable=False),
        sa.Column("bal_type", sa.String(length=3), nullable=False),
        sa.Column("person_id", sa.String(length=16), nullable=True),
        sa.Column("person_national_id", sa.String(length=17), nullable=True),
        sa.Column("facility_id", sa.String(length=16), nullable=True),
        sa.Column("last_name", sa.String(length=128), nullable=True),
        sa.Column("first_name", sa.String(length=128), nullable=True),
        sa.Column("name_key", sa.String(length=256), nullable=False),
        sa.Column("organisation", sa.String(length=256), nullable=True),
        sa.Column("profession_code", sa.String(length=16), nullable=True),
        sa.Column("profession_label", sa.String(length=128), nullable=True),
        sa.Column("profession_key", sa.String(length=128), nullable=True),
        sa.Column("specialty_label", sa.String(length=128), nullable=True),
        sa.Column("city", sa.String(length=128), nullable=True),
        sa.Column("city_key", sa.String(length=128), nullable=True),
        sa.Column("postal_code", sa.String(length=16), nullable=True),
        sa.Column("record", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_entries")),
        sa.UniqueConstraint("record_key", name=op.f("uq_directory_entries_record_key")),
    )
    with op.batch_alter_table("directory_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_directory_entries_address_key"), ["address_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_facility_id"), ["facility_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_name_key"), ["name_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_city_key"), ["city_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_postal_code"), ["postal_code"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_profession_key"), ["profession_key"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_person_id"), ["person_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_directory_entries_person_national_id"),
            ["person_national_id"],
            unique=False,
        )

    op.create_table(
        "patients",
        sa.Column("ins", sa.String(length=15), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("first_name", sa.String(length=128), nullable=True),
        sa.Column("last_name", sa.String(length=128), nullable=True),
        sa.Column("notification_email", sa.String(length=320), nullable=True),
        sa.Column("password_hash", sa.String(length=256), nullable=True),
        sa.Column("updated_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ins", name=op.f("pk_patients")),
    )
    op.create_table(
        "whitelist_generations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("imported_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.Column("generated_at", mssante.schema.UTCDateTime(), nullable=True),
        sa.Column("source", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("entry_count", sa.Integer(), nullable=False),
        sa.Column("domain_count", sa.Integer(), nullable=False),
        sa.Column("domain_only", sa.Boolean(), nullable=False),
        sa.Column("truncated", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whitelist_generations")),
    )
    op.create_table(
        "bal_credentials",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("bal_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=512), nullable=False),
        sa.Column("created_at", mssante.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bal_id"], ["bal.id"], name=op.f("fk_bal_credentials_bal_id_bal"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bal_credentials")),
        sa.UniqueConstraint(
            "bal_id", "kind", "value", name=op.f("uq_bal_credentials_bal_id_kind_value")
        ),
    )
    with op.batch_alter_table("bal_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bal_credentials_kind_value"), ["kind", "value"], unique=False
        )

    op.create_table(
        "bal_members",
        sa.Column("bal_id", sa.Integer(), nullable=False),
        sa.Column("member_key", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["bal_id"], ["bal.id"], name=op.f("fk_bal_members_bal_id_bal"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("bal_id", "member_key", name=op.f("pk_bal_members")),
    )
    op.create_table(
        "directory_tokens",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["directory_entries.id"],
            name=op.f("fk_directory_tokens_entry_id_directory_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token", "entry_id", name=op.f("pk_directory_tokens")),
    )
    with op.batch_alter_table("directory_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_directory_tokens_entry_id"), ["entry_id"], unique=False
        )

    op.create_table(
        "whitelist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.Column("dn", sa.Text(), nullable=True),
        sa.Column("dn_key", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("updated_at", mssante.schema.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["whitelist_generations.id"],
            name=op.f("fk_whitelist_entries_generation_id_whitelist_generations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whitelist_entries")),
    )
    with op.batch_alter_table("whitelist_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_whitelist_entries_generation_id_domain"),
            ["generation_id", "domain"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("whitelist_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_whitelist_entries_generation_id_domain"))

    op.drop_table("whitelist_entries")
    with op.batch_alter_table("directory_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directory_tokens_entry_id"))

    op.drop_table("directory_tokens")
    op.drop_table("bal_members")
    with op.batch_alter_table("bal_credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bal_credentials_kind_value"))

    op.drop_table("bal_credentials")
    op.drop_table("whitelist_generations")
    op.drop_table("patients")
    with op.batch_alter_table("directory_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_directory_entries_person_national_id"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_person_id"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_name_key"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_facility_id"))
        batch_op.drop_index(batch_op.f("ix_directory_entries_address_key"))

    op.drop_table("directory_entries")
    op.drop_table("bal")
