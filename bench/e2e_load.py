"""Submit a batch of messages and time how long until they have all arrived somewhere.

The relay and bridge benchmarks share this driver: ``sessions`` SMTP
sessions (STARTTLS, AUTH PLAIN when given) are set up first; then the clock
starts, they submit the given messages one transaction after the other, and
meanwhile named counters (a mailbox's message count over IMAP, a /metrics
counter, files in a Maildir…) are polled every ``poll`` seconds until each
has grown by the number of messages accepted. :class:`Timing` gives, per
counter, the seconds from the first submission to the poll that saw it
complete, and the submission time alone. Bounded: after ``limit`` seconds
the sessions stop sending and the polling stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from benchlib import client_context
from smtp_load import SmtpError, Target, session

Counter = Callable[[], Awaitable[int]]


# --------------------------------------------------------------------------- observers


class Imap:
    """A minimal asyncio IMAP client over implicit TLS: enough to count and empty a mailbox."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._tag = 0

    @classmethod
    async def login(cls, port: int, user: str, password: str) -> Imap:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_context(), limit=1 << 20
        )
        imap = cls(reader, writer)
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            raise ConnectionError(f"IMAP greeting {greeting[:80]!r}")
        await imap.command(f'LOGIN "{user}" "{password}"')
        return imap

    async def command(self, line: str) -> list[bytes]:
        """Send one command; its untagged lines (OK expected)."""
        self._tag += 1
        tag = f"t{self._tag}".encode()
        self.writer.write(tag + b" " + line.encode() + b"\r\n")
        untagged = []
        while True:
            got = await self.reader.readline()
            if not got:
                raise ConnectionError("IMAP connection closed")
            if got.startswith(tag + b" "):
                if not got.startswith(tag + b" OK"):
                    raise ConnectionError(f"IMAP {line.split()[0]}: {got[:120]!r}")
                return untagged
            untagged.append(got)

    async def messages(self) -> int:
        """``STATUS INBOX (MESSAGES)``."""
        for got in await self.command("STATUS INBOX (MESSAGES)"):
            if got.startswith(b"* STATUS"):
                return int(got.rpartition(b"MESSAGES ")[2].split(b")")[0])
        raise ConnectionError("no STATUS answer")

    async def empty(self) -> None:
        """Expunge every message of INBOX."""
        exists = 0
        for got in await self.command("SELECT INBOX"):
            if got.rstrip().endswith(b"EXISTS"):
                exists = int(got.split()[1])
        if exists:
            await self.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")
        await self.command("CLOSE")  # expunges silently

    async def close(self) -> None:
        with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
            await self.command("LOGOUT")
        self.writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self.writer.wait_closed()


async def metric(port: int, name: str, labels: str = "") -> int:
    """One sample of the node's plain-HTTP ``/metrics`` (0 while the series is absent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        body = (await reader.read()).partition(b"\r\n\r\n")[2].decode()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    series = re.escape(name + (f"{{{labels}}}" if labels else ""))
    found = re.search(rf"^{series} (\S+)$", body, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


# --------------------------------------------------------------------------- the driver


@dataclass
class Timing:
    accepted: int = 0
    submit_seconds: float = 0.0
    done: dict[str, float] = field(default_factory=dict)  # counter -> seconds to complete
    counts: dict[str, int] = field(default_factory=dict)  # counter -> growth seen last
    errors: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.done) == len(self.counts)


async def _session(
    target: Target,
    messages: list[bytes],
    ready: asyncio.Barrier,
    accepted: list[float],
    deadline: list[float],
) -> None:
    async with session(target) as client:
        await ready.wait()  # every session set up: the clock starts
        for data in messages:
            if time.monotonic() > deadline[0]:
                break
            await client.send(target, data)
            accepted.append(time.perf_counter())


async def drive(
    target: Target,
    messages: list[bytes],
    counters: Mapping[str, Counter],
    *,
    sessions: int,
    limit: float,
    poll: float = 0.05,
    on_start: Callable[[], object] | None = None,
) -> Timing:
    """Submit ``messages`` (dot-stuffed, CRLF) over ``sessions``; poll ``counters`` until each
    has grown by the number accepted, or ``limit`` seconds have passed. ``on_start`` is
    called when the clock starts (every session set up, nothing sent yet)."""
    sessions = max(1, min(sessions, len(messages)))
    ready = asyncio.Barrier(sessions + 1)
    accepted: list[float] = []
    timing = Timing()
    deadline = [float("inf")]

    async def one(share: list[bytes]) -> None:
        try:
            await _session(target, share, ready, accepted, deadline)
        except (OSError, SmtpError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            timing.errors.append(f"{type(exc).__name__}: {exc}"[:200])
            await ready.abort()
        except asyncio.BrokenBarrierError:
            timing.errors.append("another session failed during setup")

    baseline = {name: await counter() for name, counter in counters.items()}
    tasks = [asyncio.ensure_future(one(messages[k::sessions])) for k in range(sessions)]
    with contextlib.suppress(asyncio.BrokenBarrierError):
        await ready.wait()
    if on_start is not None:
        on_start()
    started = time.perf_counter()
    deadline[0] = time.monotonic() + limit
    submitting = asyncio.gather(*tasks)
    timing.counts = dict.fromkeys(counters, 0)
    while time.monotonic() < deadline[0]:
        for name, counter in counters.items():
            if name in timing.done:
                continue
            timing.counts[name] = await counter() - baseline[name]
            if submitting.done() and timing.counts[name] >= len(accepted):
                timing.done[name] = time.perf_counter() - started
        if timing.complete:
            break
        await asyncio.sleep(poll)
    await submitting
    timing.accepted = len(accepted)
    timing.submit_seconds = (max(accepted) - started) if accepted else 0.0
    return timing
