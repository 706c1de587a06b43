"""The asyncio side of an IMAP connection: it only moves bytes.

Bytes from the socket go into the :class:`~imap.grammar.CommandParser`; each
event it returns is answered here (``+`` for a synchronising literal, or
``NO [TOOBIG]``; ``BAD`` for a syntax error) or handed to
:meth:`imap.session.Session.execute`. Every read runs under the idle timer of
the injected clock (RFC 9051 §5.4: at least 30 minutes once logged in), and a
node that is stopping says ``BYE`` between commands.

One read is in flight at a time and survives a wake-up: IDLE waits on "a line
or a mailbox change" without ever dropping bytes the client already sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from cryptography import x509

from certs.tls import peer_certificate
from imap.grammar import (
    Command,
    CommandParser,
    Limits,
    NeedContinuation,
    NeedData,
    ParseError,
    Tagged,
    serialize,
)
from imap.session import Session, SessionContext

__all__ = ["Connection", "serve_connection"]

log = logging.getLogger("mssante.imap")

READ_SIZE = 64 * 1024
#: Syntax errors in a row before the server gives up on the client.
MAX_ERRORS = 20
#: A client that has not logged in gets this long between commands.
UNAUTHENTICATED_TIMEOUT = 120.0


class Connection:
    """Implements :class:`imap.session.Io` over an asyncio stream pair."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        context: SessionContext,
        *,
        tls_context: Callable[[], ssl.SSLContext],
        limits: Limits,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.context = context
        self.parser = CommandParser(limits)
        self._limits = limits
        self._tls_context = tls_context
        self._pending: asyncio.Future[bytes] | None = None
        self.timeout = UNAUTHENTICATED_TIMEOUT
        peer = writer.get_extra_info("peername")
        self.peer_ip = str(peer[0]) if peer else "unknown"
        self.tls = False
        self.peer_cert: x509.Certificate | None = None
        self._note_tls()

    def _note_tls(self) -> None:
        ssl_object = self.writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.tls = True
            self.peer_cert = peer_certificate(ssl_object)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def drain(self) -> None:
        await self.writer.drain()

    async def _wait(self, *extra: Awaitable[Any], timeout: float) -> bytes | bool | None:
        """The next bytes (b"" at EOF), True if an ``extra`` finished, False on timeout."""
        if self._pending is None:
            self._pending = asyncio.ensure_future(self.reader.read(READ_SIZE))
        timer = asyncio.ensure_future(self.context.clock.sleep(timeout))
        others = [asyncio.ensure_future(e) for e in extra]
        waiters: set[asyncio.Future[Any]] = {self._pending, timer, *others}
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (timer, *others):
                waiter.cancel()
        if self._pending in done:
            read, self._pending = self._pending, None
            try:
                return read.result()
            except (ConnectionError, ssl.SSLError):
                return b""
        return bool(set(others) & done)

    async def fill(self) -> bool:
        """Feed the parser more bytes; False at EOF, idle timeout or shutdown."""
        got = await self._wait(self.context.stopping.wait(), timeout=self.timeout)
        if isinstance(got, bytes) and got:
            self.parser.feed(got)
            return True
        return False

    async def read_line(self) -> bytes | None:
        """A raw line (AUTHENTICATE); None at EOF, idle timeout or shutdown."""
        got = await self.wait_line_or(asyncio.Event(), self.timeout)
        return got if isinstance(got, bytes) else None

    async def wait_line_or(self, event: asyncio.Event, timeout: float) -> bytes | bool | None:
        while True:
            line = self.parser.read_raw_line()
            if isinstance(line, bytes):
                return line
            if isinstance(line, ParseError):
                return b""
            got = await self._wait(event.wait(), self.context.stopping.wait(), timeout=timeout)
            if isinstance(got, bool):
                return got
            if not got:
                return None
            self.parser.feed(got)

    async def start_tls(self) -> bool:
        try:
            context = self._tls_context()
        except Exception:
            log.exception("TLS not available")
            return False
        if self._pending is not None:
            # STARTTLS answered while a read waits: cancel it; nothing the
            # client sent before the handshake may be used (RFC 3501 §6.2.1).
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                await self._pending
            self._pending = None
        self.reader._buffer.clear()  # type: ignore[attr-defined]
        self.parser = CommandParser(self._limits)
        try:
            await self.writer.start_tls(context)
        except (ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("TLS handshake failed", extra={"fields": {"reason": str(exc)[:200]}})
            return False
        self._note_tls()
        return True

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                await self._pending
        self.parser.close()


async def serve_connection(conn: Connection, session: Session) -> None:
    """Greeting, then commands until LOGOUT, EOF, a timeout or shutdown."""
    conn.write(session.greeting())
    await conn.drain()
    errors = 0
    try:
        while not session.closing:
            if session.state != "not-authenticated":
                conn.timeout = session.context.idle_timeout
            event = conn.parser.next()
            if isinstance(event, NeedData):
                if not await conn.fill():
                    if session.context.stopping.is_set():
                        conn.write(b"* BYE Server shutting down\r\n")
                    elif not conn.reader.at_eof():
                        conn.write(b"* BYE Autologout; idle for too long\r\n")
                    break
                continue
            if isinstance(event, NeedContinuation):
                if event.size > session.context.append_limit:
                    tag = event.tag or "*"
                    conn.parser.reject_literal()
                    conn.write(serialize(Tagged(tag, "NO", "TOOBIG", "Literal too big")))
                else:
                    conn.parser.accept_literal()
                    conn.write(b"+ Ready for literal data\r\n")
                await conn.drain()
                continue
            if isinstance(event, ParseError):
                errors += 1
                # A literal over the limit is a refusal, not a syntax error (RFC 7889).
                status: Literal["NO", "BAD"] = "NO" if event.code == "TOOBIG" else "BAD"
                conn.write(serialize(Tagged(event.tag or "*", status, event.code, event.text)))
                if errors >= MAX_ERRORS:
                    conn.write(b"* BYE Too many invalid commands\r\n")
                    break
                await conn.drain()
                continue
            assert isinstance(event, Command)
            errors = 0
            await session.execute(event)
            await conn.drain()
            if session.context.stopping.is_set() and not session.closing:
                conn.write(b"* BYE Server shutting down\r\n")
                break
        await conn.drain()
    finally:
        await conn.close()
