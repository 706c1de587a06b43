"""What IMAP reads and writes in the mailbox index, one function per operation.

Every function takes the caller's connection (the session runs them in a worker
thread, inside one transaction), so a MOVE is one transaction and a STORE's
MODSEQs come from one ``UPDATE … RETURNING`` on the mailbox row like an
append's. Each change bumps the mailbox's HIGHESTMODSEQ and calls
:func:`mssante.index.announce`, so IDLE sessions on other nodes wake.

Expunged UIDs are kept in ``mailbox_expunges`` with their MODSEQ: a QRESYNC
client is told exactly what vanished since the MODSEQ it last saw.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Select, delete, func, insert, or_, select, update

from mssante import index
from mssante.index import Mailbox, MailboxExists, MailboxNotFound, normalise_name
from mssante.schema import mailbox_expunges, mailbox_messages, mailboxes
from mssante.store import BlobRef

__all__ = [
    "SEPARATOR",
    "Change",
    "MailboxSums",
    "MessageRow",
    "copy_messages",
    "create",
    "delete_mailbox",
    "expunge",
    "highest_modseq",
    "quota_usage",
    "raw_rows",
    "rename",
    "rows",
    "save_cache",
    "save_structure",
    "selected_state",
    "status_counts",
    "store_flags",
    "take_recent",
]

SEPARATOR = "/"
#: Rows per ``IN (…)`` query, well under both engines' parameter limits.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Change:
    """A message's state as a session tracks it: enough for FLAGS, EXISTS and MODSEQ."""

    uid: int
    flags: frozenset[str]
    modseq: int


@dataclass(frozen=True, slots=True)
class MessageRow:
    """What FETCH needs beyond the flags: where the bytes are and the cached structure."""

    id: int
    uid: int
    blob: BlobRef
    internal_date: datetime
    flags: frozenset[str]
    modseq: int
    structure: str | None
    envelope: bytes | None = None  # the rest of the cache (imap.cache), filled with structure
    subject: str | None = None


def highest_modseq(conn: Connection, mailbox_id: int) -> int | None:
    """The mailbox's HIGHESTMODSEQ, None when it no longer exists."""
    value = conn.execute(
        select(mailboxes.c.highestmodseq).where(mailboxes.c.id == mailbox_id)
    ).scalar()
    return None if value is None else int(value)


def snapshot(conn: Connection, mailbox_id: int) -> list[Change]:
    """Every message of the mailbox in UID order (SELECT)."""
    result = conn.execute(
        select(mailbox_messages.c.uid, mailbox_messages.c.flags, mailbox_messages.c.modseq)
        .where(mailbox_messages.c.mailbox_id == mailbox_id)
        .order_by(mailbox_messages.c.uid)
    )
    return [Change(uid, frozenset(flags.split()), modseq) for uid, flags, modseq in result]


def raw_rows(conn: Connection, statement: Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of a query as the driver returns them: plain tuples, no type processing.

    For the whole-mailbox reads (100,000 rows), where SQLAlchemy's per-row
    result processing costs more than the query. Columns must not need
    conversion (integers, text, binary), or be converted by the caller. Runs
    on the connection's own DBAPI cursor, inside its transaction.
    """
    # render_postcompile: IN (…) lists become one parameter per value, as a driver takes them
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.params
    if conn.dialect.positional:
        params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    cursor = conn.connection.cursor()
    try:
        cursor.execute(str(compiled), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def selected_state(
    conn: Connection, mailbox_id: int
) -> tuple[list[int], dict[int, frozenset[str]], dict[int, int]]:
    """SELECT's load: UIDs ascending, and flags and MODSEQ by UID.

    The same as :func:`snapshot` without a :class:`Change` per message: a
    mailbox of 100,000 messages has a handful of distinct flag sets, each
    built once and shared.
    """
    result = raw_rows(
        conn,
        select(mailbox_messages.c.uid, mailbox_messages.c.flags, mailbox_messages.c.modseq)
        .where(mailbox_messages.c.mailbox_id == mailbox_id)
        .order_by(mailbox_messages.c.uid),
    )
    uids: list[int] = []
    flags: dict[int, frozenset[str]] = {}
    modseqs: dict[int, int] = {}
    shared: dict[str, frozenset[str]] = {}
    for uid, text, modseq in result:
        found = shared.get(text)
        if found is None:
            found = shared[text] = frozenset(text.split())
        uids.append(uid)
        flags[uid] = found
        modseqs[uid] = modseq
    return uids, flags, modseqs


def changes_since(
    conn: Connection, mailbox_id: int, modseq: int
) -> tuple[list[Change], list[tuple[int, int]]]:
    """Messages added or changed after ``modseq``, and ``(uid, modseq)`` of those expunged."""
    changed = conn.execute(
        select(mailbox_messages.c.uid, mailbox_messages.c.flags, mailbox_messages.c.modseq)
        .where(mailbox_messages.c.mailbox_id == mailbox_id, mailbox_messages.c.modseq > modseq)
        .order_by(mailbox_messages.c.uid)
    )
    gone = conn.execute(
        select(mailbox_expunges.c.uid, mailbox_expunges.c.modseq)
        .where(mailbox_expunges.c.mailbox_id == mailbox_id, mailbox_expunges.c.modseq > modseq)
        .order_by(mailbox_expunges.c.uid)
    )
    return (
        [Change(uid, frozenset(flags.split()), m) for uid, flags, m in changed],
        [(uid, m) for uid, m in gone],
    )


def take_recent(conn: Connection, mailbox_id: int, uidnext: int) -> tuple[int, int]:
    """Claim \\Recent for UIDs below ``uidnext`` no read-write session claimed: ``[low, high)``.

    A compare-and-swap on the mailbox's mark, so of two sessions selecting at
    once exactly one sees each new message as recent (RFC 3501 §2.3.2).
    """
    while True:
        low = conn.execute(
            select(mailboxes.c.recent_uid).where(mailboxes.c.id == mailbox_id)
        ).scalar()
        if low is None or low >= uidnext:
            return (uidnext, uidnext)
        result = conn.execute(
            update(mailboxes)
            .where(mailboxes.c.id == mailbox_id, mailboxes.c.recent_uid == low)
            .values(recent_uid=uidnext)
        )
        if result.rowcount:
            return (low, uidnext)


def _bump(conn: Connection, mailbox_id: int, count: int = 1) -> int:
    """Reserve ``count`` MODSEQs; returns the last one."""
    index.announce(conn, mailbox_id)
    return int(
        conn.execute(
            update(mailboxes)
            .where(mailboxes.c.id == mailbox_id)
            .values(highestmodseq=mailboxes.c.highestmodseq + count)
            .returning(mailboxes.c.highestmodseq)
        ).scalar_one()
    )


def _chunks(values: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


StoreMode = Literal["set", "add", "remove"]


def store_flags(
    conn: Connection,
    mailbox_id: int,
    uids: Sequence[int],
    mode: StoreMode,
    flags: frozenset[str],
    *,
    unchanged_since: int | None = None,
) -> tuple[list[Change], list[int]]:
    """Change flags of existing messages; returns (changed, refused by UNCHANGEDSINCE).

    Messages whose flags end up the same are left alone (no new MODSEQ), as
    RFC 7162 §3.1.3 allows; they are neither changed nor refused.
    """
    index.lock_mailbox(conn, mailbox_id)
    current: list[tuple[int, int, frozenset[str], int]] = []
    for chunk in _chunks(sorted(uids)):
        current.extend(
            (row_id, uid, frozenset(text.split()), modseq)
            for row_id, uid, text, modseq in conn.execute(
                select(
                    mailbox_messages.c.id,
                    mailbox_messages.c.uid,
                    mailbox_messages.c.flags,
                    mailbox_messages.c.modseq,
                ).where(
                    mailbox_messages.c.mailbox_id == mailbox_id,
                    mailbox_messages.c.uid.in_(chunk),
                )
            )
        )
    refused: list[int] = []
    updates: list[tuple[int, int, frozenset[str]]] = []
    for row_id, uid, old, modseq in sorted(current, key=lambda r: r[1]):
        if unchanged_since is not None and modseq > unchanged_since:
            refused.append(uid)
            continue
        new = flags if mode == "set" else old | flags if mode == "add" else old - flags
        if new != old:
            updates.append((row_id, uid, new))
    if not updates:
        return [], refused
    if mode != "remove":
        index.add_keywords(conn, mailbox_id, flags)
    last = _bump(conn, mailbox_id, len(updates))
    changed = []
    for offset, (row_id, uid, new) in enumerate(updates):
        modseq = last - len(updates) + 1 + offset
        conn.execute(
            update(mailbox_messages)
            .where(mailbox_messages.c.id == row_id)
            .values(flags=" ".join(sorted(new)), modseq=modseq)
        )
        changed.append(Change(uid, new, modseq))
    return changed, refused


def expunge(conn: Connection, mailbox_id: int, uids: Sequence[int] | None = None) -> list[int]:
    """Remove the ``\\Deleted`` messages (only those of ``uids`` when given); their UIDs."""
    # The index narrows to rows mentioning \\Deleted; the exact flag is checked below.
    found = conn.execute(
        select(mailbox_messages.c.uid, mailbox_messages.c.flags).where(
            mailbox_messages.c.mailbox_id == mailbox_id,
            mailbox_messages.c.flags.contains("\\Deleted", autoescape=True),
        )
    ).all()
    wanted = None if uids is None else set(uids)
    gone = sorted(
        uid
        for uid, flags in found
        if "\\Deleted" in flags.split() and (wanted is None or uid in wanted)
    )
    return remove(conn, mailbox_id, gone)


def remove(conn: Connection, mailbox_id: int, uids: Sequence[int]) -> list[int]:
    """Take messages out of a mailbox (EXPUNGE, MOVE), logging them for QRESYNC."""
    if not uids:
        return []
    modseq = _bump(conn, mailbox_id)
    for chunk in _chunks(list(uids)):
        conn.execute(
            delete(mailbox_messages).where(
                mailbox_messages.c.mailbox_id == mailbox_id, mailbox_messages.c.uid.in_(chunk)
            )
        )
    conn.execute(
        insert(mailbox_expunges),
        [{"mailbox_id": mailbox_id, "uid": uid, "modseq": modseq} for uid in uids],
    )
    return list(uids)


def rows(conn: Connection, mailbox_id: int, uids: Sequence[int]) -> list[MessageRow]:
    """The index rows of these UIDs, in UID order (missing ones are skipped)."""
    found: list[MessageRow] = []
    for chunk in _chunks(sorted(uids)):
        result = conn.execute(
            select(mailbox_messages).where(
                mailbox_messages.c.mailbox_id == mailbox_id, mailbox_messages.c.uid.in_(chunk)
            )
        )
        found.extend(_row(r) for r in result)
    found.sort(key=lambda r: r.uid)
    return found


def _row(r: Any) -> MessageRow:
    return MessageRow(
        id=r.id,
        uid=r.uid,
        blob=BlobRef(r.blob_sha256, r.size),
        internal_date=r.internal_date,
        flags=frozenset(r.flags.split()),
        modseq=r.modseq,
        structure=r.structure,
        envelope=r.envelope,
        subject=r.subject,
    )


def envelopes(
    conn: Connection, mailbox_id: int, uids: Sequence[int]
) -> list[tuple[int, int, str, bytes | None]]:
    """``(uid, row id, blob sha256, cached ENVELOPE or None)`` of these UIDs, in UID order.

    Many UIDs are read as one range (and filtered here) rather than as
    ``IN (…)`` chunks: ``FETCH 1:*`` of 100,000 messages is one indexed scan.
    """
    if not uids:
        return []
    columns = (
        mailbox_messages.c.uid,
        mailbox_messages.c.id,
        mailbox_messages.c.blob_sha256,
        mailbox_messages.c.envelope,
    )
    ordered = sorted(uids)
    found: list[tuple[int, int, str, bytes | None]]
    if len(ordered) <= _CHUNK:
        result = conn.execute(
            select(*columns).where(
                mailbox_messages.c.mailbox_id == mailbox_id, mailbox_messages.c.uid.in_(ordered)
            )
        )
        found = [(r[0], r[1], r[2], r[3]) for r in result.all()]
    else:
        wanted = set(ordered)
        rows = raw_rows(
            conn,
            select(*columns).where(
                mailbox_messages.c.mailbox_id == mailbox_id,
                mailbox_messages.c.uid >= ordered[0],
                mailbox_messages.c.uid <= ordered[-1],
            ),
        )
        found = [(r[0], r[1], r[2], r[3]) for r in rows if r[0] in wanted]
    found.sort(key=lambda r: r[0])
    return found


def save_cache(conn: Connection, entries: dict[int, dict[str, Any]]) -> None:
    """Write cache columns (:mod:`imap.cache`) by row id; the bytes never change, so no race."""
    for row_id, values in entries.items():
        conn.execute(update(mailbox_messages).where(mailbox_messages.c.id == row_id).values(values))


def save_structure(conn: Connection, structures: dict[int, str]) -> None:
    """Cache parsed structures (by row id); a message's bytes never change, so no race."""
    for row_id, structure in structures.items():
        conn.execute(
            update(mailbox_messages)
            .where(mailbox_messages.c.id == row_id)
            .values(structure=structure)
        )


def copy_messages(
    conn: Connection, target: Mailbox, messages: Sequence[MessageRow]
) -> list[tuple[int, int]]:
    """Copy messages (same blob, flags and date; new UIDs); ``(source uid, new uid)`` pairs."""
    pairs = []
    for row in messages:
        flags = row.flags - {"\\Recent"}
        entry = index.append(conn, target, row.blob, internal_date=row.internal_date, flags=flags)
        if row.structure is not None:
            cached = {"structure": row.structure, "envelope": row.envelope, "subject": row.subject}
            save_cache(conn, {entry.id: cached})
        pairs.append((row.uid, entry.uid))
    return pairs


def _create_parents(conn: Connection, owner: str, name: str, *, now: datetime) -> None:
    """Create the missing levels above ``name`` (RFC 3501 §6.3.3, and for RENAME)."""
    parts = name.split(SEPARATOR)
    for depth in range(1, len(parts)):
        parent = SEPARATOR.join(parts[:depth])
        if index.get_mailbox(conn, owner, parent) is None:
            index.create_mailbox(conn, owner, parent, now=now)


def create(conn: Connection, owner: str, name: str, *, now: datetime) -> Mailbox:
    """CREATE, with any missing parents."""
    name = normalise_name(name.rstrip(SEPARATOR))
    _create_parents(conn, owner, name, now=now)
    return index.create_mailbox(conn, owner, name, now=now)


def delete_mailbox(conn: Connection, owner: str, name: str) -> None:
    """DELETE: refused for INBOX and for a mailbox with children (as Dovecot does)."""
    mailbox = index.get_mailbox(conn, owner, name)
    if mailbox is None:
        raise MailboxNotFound(name)
    if mailbox.name == "INBOX":
        raise MailboxExists("INBOX cannot be deleted")
    child = conn.execute(
        select(mailboxes.c.id).where(
            mailboxes.c.owner == owner, mailboxes.c.name.startswith(mailbox.name + SEPARATOR)
        )
    ).first()
    if child is not None:
        raise MailboxExists("the mailbox has children; delete them first")
    index.announce(conn, mailbox.id)
    # Its messages and expunge log go with it (ON DELETE CASCADE).
    conn.execute(delete(mailboxes).where(mailboxes.c.id == mailbox.id))


def rename(conn: Connection, owner: str, old: str, new: str, *, now: datetime) -> None:
    """RENAME with its children; renaming INBOX moves its messages to a new mailbox."""
    source = index.get_mailbox(conn, owner, old)
    if source is None:
        raise MailboxNotFound(old)
    new = normalise_name(new.rstrip(SEPARATOR))
    if index.get_mailbox(conn, owner, new) is not None:
        raise MailboxExists(f"mailbox {new!r} already exists")
    if source.name == "INBOX":
        target = create(conn, owner, new, now=now)
        moved = copy_messages(
            conn, target, rows(conn, source.id, [c.uid for c in snapshot(conn, source.id)])
        )
        remove(conn, source.id, [uid for uid, _ in moved])
        return
    _create_parents(conn, owner, new, now=now)
    family = conn.execute(
        select(mailboxes.c.id, mailboxes.c.name).where(
            mailboxes.c.owner == owner,
            or_(
                mailboxes.c.name == source.name,
                mailboxes.c.name.startswith(source.name + SEPARATOR),
            ),
        )
    ).all()
    for row_id, name in family:
        renamed = new + name[len(source.name) :]
        conn.execute(update(mailboxes).where(mailboxes.c.id == row_id).values(name=renamed))
        index.announce(conn, row_id)


def status_counts(conn: Connection, mailbox_id: int) -> tuple[int, int, int, int]:
    """(messages, unseen, deleted, size in bytes) of one mailbox."""
    total, size = conn.execute(
        select(func.count(), func.coalesce(func.sum(mailbox_messages.c.size), 0)).where(
            mailbox_messages.c.mailbox_id == mailbox_id
        )
    ).one()
    flags = conn.execute(
        select(mailbox_messages.c.flags).where(
            mailbox_messages.c.mailbox_id == mailbox_id, mailbox_messages.c.flags != ""
        )
    ).scalars()
    seen = deleted = 0
    for text in flags:
        names = text.split()
        seen += "\\Seen" in names
        deleted += "\\Deleted" in names
    return int(total), int(total) - seen, deleted, int(size)


class MailboxSums:
    """Bytes and messages of each mailbox, stamped with its UIDVALIDITY and HIGHESTMODSEQ.

    Every change of a mailbox's messages (append, copy, expunge, retention)
    moves its HIGHESTMODSEQ, and a message's size never changes: a sum whose
    stamp is the mailbox's current one is still right, on any node (the
    UIDVALIDITY tells a new mailbox that reuses a deleted one's id). Thread-safe.
    So an APPEND's quota check sums again only the mailboxes that changed,
    not the 100,000 messages of an untouched INBOX.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._sums: dict[int, tuple[tuple[int, int], int, int]] = {}
        self._lock = threading.Lock()

    def get(self, mailbox_id: int, stamp: tuple[int, int]) -> tuple[int, int] | None:
        with self._lock:
            found = self._sums.get(mailbox_id)
        if found is None or found[0] != stamp:
            return None
        return found[1], found[2]

    def put(self, mailbox_id: int, stamp: tuple[int, int], size: int, count: int) -> None:
        with self._lock:
            if len(self._sums) >= self.max_entries and mailbox_id not in self._sums:
                self._sums.pop(next(iter(self._sums)))  # the oldest entry
            self._sums[mailbox_id] = (stamp, size, count)


def quota_usage(conn: Connection, owner: str, sums: MailboxSums | None = None) -> tuple[int, int]:
    """(bytes, messages) stored in all the mailboxes of one owner: the QUOTA root.

    With ``sums``, per-mailbox totals whose HIGHESTMODSEQ has not moved are reused.
    """
    if sums is not None:
        used = count = 0
        boxes = conn.execute(
            select(mailboxes.c.id, mailboxes.c.uidvalidity, mailboxes.c.highestmodseq).where(
                mailboxes.c.owner == owner
            )
        ).all()
        for box_id, uidvalidity, modseq in boxes:
            found = sums.get(box_id, (uidvalidity, modseq))
            if found is None:
                size, messages = conn.execute(
                    select(func.coalesce(func.sum(mailbox_messages.c.size), 0), func.count()).where(
                        mailbox_messages.c.mailbox_id == box_id
                    )
                ).one()
                found = int(size), int(messages)
                sums.put(box_id, (uidvalidity, modseq), *found)
            used += found[0]
            count += found[1]
        return used, count
    used, count = conn.execute(
        select(func.coalesce(func.sum(mailbox_messages.c.size), 0), func.count())
        .select_from(mailbox_messages.join(mailboxes))
        .where(mailboxes.c.owner == owner)
    ).one()
    return int(used), int(count)
