"""Relay end to end between two nodes: ours over mutual TLS against Postfix → Postfix with TLS.

    .venv/bin/python bench/relay_bench.py [--rounds 3] [--messages 2000] [--sessions 20]
        [--size 5] [--limit 300] [--queue-parallel N]

Two operators on 127.0.0.1, A (``a.test``) and B (``b.test``). The load
submits ``--messages`` distinct messages of ``--size`` KB from
``alice@a.test`` to ``bob@b.test`` over ``--sessions`` concurrent sessions to
A; A relays each to B, which delivers it into bob's mailbox. The figure is
messages/s from the first submission to the moment the last one is in the
mailbox, and that time itself; beside it, the rate at which the submissions
were accepted, and the servers' CPU time (user + system, from /proc, reaped
children included) per 1,000 messages, for A and B:

* ours: two ``mssante serve`` processes (separate data directories, one
  demo CA of our own PKI, each whitelisting the other and reaching its MX
  through the transport map: ``tests/smtp/operators.py``'s ``setup_pair``).
  The load submits to A's submission port (STARTTLS, AUTH PLAIN); A's queue
  runner relays over mutual TLS to B's MX (chain, CRL and whitelist checks);
  B's runner delivers into bob's INBOX. Delivery is watched from outside,
  as a client would: ``STATUS INBOX (MESSAGES)`` over IMAPS as bob.
* Postfix: two private instances (``bench/refservers.py``, ``park="deliver"``).
  The load submits to A's smtpd (STARTTLS, no AUTH: it relays for
  127.0.0.0/8); A relays ``b.test`` to B with ``smtp_tls_security_level =
  encrypt``, presenting its certificate, which B asks for; B delivers to a
  virtual Maildir, whose files are counted.

Sessions are set up (connect, STARTTLS, AUTH) before the clock starts;
delivery is polled every ``--poll`` seconds (50 ms). Every round is bounded
by ``--limit`` seconds; the mailboxes are emptied (and any leftover queue
flushed) between rounds, and the contenders alternate (ours, Postfix, ours,
…). Both sides keep their default delivery concurrency (ours: ``queue.parallel
= 8``, or ``--queue-parallel``; Postfix: up to 20 smtp(8) processes per
destination) and neither reuses connections between deliveries (Postfix does
not cache TLS connections by default), so each relayed message costs a TLS
handshake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mssante import config as cfg

from benchlib import Server, cpu_seconds, empty_queue, run_dir, use_test_helpers
from compare import Figures, alternate, machine, markdown, summarise, write_section
from e2e_load import Counter, Imap, client_context, drive
from refservers import free_port
from smtp_load import Target, message

SENDER = "alice@a.test"
RECIPIENT = "bob@b.test"
FIG_RATE = "messages/s, first submission to last delivery"
FIG_SECONDS = "seconds for all messages"
FIG_SUBMIT = "submission alone, messages/s"
FIG_CPU = "server CPU per 1,000 messages, A + B"
FIG_CPU_A = "of which A (submission, relay out)"
FIG_CPU_B = "of which B (relay in, local delivery)"


def _setup_pair(work: Path):  # type: ignore[no-untyped-def]
    """tests/smtp/operators.py's two nodes (shared CA, whitelists, transports, BALs)."""
    use_test_helpers("smtp")
    from operators import PASSWORD, setup_pair

    return setup_pair(work), PASSWORD


async def _round(
    target: Target,
    counter: Counter,
    pids: Callable[[], tuple[list[int], list[int]]],
    args: argparse.Namespace,
) -> Figures:
    """One timed round: ``--messages`` distinct messages, ``counter`` counting deliveries,
    ``pids`` the processes of A and of B (for their CPU time)."""
    tag = time.monotonic_ns()
    size = args.size * 1024
    data = [message(size, tag + n, target.sender, target.recipient) for n in range(args.messages)]
    before: list[float] = []  # CPU of A and B once every session is set up (AUTH is Argon2)
    timing = await drive(
        target, data, {"delivered": counter}, sessions=args.sessions, limit=args.limit,
        poll=args.poll, on_start=lambda: before.extend(cpu_seconds(p) for p in pids()),
    )  # fmt: skip
    after_a, after_b = (cpu_seconds(p) for p in pids())
    per_1000 = 1000 / max(1, timing.accepted)
    cpu_a, cpu_b = (after_a - before[0]) * per_1000, (after_b - before[1]) * per_1000
    if timing.errors:
        print(f"    {len(timing.errors)} session errors, e.g. {timing.errors[0]}")
    if not timing.complete or not timing.accepted:
        print(f"    {timing.counts} of {timing.accepted} delivered after {args.limit:.0f} s")
        return {}
    seconds = timing.done["delivered"]
    return {
        FIG_RATE: timing.accepted / seconds,
        FIG_SECONDS: seconds,
        FIG_SUBMIT: timing.accepted / timing.submit_seconds,
        FIG_CPU: cpu_a + cpu_b,
        FIG_CPU_A: cpu_a,
        FIG_CPU_B: cpu_b,
    }


# --------------------------------------------------------------------------- ours


@dataclass
class OurPair:
    a: Path
    b: Path
    submission: int
    imaps: int
    password: str
    pids: tuple[list[int], list[int]]  # A's, B's

    def flush_queues(self) -> None:
        for data in (self.a, self.b):
            empty_queue(data)


@contextlib.contextmanager
def our_pair(work: Path, parallel: int | None = None) -> Iterator[OurPair]:
    work.mkdir(parents=True)
    pair, password = _setup_pair(work)
    if parallel is not None:
        from nodes import add_config

        for peer in (pair.a, pair.b):
            add_config(peer.data_dir / cfg.CONFIG_NAME, f"[queue]\nparallel = {parallel}\n")
    servers = [Server(pair.a.data_dir), Server(pair.b.data_dir)]
    try:
        for server in servers:
            server.wait_ready()
        yield OurPair(
            pair.a.data_dir,
            pair.b.data_dir,
            cfg.load(pair.a.data_dir).listeners.submission.port,
            cfg.load(pair.b.data_dir).listeners.imaps.port,
            password,
            ([servers[0].process.pid], [servers[1].process.pid]),
        )
    finally:
        for server in servers:
            server.stop()


def _ours(node: OurPair, args: argparse.Namespace) -> Figures:
    target = Target(
        "127.0.0.1",
        node.submission,
        SENDER,
        RECIPIENT,
        client_context(),
        (SENDER, node.password),
    )

    async def run() -> Figures:
        imap = await Imap.login(node.imaps, RECIPIENT, node.password)
        try:
            await imap.empty()
            return await _round(target, imap.messages, lambda: node.pids, args)
        finally:
            await imap.close()

    try:
        return asyncio.run(run())
    finally:
        node.flush_queues()  # nothing left after a complete round; a timed-out one leaves some


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=2000, help="messages per round")
    parser.add_argument("--sessions", type=int, default=20, help="concurrent submissions")
    parser.add_argument("--size", type=int, default=5, help="message size in KB")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per round, at most")
    parser.add_argument("--poll", type=float, default=0.05, help="delivery poll interval, s")
    parser.add_argument(
        "--queue-parallel", type=int, help="our nodes' queue.parallel (default: theirs, 8)"
    )
    parser.add_argument("--no-report", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()

    from refservers import PARK_DELIVER, PostfixInstance, demo_cert, ensure_installed

    ensure_installed(["postfix"])
    work = run_dir("relay")
    try:
        cert, key = demo_cert(work)
        port_b = free_port()
        with (
            our_pair(work / "ours", args.queue_parallel) as node,
            PostfixInstance(
                port_b,
                cert,
                key,
                domain="b.test",
                park=PARK_DELIVER,
                mailboxes=[RECIPIENT],
                client_ca=cert,
                parent=work,
            ) as postfix_b,
            PostfixInstance(
                free_port(),
                cert,
                key,
                domain="b.test",
                park=PARK_DELIVER,
                relay_to=port_b,
                parent=work,
            ) as postfix_a,
        ):
            postfix_target = Target(
                "127.0.0.1", postfix_a.port, SENDER, RECIPIENT, client_context()
            )

            async def count_postfix() -> int:
                return postfix_b.delivered(RECIPIENT)

            def theirs() -> Figures:
                postfix_b.empty_mailboxes()
                try:
                    return asyncio.run(
                        _round(
                            postfix_target,
                            count_postfix,
                            lambda: (postfix_a.pids(), postfix_b.pids()),
                            args,
                        )
                    )
                finally:
                    for instance in (postfix_a, postfix_b):
                        if instance.queue_count():
                            instance.flush_queue()

            mine, reference = alternate(args.rounds, lambda: _ours(node, args), theirs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    units = {
        FIG_RATE: "msg/s",
        FIG_SECONDS: "s",
        FIG_SUBMIT: "msg/s",
        FIG_CPU: "CPU s",
        FIG_CPU_A: "CPU s",
        FIG_CPU_B: "CPU s",
    }
    rows = summarise(mine, reference, units)
    table = markdown(rows, "Postfix")
    print(table)
    if args.no_report:
        return
    command = "bench/relay_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(
        "Relay between two nodes",
        f"{machine()}; {datetime.now(UTC):%Y-%m-%d}; `{command.strip()}`, "
        f"{args.messages} messages of {args.size} KB over {args.sessions} sessions, "
        f"{args.rounds} alternating rounds.\n\n"
        "From the first submission to A until the last message is in the mailbox on B "
        "(polled every "
        f"{args.poll * 1000:.0f} ms). Ours: two `mssante serve` nodes; submission over "
        "STARTTLS with AUTH PLAIN, relay over mutual TLS (chain, CRL and whitelist "
        "checked), delivery into the INBOX, counted with IMAP `STATUS` by the recipient. "
        "Postfix: two private instances; submission over STARTTLS, relay with "
        "`smtp_tls_security_level = encrypt` and a client certificate, delivery to a "
        "virtual Maildir, whose files are counted. Delivery concurrency: ours "
        f"`queue.parallel = {args.queue_parallel or cfg.QueueConfig().parallel}`, "
        "Postfix its default (up to 20 smtp processes); no connection reuse on either "
        "side. The third row is the rate "
        "at which the load's submissions were accepted meanwhile; the last three, the CPU "
        "time (user + system) of the servers' processes during the round (ours: each "
        "`mssante serve`; Postfix: every process of each instance, reaped ones included).\n\n"
        + table,
    )


if __name__ == "__main__":
    main()
