"""The durable queue: accepted messages and the recipients still to deliver.

Acceptance is one transaction (one message row, one row per recipient) made
after the bytes are in the message store: that commit is what a 250 promises.
A runner *claims* due rows with a lease, so several nodes sharing PostgreSQL
never work on the same row at once, and a crashed node's rows are taken over
when the lease runs out. A row is deleted in the same transaction that records
its outcome (local append, DSN enqueued); the message row goes with its last
recipient. Delivery is therefore at-least-once, and local delivery is made
exactly-once by the mailbox index's idempotent append.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, or_, select, update

from annuaire import address_key, normalise_domain, split_address
from mssante import index
from mssante.db import Database
from mssante.schema import auto_replies, queue_messages, queue_recipients
from mssante.store import BlobRef, BlobStore

__all__ = [
    "Envelope",
    "NewRecipient",
    "QueueEntry",
    "QueuedMessage",
    "Work",
    "append_delivery",
    "claim",
    "defer",
    "delete_message",
    "enqueue",
    "enqueue_generated",
    "finish",
    "first_time",
    "list_entries",
    "new_queue_id",
    "next_attempt",
    "retry_now",
    "show",
    "stats",
]


@dataclass(frozen=True)
class NewRecipient:
    address: str
    notify: frozenset[str] | None = None
    orcpt: str | None = None


@dataclass(frozen=True)
class Envelope:
    """What was agreed in the SMTP transaction, as it goes into the queue."""

    sender: str
    recipients: tuple[NewRecipient, ...]
    origin: str  # "mx", "submission", "dsn", ...
    client: str  # the login or the peer certificate subject
    envid: str | None = None
    ret: str | None = None  # "full" / "headers"
    body: str | None = None
    smtputf8: bool = False
    received_sha256: str | None = None  # digest of the bytes as received
    received_size: int | None = None  # bytes as received, dot-unstuffed (the LIM-1 size)


@dataclass(frozen=True)
class QueuedMessage:
    id: int
    queue_id: str
    blob: BlobRef
    sender: str
    envid: str | None
    ret: str | None
    body: str | None
    smtputf8: bool
    origin: str
    client: str
    received_at: datetime
    received_sha256: str | None = None
    received_size: int | None = None

    @property
    def size(self) -> int:
        """The message's size as its sender transmitted it (without our trace headers)."""
        return self.blob.size if self.received_size is None else self.received_size

    def delivery_key(self, recipient_key: str) -> str:
        """What makes local delivery idempotent: the same bytes for the same recipient.

        Keyed on the content as received, not on our queue id, so a peer that
        delivers the same message twice (it crashed before recording our 250)
        still produces one mailbox entry.
        """
        basis = self.received_sha256 or self.queue_id
        return hashlib.sha256(f"{basis}/{recipient_key}".encode()).hexdigest()


@dataclass(frozen=True)
class Work:
    """One claimed recipient row and its message."""

    id: int
    message: QueuedMessage
    recipient: str
    domain: str
    notify: frozenset[str] | None
    orcpt: str | None
    attempts: int
    expires_at: datetime
    delay_notified: bool
    created_at: datetime


def new_queue_id(now: datetime) -> str:
    """Sortable by arrival (hex seconds) and unguessable (random tail), like Postfix long ids."""
    return f"{int(now.timestamp()):09X}{secrets.token_hex(6).upper()}"


def enqueue(
    conn: Connection,
    blob: BlobRef,
    envelope: Envelope,
    *,
    now: datetime,
    max_age: timedelta,
    queue_id: str | None = None,
) -> str:
    """Insert the message and its recipient rows (inside the caller's transaction)."""
    if not envelope.recipients:
        raise ValueError("a queued message needs at least one recipient")
    queue_id = queue_id or new_queue_id(now)
    message_id = conn.execute(
        insert(queue_messages)
        .values(
            queue_id=queue_id,
            blob_sha256=blob.sha256,
            size=blob.size,
            received_sha256=envelope.received_sha256,
            received_size=envelope.received_size,
            sender=envelope.sender,
            envid=envelope.envid,
            ret=envelope.ret,
            body=envelope.body,
            smtputf8=envelope.smtputf8,
            origin=envelope.origin,
            client=envelope.client[:512],
            received_at=now,
        )
        .returning(queue_messages.c.id)
    ).scalar_one()
    seen: set[str] = set()
    rows = []
    for rcpt in envelope.recipients:
        if rcpt.address in seen:
            continue  # RCPT TO twice for the same address: one delivery
        seen.add(rcpt.address)
        _, domain = split_address(rcpt.address)
        rows.append(
            {
                "message_id": message_id,
                "recipient": rcpt.address,
                "domain": normalise_domain(domain),
                "notify": ",".join(sorted(rcpt.notify)) if rcpt.notify else None,
                "orcpt": rcpt.orcpt,
                "attempts": 0,
                "next_attempt_at": now,
                "expires_at": now + max_age,
                "delay_notified": False,
                "created_at": now,
            }
        )
    conn.execute(insert(queue_recipients), rows)
    return queue_id


def enqueue_generated(
    conn: Connection,
    store: BlobStore,
    data: bytes,
    *,
    to: str,
    origin: str,
    client: str,
    now: datetime,
    max_age: timedelta,
    queue_id: str,
) -> BlobRef:
    """Store and enqueue a message the server wrote itself (DSN, return, MDN, notice).

    It goes out with the null reverse-path, so nothing ever answers it (RFC 5321
    §4.5.5, RFC 3834).
    """
    blob = store.put(data)
    envelope = Envelope(sender="", recipients=(NewRecipient(to),), origin=origin, client=client)
    enqueue(conn, blob, envelope, now=now, max_age=max_age, queue_id=queue_id)
    return blob


def first_time(conn: Connection, kind: str, work: Work, queue_id: str, now: datetime) -> bool:
    """Record that ``work``'s message got its ``kind`` answer (``queue_id``); False if it had one.

    Keyed on the message as received and the recipient, like the delivery
    key: a peer that delivers the same original twice, or two nodes racing on
    it, still produce one return, one MDN, one bridge integration.
    """
    basis = work.message.received_sha256 or work.message.queue_id
    key = hashlib.sha256(f"{kind}/{basis}/{address_key(work.recipient)}".encode()).hexdigest()
    if conn.execute(select(auto_replies.c.key).where(auto_replies.c.key == key)).first():
        return False
    conn.execute(insert(auto_replies).values(key=key, kind=kind, queue_id=queue_id, created_at=now))
    return True


def append_delivery(
    conn: Connection, work: Work, owner: str, blob: BlobRef, *, now: datetime
) -> int:
    """Local delivery of a row: ``blob`` into ``owner``'s INBOX, once per (message,
    recipient) however often it runs (the delivery key). Returns the mailbox id."""
    mailboxes = {m.name: m for m in index.ensure_default_mailboxes(conn, owner, now=now)}
    inbox = mailboxes.get("INBOX") or index.get_mailbox(conn, owner, "INBOX")
    assert inbox is not None
    index.append(
        conn,
        inbox,
        blob,
        internal_date=work.message.received_at,
        delivery_key=work.message.delivery_key(address_key(work.recipient)),
    )
    return inbox.id


def _message(row: object) -> QueuedMessage:
    m = row._mapping  # type: ignore[attr-defined]
    return QueuedMessage(
        id=m["message_id"],
        queue_id=m["queue_id"],
        blob=BlobRef(m["blob_sha256"], m["size"]),
        sender=m["sender"],
        envid=m["envid"],
        ret=m["ret"],
        body=m["body"],
        smtputf8=m["smtputf8"],
        origin=m["origin"],
        client=m["client"],
        received_at=m["received_at"],
        received_sha256=m["received_sha256"],
        received_size=m["received_size"],
    )


def _work_columns() -> list[object]:
    return [
        queue_recipients,
        queue_messages.c.queue_id,
        queue_messages.c.blob_sha256,
        queue_messages.c.size,
        queue_messages.c.sender,
        queue_messages.c.envid,
        queue_messages.c.ret,
        queue_messages.c.body,
        queue_messages.c.smtputf8,
        queue_messages.c.origin,
        queue_messages.c.client,
        queue_messages.c.received_at,
        queue_messages.c.received_sha256,
        queue_messages.c.received_size,
    ]


def _work(row: object) -> Work:
    m = row._mapping  # type: ignore[attr-defined]
    notify = frozenset(m["notify"].split(",")) if m["notify"] else None
    return Work(
        id=m["id"],
        message=_message(row),
        recipient=m["recipient"],
        domain=m["domain"],
        notify=notify,
        orcpt=m["orcpt"],
        attempts=m["attempts"],
        expires_at=m["expires_at"],
        delay_notified=m["delay_notified"],
        created_at=m["created_at"],
    )


def claim(db: Database, *, owner: str, now: datetime, lease: timedelta, limit: int) -> list[Work]:
    """Take up to ``limit`` due rows for ``owner`` until ``now + lease``.

    The lease condition is repeated in the UPDATE's WHERE: on PostgreSQL a row
    another node took between our SELECT and our UPDATE is re-checked and
    skipped; ``SKIP LOCKED`` keeps concurrent runners from waiting on each other.
    """
    free = or_(queue_recipients.c.lease_until.is_(None), queue_recipients.c.lease_until < now)
    due = and_(queue_recipients.c.next_attempt_at <= now, free)
    with db.transaction() as conn:
        candidates = (
            select(queue_recipients.c.id)
            .where(due)
            .order_by(queue_recipients.c.next_attempt_at, queue_recipients.c.id)
            .limit(limit)
        )
        if conn.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(conn.execute(candidates).scalars())
        if not ids:
            return []
        taken = list(
            conn.execute(
                update(queue_recipients)
                .where(queue_recipients.c.id.in_(ids), due)
                .values(lease_owner=owner, lease_until=now + lease)
                .returning(queue_recipients.c.id)
            ).scalars()
        )
        if not taken:
            return []
        rows = conn.execute(
            select(*_work_columns())  # type: ignore[call-overload]
            .join(queue_messages, queue_messages.c.id == queue_recipients.c.message_id)
            .where(queue_recipients.c.id.in_(taken))
            .order_by(queue_recipients.c.id)
        )
        return [_work(r) for r in rows]


def finish(conn: Connection, work: Work, *, owner: str) -> bool:
    """Delete a delivered or returned row (and its message if it was the last).

    Returns False when the lease was lost (another node took the row over):
    the caller's transaction must then be rolled back.
    """
    deleted = conn.execute(
        delete(queue_recipients).where(
            queue_recipients.c.id == work.id, queue_recipients.c.lease_owner == owner
        )
    ).rowcount
    if not deleted:
        return False
    left = conn.execute(
        select(func.count())
        .select_from(queue_recipients)
        .where(queue_recipients.c.message_id == work.message.id)
    ).scalar_one()
    if not left:
        conn.execute(delete(queue_messages).where(queue_messages.c.id == work.message.id))
    return True


def defer(
    conn: Connection,
    work: Work,
    *,
    owner: str,
    status: str,
    next_at: datetime,
    delay_notified: bool | None = None,
) -> bool:
    """Record a temporary failure and when to try again; releases the lease."""
    values: dict[str, object] = {
        "attempts": work.attempts + 1,
        "last_status": status[:512],
        "next_attempt_at": next_at,
        "lease_owner": None,
        "lease_until": None,
    }
    if delay_notified is not None:
        values["delay_notified"] = delay_notified
    return bool(
        conn.execute(
            update(queue_recipients)
            .where(queue_recipients.c.id == work.id, queue_recipients.c.lease_owner == owner)
            .values(**values)
        ).rowcount
    )


def next_attempt(
    attempts: int, schedule: Sequence[float], now: datetime, rng: random.Random | None = None
) -> datetime:
    """When to retry after ``attempts`` failures: the schedule's step, ±10 % jitter."""
    step = schedule[min(attempts, len(schedule) - 1)]
    jitter = (rng or random).uniform(-0.1, 0.1) * step
    return now + timedelta(seconds=max(1.0, step + jitter))


# --------------------------------------------------------------------------- inspection


@dataclass(frozen=True)
class QueueEntry:
    """One message as `mssante queue list/show` presents it (no content, no subject)."""

    queue_id: str
    sender: str
    size: int
    origin: str
    received_at: datetime
    recipients: tuple[tuple[str, int, datetime, str | None, str | None], ...]
    # (recipient, attempts, next attempt, last status, lease owner)


def _entries(conn: Connection, where: object | None = None) -> list[QueueEntry]:
    stmt = (
        select(
            queue_messages.c.id,
            queue_messages.c.queue_id,
            queue_messages.c.sender,
            queue_messages.c.size,
            queue_messages.c.origin,
            queue_messages.c.received_at,
            queue_recipients.c.recipient,
            queue_recipients.c.attempts,
            queue_recipients.c.next_attempt_at,
            queue_recipients.c.last_status,
            queue_recipients.c.lease_owner,
        )
        .join(queue_recipients, queue_recipients.c.message_id == queue_messages.c.id)
        .order_by(queue_messages.c.received_at, queue_messages.c.id, queue_recipients.c.id)
    )
    if where is not None:
        stmt = stmt.where(where)  # type: ignore[arg-type]
    heads: dict[int, Any] = {}
    rcpts: dict[int, list[tuple[str, int, datetime, str | None, str | None]]] = {}
    for row in conn.execute(stmt):
        heads.setdefault(row.id, row)
        rcpts.setdefault(row.id, []).append(
            (row.recipient, row.attempts, row.next_attempt_at, row.last_status, row.lease_owner)
        )
    return [
        QueueEntry(h.queue_id, h.sender, h.size, h.origin, h.received_at, tuple(rcpts[key]))
        for key, h in heads.items()
    ]


def list_entries(conn: Connection) -> list[QueueEntry]:
    return _entries(conn)


def show(conn: Connection, queue_id: str) -> QueueEntry | None:
    found = _entries(conn, queue_messages.c.queue_id == queue_id)
    return found[0] if found else None


def retry_now(conn: Connection, queue_id: str | None, *, now: datetime) -> int:
    """Make rows due now (one message, or all with ``None``); returns how many."""
    stmt = update(queue_recipients).values(next_attempt_at=now)
    if queue_id is not None:
        ids = select(queue_messages.c.id).where(queue_messages.c.queue_id == queue_id)
        stmt = stmt.where(queue_recipients.c.message_id.in_(ids.scalar_subquery()))
    return int(conn.execute(stmt).rowcount)


def delete_message(conn: Connection, queue_id: str) -> bool:
    """Drop a message and all its rows without a DSN (the operator's decision)."""
    found = conn.execute(
        select(queue_messages.c.id).where(queue_messages.c.queue_id == queue_id)
    ).scalar()
    if found is None:
        return False
    conn.execute(delete(queue_recipients).where(queue_recipients.c.message_id == found))
    conn.execute(delete(queue_messages).where(queue_messages.c.id == found))
    return True


def stats(conn: Connection, *, now: datetime) -> dict[str, int]:
    """Gauges for /metrics: messages, recipients, deferred (tried at least once), leased."""

    def count(table: Any, *where: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())

    return {
        "messages": count(queue_messages),
        "recipients": count(queue_recipients),
        "deferred": count(queue_recipients, queue_recipients.c.attempts > 0),
        "leased": count(queue_recipients, queue_recipients.c.lease_until > now),
    }
