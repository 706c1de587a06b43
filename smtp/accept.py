"""From DATA to "250 queued as": spool the bytes into the store, then one transaction.

The header block is held back (bounded) until it is complete, so the session
can look at ``From:`` and decide which trace headers to prepend; the body then
streams straight into the encrypted store. Nothing is acknowledged until the
blob is fsynced and the queue rows are committed (architecture invariant 1).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from sqlalchemy.engine import Connection

from mssante.batch import WriteBatcher
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


class Committer:
    """The last step of acceptance: the blob fsynced, then the queue rows committed.

    Through the node's :class:`~mssante.batch.WriteBatcher`: the messages
    whose data ended while a batch was being committed go together in the
    next one, so under load one commit serves many messages, and one that
    fails (its blob, its rows) fails alone. Nothing is acknowledged before
    its blob is fsynced and its rows committed (invariant 1).
    """

    def __init__(
        self,
        batcher: WriteBatcher,
        *,
        max_age: timedelta,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self.batcher = batcher
        self.max_age = max_age
        self.on_committed = on_committed

    async def commit(
        self, spool: Spool, envelope: Envelope, *, now: datetime, queue_id: str
    ) -> str:
        """Store then enqueue; raise on any failure (the caller answers 451 4.3.0)."""
        writer = spool.take_writer()
        blob: list[BlobRef] = []

        def rows(conn: Connection) -> str:
            return enqueue(
                conn, blob[0], envelope, now=now, max_age=self.max_age, queue_id=queue_id
            )

        queued = await self.batcher.run(rows, before=lambda: blob.append(writer.commit()))
        self.on_committed()
        return queued
