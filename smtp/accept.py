"""From DATA to "250 queued as": spool the bytes into the store, then one transaction.

The header block is held back (bounded) until it is complete, so the session
can look at ``From:`` and decide which trace headers to prepend; the body then
streams straight into the encrypted store. Nothing is acknowledged until the
blob is fsynced and the queue rows are committed (architecture invariant 1).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlalchemy.engine import Connection

from mssante.db import Database
from mssante.store import BlobRef, BlobStore, BlobWriter
from smtp.queue import Envelope, enqueue

__all__ = [
    "MAX_HEADER_BLOCK",
    "Committer",
    "Spool",
    "drop_fields",
    "field_name",
    "header_end",
    "parse_headers",
    "read_header_block",
]

#: A header block larger than this is refused (552): no real message needs it.
MAX_HEADER_BLOCK = 256 * 1024


def header_end(data: bytes | bytearray) -> int:
    """Offset just past the blank line ending the headers, or -1 if not seen yet."""
    if data.startswith(b"\r\n"):
        return 2
    at = data.find(b"\r\n\r\n")
    return -1 if at < 0 else at + 4


def field_name(field: bytes) -> bytes:
    """A header field's name, lower-cased (``b"from"`` for ``b"From: x"``)."""
    return field.partition(b":")[0].strip().lower()


def drop_fields(block: bytes, drop: Callable[[bytes], bool]) -> bytes:
    """The header block without the fields ``drop`` says yes to (continuations included)."""
    fields: list[bytes] = []
    for line in block.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return b"".join(f for f in fields if not drop(f))


def read_header_block(store: BlobStore, sha256: str, limit: int = MAX_HEADER_BLOCK) -> bytes:
    """A stored message's header block (blank line included), at most ``limit`` bytes."""
    head = bytearray()
    for chunk in store.open(sha256):
        head += chunk
        end = header_end(head)
        if end >= 0:
            return bytes(head[:end])
        if len(head) > limit:
            break
    return bytes(head[:limit])


def parse_headers(block: bytes) -> Message:
    """Headers only, with the lenient compat32 policy (it never raises on junk)."""
    return BytesHeaderParser(policy=compat32).parsebytes(block)


@dataclass
class Spool:
    """One message on its way into the store: header block first, then streamed body."""

    store: BlobStore
    head: bytearray = field(default_factory=bytearray)
    header_complete: bool = False
    header_too_large: bool = False
    #: The policy asked to see the whole message first: nothing is written until then.
    holding: bool = False
    #: The header block, parsed on first use (see :meth:`headers`).
    parsed: Message | None = None
    #: SHA-256 of everything fed (the bytes as received, without our prefix).
    digest: Any = field(default_factory=hashlib.sha256)
    _writer: BlobWriter | None = None

    def feed(self, chunk: bytes) -> bool:
        """Add bytes; True once the header block is complete (call :meth:`start`)."""
        self.digest.update(chunk)
        if self._writer is not None:
            self._writer.write(chunk)
            return False
        self.head += chunk
        if header_end(self.head) >= 0:
            self.header_complete = True
        elif len(self.head) > MAX_HEADER_BLOCK:
            self.header_too_large = True
            self.header_complete = True
        return self.header_complete

    @property
    def started(self) -> bool:
        return self._writer is not None

    def headers(self) -> Message:
        """The header block, parsed once (it is complete before anyone asks)."""
        if self.parsed is None:
            end = header_end(self.head)
            self.parsed = parse_headers(bytes(self.head[: end if end >= 0 else len(self.head)]))
        return self.parsed

    def start(
        self, prefix: Callable[[Message], bytes], drop: Callable[[bytes], bool] | None = None
    ) -> None:
        """Open the blob: the trace headers ``prefix`` makes, then the held-back bytes.

        ``drop`` names header fields (given whole, name included) to leave out,
        e.g. an ``Authentication-Results`` forged with our own authserv-id.
        """
        writer = self.store.writer()
        writer.write(prefix(self.headers()))
        held = bytes(self.head)
        if drop is not None:
            end = header_end(held)
            end = len(held) if end < 0 else end
            held = drop_fields(held[:end], drop) + held[end:]
        writer.write(held)
        self.head.clear()
        self._writer = writer

    def take_writer(self) -> BlobWriter:
        """The open blob, handed over to whoever makes it durable (see :class:`Committer`)."""
        assert self._writer is not None, "start() first"
        writer, self._writer = self._writer, None
        return writer

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        self.head.clear()


@dataclass
class _Pending:
    writer: BlobWriter
    envelope: Envelope
    now: datetime
    queue_id: str
    done: asyncio.Future[str]


class Committer:
    """Group commit: one thread hop, one transaction and one commit for many messages.

    Sessions hand over their message and wait for the answer. While a batch
    is being made durable (blob fsyncs, then one database transaction), the
    messages that arrive wait together for the next one, so the batch grows
    with the load and a lone message never waits for company. Nothing is
    acknowledged before its blob is fsynced and its rows committed
    (invariant 1). If the batch's transaction fails, each message is tried
    in a transaction of its own, so one bad message fails alone.
    """

    def __init__(
        self,
        db: Database,
        store: BlobStore,
        *,
        max_age: timedelta,
        on_committed: Callable[[], None] = lambda: None,
        max_batch: int = 64,
    ) -> None:
        self.db = db
        self.store = store
        self.max_age = max_age
        self.on_committed = on_committed
        self.max_batch = max_batch
        self._waiting: list[_Pending] = []
        self._draining: asyncio.Task[None] | None = None

    async def commit(
        self, spool: Spool, envelope: Envelope, *, now: datetime, queue_id: str
    ) -> str:
        """Store then enqueue; raise on any failure (the caller answers 451 4.3.0)."""
        done: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Pending(spool.take_writer(), envelope, now, queue_id, done))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="group-commit")
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    outcomes = await asyncio.to_thread(self._commit, batch)
                except asyncio.CancelledError:  # the node is going down: nobody gets a 250
                    for pending in batch + self._waiting:
                        pending.done.cancel()
                    raise
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.done.done():
                        continue
                    if isinstance(outcome, Exception):
                        pending.done.set_exception(outcome)
                    else:
                        pending.done.set_result(outcome)
                if any(isinstance(o, str) for o in outcomes):
                    self.on_committed()
        finally:
            self._draining = None

    def _commit(self, batch: list[_Pending]) -> list[str | Exception]:
        refs = self.store.commit_all([p.writer for p in batch])
        outcomes: dict[int, str | Exception] = {
            i: ref for i, ref in enumerate(refs) if isinstance(ref, Exception)
        }
        ready = [(i, ref) for i, ref in enumerate(refs) if isinstance(ref, BlobRef)]
        queued: list[str | Exception]
        try:
            with self.db.transaction() as conn:
                queued = [self._enqueue(conn, batch[i], ref) for i, ref in ready]
        except Exception:
            queued = [self._enqueue_alone(batch[i], ref) for i, ref in ready]
        outcomes.update(zip((i for i, _ in ready), queued, strict=True))
        return [outcomes[i] for i in range(len(batch))]

    def _enqueue_alone(self, pending: _Pending, ref: BlobRef) -> str | Exception:
        """In a transaction of its own, so that one failure is only its own."""
        try:
            with self.db.transaction() as conn:
                return self._enqueue(conn, pending, ref)
        except Exception as exc:
            return exc

    def _enqueue(self, conn: Connection, pending: _Pending, ref: BlobRef) -> str:
        return enqueue(
            conn,
            ref,
            pending.envelope,
            now=pending.now,
            max_age=self.max_age,
            queue_id=pending.queue_id,
        )
