""" "Mailbox N changed": how an IDLE session learns of a delivery, a flag or an expunge at once.

In one process the writer publishes after its commit and every waiter on that
mailbox wakes. Across nodes (PostgreSQL) :func:`mssante.index.announce` adds a
``NOTIFY`` to the writer's transaction, delivered only if it commits, and
:class:`PgListener` forwards what other nodes announce to the local hub. A
wake-up only says "look again": the waiter re-reads the index, so a duplicate
or a spurious one costs a query, never a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger("mssante.mailbox_events")

CHANNEL = "mssante_mailbox"


class MailboxEvents:
    """The per-process hub; :meth:`publish` may be called from any thread."""

    def __init__(self) -> None:
        self._waiters: dict[int, set[asyncio.Event]] = defaultdict(set)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def watch(self, mailbox_id: int) -> asyncio.Event:
        """An event set at the next change of the mailbox; :meth:`unwatch` it when done."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        event = asyncio.Event()
        with self._lock:
            self._waiters[mailbox_id].add(event)
        return event

    def unwatch(self, mailbox_id: int, event: asyncio.Event) -> None:
        with self._lock:
            waiters = self._waiters.get(mailbox_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[mailbox_id]

    def publish(self, mailbox_id: int) -> None:
        with self._lock:
            events = list(self._waiters.get(mailbox_id, ()))
        if not events or self._loop is None:
            return
        for event in events:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is self._loop:
                event.set()
            else:
                with contextlib.suppress(RuntimeError):  # the loop closed under us
                    self._loop.call_soon_threadsafe(event.set)


class PgListener:
    """Forwards other nodes' ``NOTIFY mssante_mailbox, '<id>'`` to the local hub."""

    name = "mailbox-events"

    def __init__(self, url: str, events: MailboxEvents) -> None:
        """``url``: the node's SQLAlchemy URL, password included."""
        self._conninfo = (
            make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        )
        self._events = events
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return "mailbox-events (PostgreSQL LISTEN)"

    async def start(self) -> None:
        self._events.bind(asyncio.get_running_loop())
        connected = asyncio.Event()
        self._task = asyncio.create_task(self._run(connected))
        await asyncio.wait_for(connected.wait(), timeout=30)

    async def _run(self, connected: asyncio.Event) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    connected.set()
                    async for notice in conn.notifies():
                        with contextlib.suppress(ValueError):
                            self._events.publish(int(notice.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: retry, idle sessions still poll
                log.warning("mailbox events connection lost", extra={"fields": {"error": str(exc)}})
                connected.set()
                await asyncio.sleep(5)

    async def stop(self, grace: float) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
