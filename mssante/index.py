"""The mailbox index: what SMTP delivery writes and IMAP reads.

Like Dovecot's index it is a cache over the truth, the immutable blobs of
:mod:`mssante.store`: a row only records where the message is, its size,
dates, UID, flags and MODSEQ. Every function takes the caller's connection so
a delivery can add its rows in the same transaction as its queue bookkeeping.

UIDs are allocated by one ``UPDATE … RETURNING`` on the mailbox row, which both
engines serialise, so concurrent appends never share a UID. An append with a
``delivery_key`` (the queue's "(message, recipient)" identity) is idempotent:
delivering the same queue entry twice leaves one message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from mssante.mailbox_events import CHANNEL
from mssante.schema import counters, mailbox_messages, mailboxes, subscriptions
from mssante.store import BlobRef

#: Mailboxes every BAL starts with, and their RFC 6154 special-use attribute.
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

#: System flags (RFC 9051 §2.3.2); any other flag is a keyword.
SYSTEM_FLAGS = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"})


class MailboxNotFound(LookupError):
    pass


class MailboxExists(ValueError):
    pass


@dataclass(frozen=True)
class Mailbox:
    id: int
    owner: str
    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    recent_uid: int
    keywords: frozenset[str]


@dataclass(frozen=True)
class MessageEntry:
    id: int
    mailbox_id: int
    uid: int
    blob: BlobRef
    internal_date: datetime
    flags: frozenset[str]
    modseq: int
    delivery_key: str | None


def normalise_name(name: str) -> str:
    """INBOX is case-insensitive (RFC 3501 §5.1); every other name is kept as is."""
    return "INBOX" if name.upper() == "INBOX" else name


def _flags_text(flags: Iterable[str]) -> str:
    return " ".join(sorted(set(flags)))


def _mailbox(row: Any) -> Mailbox:
    return Mailbox(
        id=row.id,
        owner=row.owner,
        name=row.name,
        special_use=row.special_use,
        uidvalidity=row.uidvalidity,
        uidnext=row.uidnext,
        highestmodseq=row.highestmodseq,
        recent_uid=row.recent_uid,
        keywords=frozenset(row.keywords.split()),
    )


def _entry(row: Any) -> MessageEntry:
    return MessageEntry(
        id=row.id,
        mailbox_id=row.mailbox_id,
        uid=row.uid,
        blob=BlobRef(row.blob_sha256, row.size),
        internal_date=row.internal_date,
        flags=frozenset(row.flags.split()),
        modseq=row.modseq,
        delivery_key=row.delivery_key,
    )


def create_mailbox(
    conn: Connection,
    owner: str,
    name: str,
    *,
    now: datetime,
    special_use: str | None = None,
) -> Mailbox:
    """Create a mailbox; its UIDVALIDITY is new even if the name was used before."""
    name = normalise_name(name)
    if get_mailbox(conn, owner, name) is not None:
        raise MailboxExists(f"mailbox {name!r} already exists")
    uidvalidity = _next_uidvalidity(conn, now)
    try:
        row_id = conn.execute(
            insert(mailboxes)
            .values(
                owner=owner,
                name=name,
                special_use=special_use,
                uidvalidity=uidvalidity,
                uidnext=1,
                highestmodseq=1,
                created_at=now,
                recent_uid=1,
                keywords="",
            )
            .returning(mailboxes.c.id)
        ).scalar_one()
    except IntegrityError:
        raise MailboxExists(f"mailbox {name!r} already exists") from None
    return Mailbox(row_id, owner, name, special_use, uidvalidity, 1, 1, 1, frozenset())


def _next_uidvalidity(conn: Connection, now: datetime) -> int:
    """A UIDVALIDITY never handed out before, even to a since-deleted mailbox.

    It follows the clock (so a restored database does not reuse values) and a
    persistent counter (so two mailboxes created in one second differ).
    """
    last = conn.execute(select(counters.c.value).where(counters.c.name == "uidvalidity")).scalar()
    value = max(int(now.timestamp()), (last or 0) + 1)
    if last is None:
        conn.execute(insert(counters).values(name="uidvalidity", value=value))
    else:
        conn.execute(update(counters).where(counters.c.name == "uidvalidity").values(value=value))
    return value


def ensure_default_mailboxes(conn: Connection, owner: str, *, now: datetime) -> list[Mailbox]:
    """Create (and subscribe) INBOX and the special-use mailboxes of a BAL where missing."""
    names = [name for name, _ in DEFAULT_MAILBOXES]
    found = {
        row.name: _mailbox(row)
        for row in conn.execute(
            select(mailboxes).where(mailboxes.c.owner == owner, mailboxes.c.name.in_(names))
        )
    }  # one query on every delivery; creation happens once per BAL
    result = []
    for name, special_use in DEFAULT_MAILBOXES:
        existing = found.get(name)
        if existing is None:
            existing = create_mailbox(conn, owner, name, now=now, special_use=special_use)
            subscribe(conn, owner, name)
        result.append(existing)
    return result


def subscribe(conn: Connection, owner: str, name: str) -> None:
    name = normalise_name(name)
    if (
        conn.execute(
            select(subscriptions.c.name).where(
                subscriptions.c.owner == owner, subscriptions.c.name == name
            )
        ).first()
        is None
    ):
        conn.execute(insert(subscriptions).values(owner=owner, name=name))


def unsubscribe(conn: Connection, owner: str, name: str) -> bool:
    """Remove a subscription; False when there was none."""
    result = conn.execute(
        delete(subscriptions).where(
            subscriptions.c.owner == owner, subscriptions.c.name == normalise_name(name)
        )
    )
    return bool(result.rowcount)


def subscribed_names(conn: Connection, owner: str) -> set[str]:
    return set(
        conn.execute(select(subscriptions.c.name).where(subscriptions.c.owner == owner)).scalars()
    )


def add_keywords(conn: Connection, mailbox_id: int, flags: Iterable[str]) -> None:
    """Remember keywords first used in a mailbox, so FLAGS lists them (RFC 9051 §7.3.5)."""
    new = {f for f in flags if f not in SYSTEM_FLAGS and f != "\\Recent"}
    if not new:
        return
    known = conn.execute(select(mailboxes.c.keywords).where(mailboxes.c.id == mailbox_id)).scalar()
    have = set((known or "").split())
    if new <= have:
        return
    conn.execute(
        update(mailboxes)
        .where(mailboxes.c.id == mailbox_id)
        .values(keywords=_flags_text(have | new))
    )


def get_mailbox(conn: Connection, owner: str, name: str) -> Mailbox | None:
    row = conn.execute(
        select(mailboxes).where(
            mailboxes.c.owner == owner, mailboxes.c.name == normalise_name(name)
        )
    ).first()
    return None if row is None else _mailbox(row)


def mailbox_by_id(conn: Connection, mailbox_id: int) -> Mailbox | None:
    row = conn.execute(select(mailboxes).where(mailboxes.c.id == mailbox_id)).first()
    return None if row is None else _mailbox(row)


def list_mailboxes(conn: Connection, owner: str) -> list[Mailbox]:
    rows = conn.execute(
        select(mailboxes).where(mailboxes.c.owner == owner).order_by(mailboxes.c.name)
    )
    return [_mailbox(r) for r in rows]


def append(
    conn: Connection,
    mailbox: Mailbox,
    blob: BlobRef,
    *,
    internal_date: datetime,
    flags: Iterable[str] = (),
    delivery_key: str | None = None,
) -> MessageEntry:
    """Add a stored blob to a mailbox with the next UID and MODSEQ.

    With a ``delivery_key`` already present, return the existing entry and
    change nothing: the queue may deliver twice, the mailbox shows one copy.
    """
    if delivery_key is not None:
        existing = _by_delivery_key(conn, delivery_key)
        if existing is not None:
            return existing
    add_keywords(conn, mailbox.id, flags)
    announce(conn, mailbox.id)
    uid, modseq = conn.execute(
        update(mailboxes)
        .where(mailboxes.c.id == mailbox.id)
        .values(uidnext=mailboxes.c.uidnext + 1, highestmodseq=mailboxes.c.highestmodseq + 1)
        .returning(mailboxes.c.uidnext - 1, mailboxes.c.highestmodseq)
    ).one()
    flags_text = _flags_text(flags)
    values = {
        "mailbox_id": mailbox.id,
        "uid": uid,
        "blob_sha256": blob.sha256,
        "size": blob.size,
        "internal_date": internal_date,
        "flags": flags_text,
        "modseq": modseq,
        "delivery_key": delivery_key,
    }
    if delivery_key is None:
        row_id = conn.execute(
            insert(mailbox_messages).values(**values).returning(mailbox_messages.c.id)
        ).scalar_one()
    else:
        # A concurrent delivery of the same key may win the race: a savepoint
        # keeps our transaction usable, and the winner's row is the answer.
        try:
            with conn.begin_nested():
                row_id = conn.execute(
                    insert(mailbox_messages).values(**values).returning(mailbox_messages.c.id)
                ).scalar_one()
        except IntegrityError:
            existing = _by_delivery_key(conn, delivery_key)
            if existing is None:
                raise
            return existing
    return MessageEntry(
        row_id,
        mailbox.id,
        uid,
        blob,
        internal_date,
        frozenset(flags_text.split()),
        modseq,
        delivery_key,
    )


def lock_mailbox(conn: Connection, mailbox_id: int) -> None:
    """Serialise read-modify-write of a mailbox's messages across nodes (PostgreSQL).

    Flag changes read the current flags, then write them back: without this,
    two nodes changing flags of one message at once lose one change (say the
    ``$MDNSent`` of a read receipt). SQLite writers are serialised already
    (``BEGIN IMMEDIATE``). Every writer takes the mailbox row first, then
    message rows, so the lock order is the same everywhere.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(select(mailboxes.c.id).where(mailboxes.c.id == mailbox_id).with_for_update())


def announce(conn: Connection, mailbox_id: int) -> None:
    """Tell other nodes, when this transaction commits, that the mailbox changed.

    PostgreSQL queues the NOTIFY with the transaction; SQLite has one node, whose
    writers publish on :class:`mssante.mailbox_events.MailboxEvents` themselves.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": CHANNEL, "payload": str(mailbox_id)},
        )


def _by_delivery_key(conn: Connection, delivery_key: str) -> MessageEntry | None:
    row = conn.execute(
        select(mailbox_messages).where(mailbox_messages.c.delivery_key == delivery_key)
    ).first()
    return None if row is None else _entry(row)


def messages(conn: Connection, mailbox: Mailbox) -> list[MessageEntry]:
    rows = conn.execute(
        select(mailbox_messages)
        .where(mailbox_messages.c.mailbox_id == mailbox.id)
        .order_by(mailbox_messages.c.uid)
    )
    return [_entry(r) for r in rows]


def set_flags(conn: Connection, mailbox: Mailbox, uid: int, flags: Iterable[str]) -> MessageEntry:
    """Replace a message's flags; a change gets a new MODSEQ (RFC 7162)."""
    row = conn.execute(
        select(mailbox_messages).where(
            mailbox_messages.c.mailbox_id == mailbox.id, mailbox_messages.c.uid == uid
        )
    ).first()
    if row is None:
        raise MailboxNotFound(f"no message with UID {uid} in {mailbox.name!r}")
    flags_text = _flags_text(flags)
    if flags_text == row.flags:
        return _entry(row)
    add_keywords(conn, mailbox.id, flags)
    announce(conn, mailbox.id)
    modseq = conn.execute(
        update(mailboxes)
        .where(mailboxes.c.id == mailbox.id)
        .values(highestmodseq=mailboxes.c.highestmodseq + 1)
        .returning(mailboxes.c.highestmodseq)
    ).scalar_one()
    conn.execute(
        update(mailbox_messages)
        .where(mailbox_messages.c.id == row.id)
        .values(flags=flags_text, modseq=modseq)
    )
    return dataclasses.replace(_entry(row), flags=frozenset(flags_text.split()), modseq=modseq)
