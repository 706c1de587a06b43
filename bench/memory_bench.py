"""Server memory per idle IMAP connection in IDLE over TLS, ours against Dovecot.

    .venv/bin/python bench/memory_bench.py [--connections 1000] [--rounds 3]

Each round opens ``--connections`` connections to the server's implicit-TLS
port (993-style), each doing LOGIN, SELECT INBOX and IDLE, then reads the
server's proportional set size (PSS, ``/proc/PID/smaps_rollup``: shared
libraries counted once across Dovecot's processes) and closes them all. The
figure is (PSS with the connections − PSS before) / connections, in KiB:
what one more idle client costs. Ours is one ``mssante serve`` process,
started afresh for each round;
Dovecot is every process of its instance (master, login processes, one
``imap`` process per connection, auth…). Logins are made 10 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

from benchlib import Server, client_context, mssante, run_dir
from compare import Figures, alternate, machine, markdown, summarise, write_section
from refservers import DovecotInstance, demo_cert, ensure_installed, free_port

USER = "bench@a.test"
PASSWORD = "bench password 0123456789"
LOGIN_BATCH = 10
FIGURE = "IMAP IDLE over TLS, per connection"


def pss_kib(pids: Iterable[int]) -> int:
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


async def _expect(reader: asyncio.StreamReader, prefix: bytes) -> None:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed by the server")
        if line.startswith(prefix):
            return
        if line.startswith(prefix.split(b" ")[0] + b" ") and not line.startswith(prefix):
            raise ConnectionError(line[:100].decode(errors="replace"))


async def _idle_client(port: int, context: ssl.SSLContext) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    await _expect(reader, b"* OK")
    writer.write(f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode())
    await _expect(reader, b"a OK")
    writer.write(b"b SELECT INBOX\r\n")
    await _expect(reader, b"b OK")
    writer.write(b"c IDLE\r\n")
    await _expect(reader, b"+")
    return writer


Opener = Callable[[int, ssl.SSLContext], Awaitable[asyncio.StreamWriter]]


async def measure(
    port: int, count: int, pids: Callable[[], list[int]], open_one: Opener, batch: int
) -> tuple[float, float]:
    """Open ``count`` idle connections, ``batch`` at a time, with ``open_one``; return
    (KiB of server PSS per connection, the server's PSS in MiB with them all open)."""
    context = client_context()
    before = pss_kib(pids())
    writers: list[asyncio.StreamWriter] = []
    try:
        for start in range(0, count, batch):
            n = min(batch, count - start)
            writers += await asyncio.gather(*(open_one(port, context) for _ in range(n)))
        await asyncio.sleep(1.0)  # let the server settle (a bench, not a test)
        after = pss_kib(pids())
    finally:
        for writer in writers:
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True), 30
            )
    return (after - before) / count, after / 1024


_IMAP = (_idle_client, LOGIN_BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ensure_installed()
    work = run_dir("memory")
    cert, key = demo_cert(work)
    data = work / "ours"
    mssante("init", "--demo", "--data-dir", str(data), "--domain", "a.test")
    pw = work / "pw"
    pw.write_text(PASSWORD)
    mssante("bal", "add", USER, "--type", "PER", "--rpps", "10000000017",
            "--password-file", str(pw), "--data-dir", str(data))  # fmt: skip
    from mssante import config as cfg

    imaps = cfg.load(data).listeners.imaps.port
    limit = args.connections + 50
    dovecot_conf = (
        f"default_process_limit = {limit}\ndefault_client_limit = {limit * 2}\n"
        f"mail_max_userip_connections = {limit}\n"
        f"service imap {{\n  process_limit = {limit}\n}}\n"
    )
    with DovecotInstance(
        free_port(), free_port(), cert, key, {USER: PASSWORD}, parent=work, extra_conf=dovecot_conf
    ) as dovecot:

        def ours() -> Figures:
            # A fresh process each round: memory freed by the last round's connections
            # stays in the allocator and would be reused for free.
            server = Server(data)
            try:
                server.wait_ready()
                pid = server.process.pid
                kib, _ = asyncio.run(measure(imaps, args.connections, lambda: [pid], *_IMAP))
            finally:
                server.stop()
            return {FIGURE: kib}

        def theirs() -> Figures:
            # Dovecot's per-connection processes end with their connections.
            return {
                FIGURE: asyncio.run(
                    measure(dovecot.port_imaps, args.connections, dovecot.pids, *_IMAP)
                )[0]
            }

        mine, reference = alternate(args.rounds, ours, theirs)
    rows = summarise(mine, reference, {FIGURE: "KiB (PSS)"})
    table = markdown(rows, "Dovecot")
    print(table)
    command = "bench/memory_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(
        "Memory per idle connection",
        f"{machine()}; {datetime.now(UTC):%Y-%m-%d}; `{command.strip()}`, "
        f"{args.connections} connections, {args.rounds} alternating rounds.\n\n"
        "Each connection: implicit TLS, LOGIN, SELECT INBOX, IDLE. PSS growth of the "
        "server (ours: one process; Dovecot: every process of its instance) divided by "
        "the number of connections.\n\n" + table,
    )


if __name__ == "__main__":
    main()
