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
    LargeBinary,
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
    Column("created_at", UTCDateTime, nullable=False),
    # First UID no read-write session has seen yet: \Recent (RFC 3501) is
    # handed to exactly one session by moving this mark.
    Column("recent_uid", BigInteger, nullable=False, server_default="1"),
    # Every keyword ever set in the mailbox (space-separated), for FLAGS.
    Column("keywords", Text, nullable=False, server_default=""),
    UniqueConstraint("owner", "name"),
)

#: Subscriptions are names, not mailboxes: RFC 3501 lets one outlive its mailbox.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("owner", String(320), primary_key=True),
    Column("name", String(1024), primary_key=True),
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
    # The parsed MIME structure as JSON (imap.mime.Part), filled on first use:
    # ENVELOPE and BODYSTRUCTURE never re-read the message once it is there.
    Column("structure", Text, nullable=True),
    # Also filled with the structure (imap.cache): the ENVELOPE as sent, and the
    # decoded Subject values for SEARCH; NULL until computed.
    Column("envelope", LargeBinary, nullable=True),
    Column("subject", Text, nullable=True),
    UniqueConstraint("mailbox_id", "uid"),
    Index(None, "mailbox_id", "modseq"),
    Index(None, "blob_sha256"),
    Index(None, "mailbox_id", "internal_date"),  # retention (MSSC-RETENTION-1)
)

#: UIDs expunged, with the MODSEQ of the expunge: QRESYNC's VANISHED (RFC 7162).
mailbox_expunges = Table(
    "mailbox_expunges",
    metadata,
    Column(
        "mailbox_id",
        Integer,
        ForeignKey("mailboxes.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("uid", BigInteger, primary_key=True),
    Column("modseq", BigInteger, nullable=False),
    Index(None, "mailbox_id", "modseq"),
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

# --------------------------------------------------------------------------- directory

bal = Table(
    "bal",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False),  # as created: local part preserved
    Column("address_key", String(320), nullable=False, unique=True),  # lookups
    Column("bal_type", String(3), nullable=False),  # PER, ORG, APP, CAB
    Column("display_name", String(256), nullable=False),
    Column("person_id_type", String(8), nullable=True),  # RPPS, ADELI
    Column("person_id", String(16), nullable=True),
    Column("facility_id_type", String(8), nullable=True),  # FINESS, SIRET, SIREN
    Column("facility_id", String(16), nullable=True),
    Column("facility_name", String(256), nullable=True),
    Column("service", String(256), nullable=True),
    Column("profession_code", String(16), nullable=True),
    Column("profession_label", String(128), nullable=True),
    Column("specialty_code", String(16), nullable=True),
    Column("specialty_label", String(128), nullable=True),
    Column("city", String(128), nullable=True),
    Column("postal_code", String(16), nullable=True),
    Column("pharmacy_accepts_patient_initiation", Boolean, nullable=False),
    Column("preferred_rank", Integer, nullable=True),  # 1 = the person's preferred BAL
    Column("liste_rouge", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

bal_members = Table(
    "bal_members",
    metadata,
    Column("bal_id", Integer, ForeignKey("bal.id", ondelete="CASCADE"), primary_key=True),
    Column("member_key", String(320), primary_key=True),  # address_key of a PER BAL
)

bal_credentials = Table(
    "bal_credentials",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("bal_id", Integer, ForeignKey("bal.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # password, certificate, oauth
    # Argon2id hash; SHA-256 certificate fingerprint (hex); "issuer subject" of an OAuth identity.
    Column("value", String(512), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("bal_id", "kind", "value"),
    Index(None, "kind", "value"),
)

patients = Table(
    "patients",
    metadata,
    Column("ins", String(15), primary_key=True),
    Column("status", String(16), nullable=False),  # not_created, opposed, open, closed
    Column("first_name", String(128), nullable=True),
    Column("last_name", String(128), nullable=True),
    Column("notification_email", String(320), nullable=True),
    Column("password_hash", String(256), nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

whitelist_generations = Table(
    "whitelist_generations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("imported_at", UTCDateTime, nullable=False),
    Column("generated_at", UTCDateTime, nullable=True),  # DateDeGeneration of the file
    Column("source", String(1024), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("entry_count", Integer, nullable=False),
    Column("domain_count", Integer, nullable=False),
    Column("domain_only", Boolean, nullable=False),  # a private lab's plain list: no DN pairing
    Column("truncated", Boolean, nullable=False),
    Column("active", Boolean, nullable=False),
)

whitelist_entries = Table(
    "whitelist_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "generation_id",
        Integer,
        ForeignKey("whitelist_generations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("domain", String(253), nullable=False),  # lower-case A-labels
    Column("dn", Text, nullable=True),  # as published
    Column("dn_key", Text, nullable=True),  # normalised comparison key
    Column("description", Text, nullable=False),
    Column("updated_at", UTCDateTime, nullable=True),
    Index(None, "generation_id", "domain"),
)

directory_entries = Table(
    "directory_entries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(8), nullable=False),  # national (extraction) or local (our BALs)
    Column("record_key", String(64), nullable=False, unique=True),  # identity of a line
    Column("content_hash", String(64), nullable=False),  # detects changed lines on re-import
    Column("address", String(320), nullable=False),
    Column("address_key", String(320), nullable=False),
    Column("bal_type", String(3), nullable=False),
    Column("person_id", String(16), nullable=True),
    Column("person_national_id", String(17), nullable=True),
    Column("facility_id", String(16), nullable=True),
    Column("last_name", String(128), nullable=True),
    Column("first_name", String(128), nullable=True),
    Column("name_key", String(256), nullable=False),  # folded "last first", for prefix search
    Column("organisation", String(256), nullable=True),
    Column("profession_code", String(16), nullable=True),
    Column("profession_label", String(128), nullable=True),
    Column("profession_key", String(128), nullable=True),
    Column("specialty_label", String(128), nullable=True),
    Column("city", String(128), nullable=True),
    Column("city_key", String(128), nullable=True),
    Column("postal_code", String(16), nullable=True),
    Column("record", Text, nullable=False),  # the whole record as JSON, for export and display
    Index(None, "address_key"),
    Index(None, "person_id"),
    Index(None, "person_national_id"),
    Index(None, "facility_id"),
    Index(None, "name_key"),
    Index(None, "city_key"),
    Index(None, "postal_code"),
    Index(None, "profession_key"),
)

directory_tokens = Table(
    "directory_tokens",
    metadata,
    Column("token", String(64), primary_key=True),  # a folded word of a name, organisation, city
    Column(
        "entry_id",
        Integer,
        ForeignKey("directory_entries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Index(None, "entry_id"),
)

#: Every column that references a blob of the message store. GC keeps any blob
#: named here; a package that stores blob references registers its column.
# --------------------------------------------------------------------------- SMTP queue

#: One accepted message: the envelope as received and the stored bytes.
queue_messages = Table(
    "queue_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("queue_id", String(32), nullable=False, unique=True),  # "queued as <id>"
    Column("blob_sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    # SHA-256 of the bytes as the client sent them (before our trace headers):
    # a peer redelivering the same message after a crash is recognised by it.
    Column("received_sha256", String(64), nullable=True),
    Column("received_size", BigInteger, nullable=True),  # as received: LIM-1 counts this
    Column("sender", String(320), nullable=False),  # "" for the null reverse-path
    Column("envid", String(100), nullable=True),  # RFC 3461 ENVID, decoded
    Column("ret", String(8), nullable=True),  # "full" / "headers"
    Column("body", String(16), nullable=True),  # 7BIT / 8BITMIME as declared
    Column("smtputf8", Boolean, nullable=False),
    Column("origin", String(16), nullable=False),  # mx, submission, dsn, ...
    Column("client", String(512), nullable=False),  # who handed it over (login or peer DN)
    Column("received_at", UTCDateTime, nullable=False),
    Index(None, "blob_sha256"),
)

#: One row per (message, recipient) still to deliver; deleted when done.
queue_recipients = Table(
    "queue_recipients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "message_id",
        Integer,
        ForeignKey("queue_messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("recipient", String(320), nullable=False),
    Column("domain", String(255), nullable=False),  # normalised, for grouping
    Column("notify", String(32), nullable=True),  # "SUCCESS,FAILURE,DELAY" / "NEVER"
    Column("orcpt", String(500), nullable=True),  # addr-type;xtext as received
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime, nullable=True),
    Column("last_status", String(512), nullable=True),  # last reply, e.g. "451 4.4.1 ..."
    Column("delay_notified", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("message_id", "recipient"),
    Index(None, "next_attempt_at"),
    Index(None, "domain"),
)

#: The static transport map: where to deliver a domain instead of its DNS MX.
transports = Table(
    "transports",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("port", Integer, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# --------------------------------------------------------------------------- MSS-C

#: The exchange between a professional address and a patient (MSSC-INIT-1,
#: MSSC-FIN-1): opened by the professional's mail, closed by a "FIN".
conversations = Table(
    "conversations",
    metadata,
    Column("professional", String(320), primary_key=True),  # address_key of the PS
    Column("ins", String(15), primary_key=True),
    Column("state", String(8), nullable=False),  # open, closed
    Column("opened_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Automatic messages already sent about an original (returns, acknowledgements,
#: MDNs): the key makes each one happen at most once, even when a peer delivers
#: the same original twice or two nodes race.
auto_replies = Table(
    "auto_replies",
    metadata,
    Column("key", String(64), primary_key=True),  # sha256 of (kind, original, recipient)
    Column("kind", String(24), nullable=False),
    Column("queue_id", String(32), nullable=False),  # the automatic message's queue id
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "created_at"),
)

#: When each patient was last notified (MSSC-NOTIF-1 rate limit).
patient_notifications = Table(
    "patient_notifications",
    metadata,
    Column("ins", String(15), primary_key=True),
    Column("last_sent_at", UTCDateTime, nullable=False),
)

# --------------------------------------------------------------------------- DMP-like store

#: One CDA document in a patient's record (Y-3, Y-4, Y-5): every version stays,
#: the replaced ones marked superseded and linked to their successor.
dmp_documents = Table(
    "dmp_documents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("unique_id", String(255), nullable=False, unique=True),  # CDA id, root^extension
    Column("set_id", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("ins", String(15), nullable=False),
    Column("ins_oid", String(64), nullable=False),
    Column("type_code", String(64), nullable=False),
    Column("type_system", String(64), nullable=False),
    Column("title", String(128), nullable=False),
    Column("blob_sha256", String(64), nullable=False),  # the CDA bytes in the message store
    Column("size", BigInteger, nullable=False),
    Column("author", String(320), nullable=False),  # idNatPS or the sending mailbox
    Column("status", String(16), nullable=False),  # current, superseded
    Column("superseded_by", Integer, ForeignKey("dmp_documents.id"), nullable=True),
    Column("invisible_patient", Boolean, nullable=False),
    Column("invisible_legal_reps", Boolean, nullable=False),
    Column("masked_ps", Boolean, nullable=False),
    Column("deposited_at", UTCDateTime, nullable=False),
    Column("visible_since", UTCDateTime, nullable=True),  # an invisible one made visible
    Column("patient_notified_at", UTCDateTime, nullable=True),  # Y-5 one-month notice
    Index(None, "ins", "status"),
    Index(None, "set_id"),
)

#: Patients who oppose feeding their record (Y-7): deposits for them are refused.
dmp_oppositions = Table(
    "dmp_oppositions",
    metadata,
    Column("ins", String(15), primary_key=True),
    Column("since", UTCDateTime, nullable=False),
    Column("recorded_by", String(320), nullable=False),
)

BLOB_REFERENCES: list[Column[Any]] = [
    mailbox_messages.c.blob_sha256,
    queue_messages.c.blob_sha256,
    dmp_documents.c.blob_sha256,
]
