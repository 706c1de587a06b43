# covers: TS-3
"""SMTP listeners in-process with an injected clock: idle timeout and graceful shutdown."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mssante import config as cfg
from mssante.app import Runtime
from mssante.clock import FakeClock
from mssante.listener import TcpListener
from smtp.service import smtp_services

from nodes import free_port_offset, mssante, rpps
from operators import PASSWORD


@dataclass
class Harness:
    runtime: Runtime
    clock: FakeClock
    ports: dict[str, int]
    ca_file: Path


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    data = tmp_path / "node"
    offset = str(free_port_offset())
    assert (
        mssante("init", "--demo", "--data-dir", str(data), "--port-offset", offset).returncode == 0
    )
    (tmp_path / "pw").write_text(PASSWORD)
    added = mssante(
        "bal", "add", "alice@demo.mssante.test", "--type", "PER", "--rpps", rpps(1),
        "--password-file", str(tmp_path / "pw"), "--data-dir", str(data),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    with (data / cfg.CONFIG_NAME).open("a") as fh:
        fh.write("\n[smtp]\nidle_timeout_seconds = 300\n")
    clock = FakeClock(current=datetime.now(UTC))
    runtime = Runtime.open(cfg.load(data), clock=clock)
    listeners = [s for s in smtp_services(runtime) if isinstance(s, TcpListener)]
    for listener in listeners:
        await listener.start()
    try:
        yield Harness(
            runtime,
            clock,
            {listener.name: listener.bound_port for listener in listeners},
            data / "pki" / "ca" / "root.pem",
        )
    finally:
        for listener in listeners:
            await listener.stop(5)
        runtime.db.dispose()


async def _reply(reader: asyncio.StreamReader) -> bytes:
    lines = b""
    while True:
        line = await asyncio.wait_for(reader.readline(), 30)
        lines += line
        if line[3:4] != b"-":
            return lines


async def test_idle_client_gets_421_when_the_clock_passes_the_timeout(harness: Harness) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", harness.ports["mx"])
    assert (await _reply(reader)).startswith(b"220 ")
    writer.write(b"EHLO client\r\n")
    await _reply(reader)
    for _ in range(2):
        await harness.clock.sleeping()
        harness.clock.advance(299)
        writer.write(b"NOOP\r\n")  # activity restarts the timer
        assert (await _reply(reader)).startswith(b"250")
    await harness.clock.sleeping()
    harness.clock.advance(301)
    reply = await _reply(reader)
    assert reply.startswith(b"421 4.3.2 ") and b"Idle timeout" in reply
    assert await reader.read() == b""  # and the connection is closed
    writer.close()


async def test_stopping_says_421_to_idle_sessions_but_lets_a_transaction_finish(
    harness: Harness,
) -> None:
    ctx = ssl.create_default_context(cafile=str(harness.ca_file))
    ctx.check_hostname = False
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", harness.ports["mx"])
    await _reply(idle_reader)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", harness.ports["submissions"], ssl=ctx
    )
    await _reply(reader)
    plain = base64.b64encode(f"\0alice@demo.mssante.test\0{PASSWORD}".encode()).decode()
    for command in (
        "EHLO client",
        f"AUTH PLAIN {plain}",
        "MAIL FROM:<alice@demo.mssante.test>",
        "RCPT TO:<alice@demo.mssante.test>",
        "DATA",
    ):
        writer.write(command.encode() + b"\r\n")
        assert (await _reply(reader))[:1] in b"23", command
    writer.write(b"From: <alice@demo.mssante.test>\r\nSubject: pendant l'arret\r\n\r\n")
    await writer.drain()
    harness.runtime.stopping.set()
    assert (await _reply(idle_reader)).startswith(b"421 4.3.2")  # idle: told at once
    writer.write(b"fin du message\r\n.\r\nNOOP\r\n")
    assert (await _reply(reader)).startswith(b"250 2.0.0 OK queued as")
    assert (await _reply(reader)).startswith(b"421 4.3.2")  # then goodbye
    writer.close()
    idle_writer.close()
