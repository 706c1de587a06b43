"""An SMTP load generator: N concurrent sessions, each sending M messages, timed per message.

Postfix's ``smtp-source`` speaks no STARTTLS and no AUTH, and our servers
accept neither plaintext MX nor unauthenticated submission, so the bench
drives both servers with this one client: asyncio streams, no pipelining,
one transaction after the other in each session. Latency is from the end of
the data (the final ``.``) to the server's 250: the time a sender waits for
the durability promise. The rate counts from the moment every session is set
up (connected, STARTTLS and AUTH done) to the last 250: session setup is not
the acceptance path, and AUTH (Argon2 by design) would otherwise dominate
short runs with many sessions. Bounded: ``messages`` per session and ``deadline``
seconds per run, whichever comes first.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import statistics
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class SmtpError(Exception):
    pass


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    sender: str
    recipient: str
    starttls: ssl.SSLContext | None = None
    login: tuple[str, str] | None = None  # AUTH PLAIN after STARTTLS


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    deadline: float = float("inf")  # time.monotonic() after which sessions stop sending

    def figures(self, prefix: str = "") -> dict[str, float]:
        done = len(self.latencies)
        if not done:
            return {f"{prefix}msgs/s": 0.0}
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return {
            f"{prefix}msgs/s": done / self.seconds,
            f"{prefix}p50 ms": statistics.median(ordered) * 1000,
            f"{prefix}p99 ms": p99 * 1000,
        }


def message(size: int, n: int, sender: str, recipient: str) -> bytes:
    """A plain message of about ``size`` bytes (CRLF, no line starting with a dot)."""
    head = (
        f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: bench {n}\r\n"
        f"Message-ID: <bench.{n}.{time.monotonic_ns()}@bench.invalid>\r\n\r\n"
    ).encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.\r\n"
    body = line * max(1, (size - len(head)) // len(line))
    return head + body


async def _reply(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), b"".join(lines)


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes, expect: int
) -> None:
    writer.write(line + b"\r\n")
    code, text = await _reply(reader)
    if code != expect:
        raise SmtpError(f"{line[:20]!r}: {text[:120]!r}")


@dataclass
class Client:
    """One SMTP session, set up."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def send(self, target: Target, data: bytes) -> float:
        """One transaction (``data`` dot-stuffed, CRLF); seconds from its end to the 250."""
        await _command(self.reader, self.writer, f"MAIL FROM:<{target.sender}>".encode(), 250)
        await _command(self.reader, self.writer, f"RCPT TO:<{target.recipient}>".encode(), 250)
        await _command(self.reader, self.writer, b"DATA", 354)
        self.writer.write(data)
        started = time.perf_counter()
        await _command(self.reader, self.writer, b".", 250)
        return time.perf_counter() - started


@contextlib.asynccontextmanager
async def session(target: Target) -> AsyncIterator[Client]:
    """Greeting, EHLO, STARTTLS and AUTH PLAIN as ``target`` says; QUIT at the end."""
    reader, writer = await asyncio.open_connection(target.host, target.port, limit=1 << 20)
    try:
        code, text = await _reply(reader)
        if code != 220:
            raise SmtpError(f"greeting {text[:120]!r}")
        await _command(reader, writer, b"EHLO bench.invalid", 250)
        if target.starttls is not None:
            await _command(reader, writer, b"STARTTLS", 220)
            await writer.start_tls(target.starttls)
            await _command(reader, writer, b"EHLO bench.invalid", 250)
        if target.login is not None:
            user, password = target.login
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            await _command(reader, writer, f"AUTH PLAIN {token}".encode(), 235)
        yield Client(reader, writer)
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def _session(
    target: Target, data: bytes, count: int, run: Run, ready: asyncio.Barrier
) -> None:
    async with session(target) as client:
        await ready.wait()  # every session set up: the clock starts
        for _ in range(count):
            if time.monotonic() > run.deadline:
                break
            run.latencies.append(await client.send(target, data))


async def _run(target: Target, sessions: int, per_session: int, size: int, limit: float) -> Run:
    run = Run()
    data = message(size, 0, target.sender, target.recipient)
    ready = asyncio.Barrier(sessions + 1)

    async def one() -> None:
        try:
            await _session(target, data, per_session, run, ready)
        except (
            OSError,
            SmtpError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            asyncio.BrokenBarrierError,
        ) as exc:
            run.errors.append(str(exc)[:200])
            await ready.abort()

    tasks = [asyncio.ensure_future(one()) for _ in range(sessions)]
    with contextlib.suppress(asyncio.BrokenBarrierError):
        await ready.wait()
    started = time.perf_counter()
    run.deadline = time.monotonic() + limit
    await asyncio.gather(*tasks)
    run.seconds = time.perf_counter() - started
    return run


def load(target: Target, *, sessions: int, per_session: int, size: int, limit: float) -> Run:
    """Run the load to completion (or ``limit`` seconds) and return what it measured."""
    return asyncio.run(_run(target, sessions, per_session, size, limit))
