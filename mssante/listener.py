"""A TCP (optionally TLS) listener that owns its connections.

Every connection task is tracked, so shutdown can stop accepting, give
in-flight sessions a grace period, then cancel what is left: no task is
orphaned and nothing is cut before its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable

from mssante.metrics import Metrics

ConnectionHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

log = logging.getLogger("mssante.listener")

#: asyncio gives every TLS connection (implicit or STARTTLS) a receive buffer of
#: ``SSLProtocol.max_size``, 256 KiB, allocated when the connection starts: a
#: thousand idle IMAP clients held 250 MiB in it alone. A TLS record is at most
#: 16 KiB plus its overhead, so reading ciphertext in 16 KiB steps costs a few
#: more reads on a large upload and saves 240 KiB per connection.
TLS_READ_BUFFER = 16 * 1024


def shrink_tls_buffers() -> None:
    """Cap asyncio's per-connection TLS buffer (process-wide; idempotent)."""
    protocol = getattr(getattr(asyncio, "sslproto", None), "SSLProtocol", None)
    if protocol is not None and getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:
        protocol.max_size = TLS_READ_BUFFER


class TcpListener:
    """One bound socket and the sessions it accepted."""

    def __init__(
        self,
        name: str,
        host: str,
        port: int,
        handler: ConnectionHandler,
        *,
        metrics: Metrics,
        ssl_context: ssl.SSLContext | None = None,
        tls_handshake_timeout: float = 30.0,
        stream_limit: int = 64 * 1024,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self._handler = handler
        self._ssl = ssl_context
        self._handshake_timeout = tls_handshake_timeout
        self._limit = stream_limit
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.Task[None]] = set()
        self._connections = metrics.gauge(
            "mssante_connections_open", "Connections currently open, per listener."
        )
        self._accepted = metrics.counter(
            "mssante_connections_total", "Connections accepted, per listener."
        )
        self._errors = metrics.counter(
            "mssante_connection_errors_total", "Sessions that ended on an unexpected error."
        )

    @property
    def bound_port(self) -> int:
        """The port actually bound (differs from ``port`` when it was 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    def describe(self) -> str:
        return f"{self.name} {self.host}:{self.bound_port}{' (TLS)' if self._ssl else ''}"

    async def start(self) -> None:
        shrink_tls_buffers()  # STARTTLS sessions too: they upgrade through the same class
        self._server = await asyncio.start_server(
            self._accept,
            self.host,
            self.port,
            ssl=self._ssl,
            ssl_handshake_timeout=self._handshake_timeout if self._ssl else None,
            reuse_address=True,
            limit=self._limit,
        )

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self._accepted.inc(listener=self.name)
        self._connections.inc(listener=self.name)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # the peer went away: nothing to report
        except asyncio.CancelledError:
            raise
        except Exception:
            self._errors.inc(listener=self.name)
            log.exception("session failed", extra={"fields": {"listener": self.name}})
        finally:
            self._connections.inc(-1, listener=self.name)
            self._sessions.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def stop(self, grace: float) -> None:
        """Stop accepting, let sessions finish within ``grace`` seconds, cancel the rest."""
        if self._server is None:
            return
        self._server.close()
        pending = set(self._sessions)
        if pending:
            _, still = await asyncio.wait(pending, timeout=grace)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=5)
                log.warning(
                    "sessions cancelled at the end of the grace period",
                    extra={"fields": {"listener": self.name, "count": len(still)}},
                )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)
