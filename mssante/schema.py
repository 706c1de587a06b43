"""The one database schema (SQLAlchemy Core), shared by every package.

The Alembic migrations in :mod:`mssante.migrations` are the versioned truth;
these table objects are what the code queries, and a test checks that a
migrated database matches them exactly on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both engines (stored as naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC time (use the clock)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("owner", String(320), nullable=False),  # the BAL address that owns it
    Column("name", String(1024), nullable=False),  # hierarchy separator "/"
    Column("special_use", String(32), nullable=True),  # \Sent, \Drafts, ...
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uidnext", BigInteger, nullable=False),
    Column("highestmodseq", BigInteger, nullable=False),
    Column("subscribed", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("owner", "name"),
)

mailbox_messages = Table(
    "mailbox_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "mailbox_id",
        Integer,
        ForeignKey("mailboxes.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("uid", BigInteger, nullable=False),
    Column("blob_sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("internal_date", UTCDateTime, nullable=False),
    Column("flags", Text, nullable=False),  # space-separated, sorted
    Column("modseq", BigInteger, nullable=False),
    # (message, recipient) key that makes local delivery idempotent; NULL for
    # IMAP APPEND and other deliveries that have no queue identity.
    Column("delivery_key", String(255), nullable=True, unique=True),
    UniqueConstraint("mailbox_id", "uid"),
    Index(None, "mailbox_id", "modseq"),
    Index(None, "blob_sha256"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(320), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target_kind", String(32), nullable=False),
    Column("target", String(320), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("details", Text, nullable=False),  # JSON object of identifiers only
    Index(None, "at"),
    Index(None, "target_kind", "target"),
    Index(None, "actor"),
)

#: Every column that references a blob of the message store. GC keeps any blob
#: named here; a package that stores blob references registers its column.
BLOB_REFERENCES: list[Column[Any]] = [mailbox_messages.c.blob_sha256]
