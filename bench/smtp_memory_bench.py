"""Server memory per idle SMTP session (after STARTTLS and EHLO), ours against Postfix.

    .venv/bin/python bench/smtp_memory_bench.py [--sessions 1000] [--rounds 3]

Each round starts a fresh server, opens ``--sessions`` SMTP sessions to it,
each doing EHLO, STARTTLS and EHLO again, then leaves them idle, reads the
server's proportional set size (PSS, ``/proc/PID/smaps_rollup``, via
``bench/memory_bench.py``'s :func:`pss_kib`) and closes them all. The figure
is (PSS with the sessions − PSS before) / sessions, in KiB: what one more
idle client costs.

* ours: one ``mssante serve`` process of a demo node, its submission port
  (STARTTLS is required there before anything else; no AUTH is done);
* Postfix: a private instance (``bench/refservers.py``) with
  ``default_process_limit`` raised above the number of sessions (one smtpd
  process per session) and anvil's per-client limits off; every process of
  the instance is counted (master, smtpd, tlsmgr, anvil…). A fresh instance
  each round as well: smtpd processes outlive their sessions (``max_idle``)
  and would be reused.

Sessions are opened 10 at a time; the server settles for a second before
the reading.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import ssl
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from benchlib import Server, mssante, run_dir
from compare import Figures, alternate, machine, markdown, summarise, write_section
from memory_bench import measure
from refservers import PostfixInstance, demo_cert, ensure_installed, free_port
from smtp_load import SmtpError, _command, _reply

OPEN_BATCH = 10
FIGURE = "idle SMTP session after STARTTLS + EHLO"
FIGURE_TOTAL = "server PSS with all sessions open"


async def _idle_session(port: int, context: ssl.SSLContext) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        code, text = await _reply(reader)
        if code != 220:
            raise SmtpError(f"greeting {text[:120]!r}")
        await _command(reader, writer, b"EHLO bench.invalid", 250)
        await _command(reader, writer, b"STARTTLS", 220)
        await writer.start_tls(context)
        await _command(reader, writer, b"EHLO bench.invalid", 250)
    except BaseException:
        writer.close()
        raise
    return writer


def _figures(port: int, count: int, pids: Callable[[], list[int]]) -> Figures:
    per, total = asyncio.run(measure(port, count, pids, _idle_session, OPEN_BATCH))
    return {FIGURE: per, FIGURE_TOTAL: total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-report", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    ensure_installed(["postfix"])
    work = run_dir("smtp-memory")
    try:
        cert, key = demo_cert(work)
        data = work / "ours"
        mssante("init", "--demo", "--data-dir", str(data), "--domain", "a.test")
        from mssante import config as cfg

        submission = cfg.load(data).listeners.submission.port
        limit = args.sessions + 100
        postfix_conf = {
            "default_process_limit": str(limit),
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
            "smtpd_client_event_limit_exceptions": "127.0.0.0/8",
        }

        def ours() -> Figures:
            # A fresh process each round: memory freed by the last round's sessions
            # stays in the allocator and would be reused for free.
            server = Server(data)
            try:
                server.wait_ready()
                pid = server.process.pid
                return _figures(submission, args.sessions, lambda: [pid])
            finally:
                server.stop()

        def theirs() -> Figures:
            with PostfixInstance(
                free_port(), cert, key, parent=work, extra_main_cf=postfix_conf
            ) as postfix:
                return _figures(postfix.port, args.sessions, postfix.pids)

        mine, reference = alternate(args.rounds, ours, theirs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = summarise(mine, reference, {FIGURE: "KiB (PSS)", FIGURE_TOTAL: "MiB (PSS)"})
    table = markdown(rows, "Postfix")
    print(table)
    if args.no_report:
        return
    command = "bench/smtp_memory_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(
        "Memory per idle SMTP session",
        f"{machine()}; {datetime.now(UTC):%Y-%m-%d}; `{command.strip()}`, "
        f"{args.sessions} sessions, {args.rounds} alternating rounds, a fresh server each.\n\n"
        "Each session: connect, EHLO, STARTTLS, EHLO, then idle. PSS growth of the server "
        "(ours: the one `mssante serve` process, submission port; Postfix: every process "
        "of its instance, one smtpd per session) divided by the number of sessions.\n\n" + table,
    )


if __name__ == "__main__":
    main()
