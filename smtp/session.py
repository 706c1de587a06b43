"""The asyncio side of an SMTP session: move bytes between a socket and the core.

:class:`smtp.protocol.ServerConnection` decides everything about syntax and
sequence; a :class:`Policy` (the MX's or submission's) decides who may send
what to whom; this module only reads, writes, upgrades to TLS, streams DATA
into the store and runs the acceptance transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from email.message import Message
from email.utils import format_datetime
from typing import Any, Protocol

from cryptography import x509

from certs.tls import peer_certificate
from mssante.clock import Clock
from mssante.db import Database
from mssante.logs import pseudonym
from mssante.metrics import Metrics
from mssante.store import BlobStore
from smtp.accept import Committer, Spool
from smtp.protocol import (
    NEED_DATA,
    Auth,
    AuthResponse,
    DataChunk,
    DataEnd,
    Limits,
    MailFrom,
    ProtocolError,
    RcptTo,
    Reply,
    Reset,
    ServerConnection,
    StartTls,
)
from smtp.queue import Envelope, NewRecipient, new_queue_id

__all__ = ["Policy", "Session", "SessionContext"]

log = logging.getLogger("mssante.smtp")

READ_SIZE = 64 * 1024
#: A message a policy wants whole (DKIM) is held in memory up to this size only.
HOLD_LIMIT = 25 * 1024 * 1024


@dataclass
class SessionContext:
    """What every session of a node shares."""

    db: Database
    store: BlobStore
    clock: Clock
    metrics: Metrics
    hostname: str
    limits: Limits
    idle_timeout: float
    stopping: asyncio.Event
    #: Makes accepted messages durable, many at a time, and wakes the queue runner.
    committer: Committer


class Policy(Protocol):
    """The rules of one listener kind (MX or submission)."""

    name: str
    implicit_tls: bool
    normalise_bare_lf: bool

    def server_context(self) -> ssl.SSLContext: ...

    async def on_tls(self, session: Session) -> None: ...

    async def on_auth(self, session: Session, event: Auth | AuthResponse) -> None: ...

    async def on_mail(self, session: Session, event: MailFrom) -> Reply: ...

    async def on_rcpt(self, session: Session, event: RcptTo) -> Reply: ...

    def trace_headers(self, session: Session, headers: Message, queue_id: str) -> bytes: ...

    def drop_field(self, session: Session, field: bytes) -> bool:
        """Whether a header field of the incoming message must not be kept."""
        ...

    def wants_whole_message(self, headers: Message) -> bool:
        """Hold the message in memory (bounded) to look at all of it before storing."""
        ...

    async def whole_message(self, session: Session, data: bytes) -> bytes:
        """Headers to prepend, having seen the whole message (e.g. Authentication-Results)."""
        ...

    def unverified_note(self, session: Session) -> bytes:
        """Headers to prepend when the message was too big to be held whole."""
        ...

    async def on_message(self, session: Session, headers: Message, size: int) -> Reply | None: ...


@dataclass
class Session:
    """One connection's state, visible to its policy."""

    context: SessionContext
    policy: Policy
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: ServerConnection
    peer_ip: str
    session_id: str
    #: The client's certificate (after TLS, if it sent one).
    peer_cert: x509.Certificate | None = None
    tls_version: str | None = None
    tls_cipher: str | None = None
    #: Set by the policy: the authenticated login or the verified peer identity.
    identity: str | None = None
    mail: MailFrom | None = None
    recipients: list[RcptTo] = field(default_factory=list)
    spool: Spool | None = None
    queue_id: str | None = None
    #: Free-form facts a policy keeps between events (e.g. the SASL exchange).
    state: dict[str, object] = field(default_factory=dict)
    #: Done once the client has been silent for the idle timeout (see :meth:`_watch_idle`).
    _idle: asyncio.Future[None] | None = field(default=None, init=False, repr=False)
    _idle_watch: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _stop: asyncio.Task[Any] | None = field(default=None, init=False, repr=False)
    _waiting_since: float = field(default=0.0, init=False, repr=False)

    def reset(self) -> None:
        self.mail = None
        self.recipients = []
        if self.spool is not None:
            self.spool.abort()
        self.spool = None
        self.queue_id = None

    def log(self, message: str, level: int = logging.INFO, **fields: object) -> None:
        log.log(
            level,
            message,
            extra={"fields": {"listener": self.policy.name, "session": self.session_id, **fields}},
        )

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        self._stop = asyncio.ensure_future(self.context.stopping.wait())
        try:
            await self._run()
        finally:
            self._stop.cancel()
            if self._idle_watch is not None:
                self._idle_watch.cancel()

    async def _run(self) -> None:
        conn = self.conn
        if self.policy.implicit_tls:
            self._note_tls()
            await self.policy.on_tls(self)
        if self.context.stopping.is_set():
            conn.greeting(Reply(421, "4.3.2", f"{self.context.hostname} shutting down"))
        else:
            conn.greeting()
        await self._flush()
        while not conn.closing:
            data = await self._read()
            if data is None:
                break
            conn.receive(data)
            await self._process()
            await self._flush()
        await self._flush()
        self.reset()

    async def _read(self) -> bytes | None:
        """The next bytes; None after a 421 for idleness or shutdown.

        A node that is stopping lets a transaction in progress finish (within
        the listener's grace period) and says 421 at the next command. The
        idle timer runs on the injected clock; one watcher per session, not a
        timer per read, since a message takes several reads.
        """
        self._waiting_since = self.context.clock.monotonic()
        if self._idle is None or self._idle.done():
            self._idle = asyncio.get_running_loop().create_future()
            self._idle_watch = asyncio.ensure_future(self._watch_idle(self._idle))
        read = asyncio.ensure_future(self.reader.read(READ_SIZE))
        waiters: set[asyncio.Future[Any]] = {read, self._idle}
        stop = None if self.conn.in_transaction else self._stop
        if stop is not None:
            waiters.add(stop)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if read.done():
            return read.result() or None
        read.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError, ssl.SSLError):
            await read
        if stop is not None and stop.done():
            self.conn.shutdown()
        else:
            self.log("idle timeout", logging.INFO)
            self.conn.shutdown("Idle timeout, closing")
        return None

    async def _watch_idle(self, idle: asyncio.Future[None]) -> None:
        """Resolve ``idle`` once no read has started for the idle timeout."""
        clock, limit = self.context.clock, self.context.idle_timeout
        while (remaining := self._waiting_since + limit - clock.monotonic()) > 0:
            await clock.sleep(remaining)
        if not idle.done():
            idle.set_result(None)

    async def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out:
            self.writer.write(out)
            await self.writer.drain()

    async def _process(self) -> None:
        conn = self.conn
        while not conn.closing:
            if self.context.stopping.is_set() and not conn.in_transaction:
                conn.shutdown()  # the node is stopping: no new transaction starts
                return
            event = conn.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, DataChunk):
                self._spool_chunk(event.data)
            elif isinstance(event, DataEnd):
                conn.respond(await self._end_of_data(event))
            elif isinstance(event, MailFrom):
                reply = await self.policy.on_mail(self, event)
                if reply.code < 400:
                    self.reset()
                    self.mail = event
                conn.respond(reply)
            elif isinstance(event, RcptTo):
                reply = await self.policy.on_rcpt(self, event)
                if reply.code < 400:
                    self.recipients.append(event)
                conn.respond(reply)
            elif isinstance(event, StartTls):
                await self._starttls()
            elif isinstance(event, Auth | AuthResponse):
                await self.policy.on_auth(self, event)
            elif isinstance(event, Reset):
                self.reset()
            elif isinstance(event, ProtocolError):
                self.log("refused command", logging.DEBUG, reply=str(event.reply))

    async def _starttls(self) -> None:
        try:
            context = self.policy.server_context()
        except Exception:
            log.exception("TLS not available")
            self.conn.respond(Reply(454, "4.7.0", "TLS not available due to temporary reason"))
            return
        self.conn.respond(Reply(220, "2.0.0", "Ready to start TLS"))
        await self._flush()
        # Whatever the client pipelined after STARTTLS is plaintext: drop it.
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        try:
            await self.writer.start_tls(context)
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self.log("TLS handshake failed", logging.WARNING, reason=_tls_reason(exc))
            self.conn.closing = True
            return
        self.conn.tls_established()
        self._note_tls()
        await self.policy.on_tls(self)

    def _note_tls(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        self.conn.tls = True
        self.tls_version = ssl_object.version()
        cipher = ssl_object.cipher()
        self.tls_cipher = cipher[0] if cipher else None
        self.peer_cert = peer_certificate(ssl_object)

    # ------------------------------------------------------------------ DATA

    def _spool_chunk(self, chunk: bytes) -> None:
        if self.spool is None:
            self.spool = Spool(self.context.store)
            self.queue_id = new_queue_id(self.context.clock.now())
        spool = self.spool
        if spool.started:
            spool.feed(chunk)
        elif spool.feed(chunk) and not spool.header_too_large:
            if spool.holding:
                if len(spool.head) > HOLD_LIMIT:  # too big to verify whole: stream on
                    self._start_blob(spool, self.policy.unverified_note(self))
            elif self.policy.wants_whole_message(spool.headers()):
                spool.holding = True  # e.g. a DKIM signature to check once all is here
            else:
                self._start_blob(spool)

    def _start_blob(self, spool: Spool, extra: bytes = b"") -> None:
        queue_id = self.queue_id
        assert queue_id is not None
        spool.start(
            lambda headers: extra + self.policy.trace_headers(self, headers, queue_id),
            lambda field: self.policy.drop_field(self, field),
        )

    async def _end_of_data(self, event: DataEnd) -> Reply:
        try:
            return await self._accept(event)
        finally:
            self.reset()

    async def _accept(self, event: DataEnd) -> Reply:
        if event.bare_newline:
            self.log("message refused: bare CR or LF", logging.WARNING)
            return Reply(
                550,
                "5.6.0",
                "Message refused: it contains a bare CR or LF (lines must end with CRLF)",
            )
        if event.too_big:
            return Reply(
                552,
                "5.3.4",
                f"Message size exceeds the limit of {self.conn.limits.max_message_size} bytes",
            )
        spool = self.spool
        if spool is None:  # an empty message
            self._spool_chunk(b"")
            spool = self.spool
        assert spool is not None and self.queue_id is not None and self.mail is not None
        if spool.header_too_large:
            return Reply(552, "5.3.4", "The header block is too large")
        if not spool.started:
            extra = b""
            if spool.holding:
                extra = await self.policy.whole_message(self, bytes(spool.head))
            self._start_blob(spool, extra)
        assert spool.parsed is not None
        refusal = await self.policy.on_message(self, spool.parsed, event.size)
        if refusal is not None:
            return refusal
        envelope = Envelope(
            sender=self.mail.address,
            recipients=tuple(NewRecipient(r.address, r.notify, r.orcpt) for r in self.recipients),
            origin=self.policy.name,
            client=self.identity or self.peer_ip,
            envid=self.mail.envid,
            ret=self.mail.ret,
            body=self.mail.body,
            smtputf8=self.mail.smtputf8,
            received_sha256=spool.digest.hexdigest(),
            received_size=event.size,
        )
        try:
            queue_id = await self.context.committer.commit(
                spool, envelope, now=self.context.clock.now(), queue_id=self.queue_id
            )
        except Exception:
            log.exception(
                "message not accepted: store or database failure",
                extra={"fields": {"listener": self.policy.name, "session": self.session_id}},
            )
            return Reply(451, "4.3.0", "Temporary failure storing the message, try again")
        self.log(
            "queued",
            queue_id=queue_id,
            size=event.size,
            sender=pseudonym(envelope.sender) if envelope.sender else "<>",
            recipients=len(envelope.recipients),
        )
        self.context.metrics.counter(
            "mssante_smtp_messages_accepted_total", "Messages accepted (250), per listener."
        ).inc(listener=self.policy.name)
        return Reply(250, "2.0.0", f"OK queued as {queue_id}")

    def received_header(self, queue_id: str, *, with_auth: bool) -> bytes:
        """RFC 5321 §4.4 trace line (no recipient: it could name a patient)."""
        protocol = "ESMTP"
        if self.conn.tls:
            protocol += "S"
        if with_auth and self.identity:
            protocol += "A"
        tls = (
            f"\r\n\t(using {self.tls_version} with cipher {self.tls_cipher})"
            if self.tls_version
            else ""
        )
        helo = (self.conn.helo_name or "unknown").replace("\r", "").replace("\n", "")[:255]
        now = format_datetime(self.context.clock.now())
        return (
            f"Received: from {helo} ([{self.peer_ip}])\r\n"
            f"\tby {self.context.hostname} (MSSanté operator)"
            f" with {protocol} id {queue_id}{tls};\r\n"
            f"\t{now}\r\n"
        ).encode("utf-8", "replace")


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate rejected: {exc.verify_message}"
    return str(getattr(exc, "reason", None) or exc)
