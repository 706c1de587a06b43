"""The envoi-en-Y bridge: XDM+CDA packages validated and deposited per second, on one node.

    .venv/bin/python bench/bridge_bench.py [--rounds 3] [--packages 200] [--sessions 10]
        [--limit 300]

One ``mssante serve`` node (``a.test``) with the bridge on
(``node.bridge_address``, ``dmp.bridge_clients``; W mode off). Each round
builds ``--packages`` messages (``tests/cdagen.py``), each carrying one
``IHE_XDM.ZIP`` with one CDA R2 document (a structured "lettre de liaison",
about 3 KB of XML) for a distinct patient, meant for one professional of the
same node. The DPI's APP mailbox submits them to the bridge address over
``--sessions`` concurrent sessions (STARTTLS, AUTH PLAIN; sessions set up
before the clock starts), and two signals are polled every 50 ms from
outside the process:

* **deposited**: the node's ``/metrics`` counter
  ``mssante_bridge_documents_total{outcome="deposited"}``, which moves once
  the transaction that deposits the document, enqueues the forward and the
  acknowledgement and finishes the queue row has committed;
* **acknowledged**: the DPI's INBOX (``STATUS`` over IMAPS), where the
  bridge's acknowledgement of each message lands after going through the
  queue like any message (end to end from the DPI's point of view).

Figures are packages/s from the first submission to the poll that saw each
signal complete. A last figure times the validation step alone, in this
process: :func:`cda.intake.check_package` over the same packages (zip and
metadata reading, hash and size, CDA header, cross-checks), packages/s; and
the server's CPU seconds per 1,000 packages (from /proc, from the first
submission to the last acknowledgement).

There is no reference server: nothing else does this. Every round uses new
documents and patients; bounded by ``--limit`` seconds per round.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

from cda.intake import check_package

from benchlib import Server, cpu_seconds, mssante, run_dir, use_test_helpers
from compare import Figures, alternate, machine, markdown, summarise, write_section
from e2e_load import Imap, client_context, drive, metric
from smtp_load import Target

BRIDGE = "dmp-bridge@a.test"
DPI = "dpi@a.test"
DOCTOR = "dr.traitant@a.test"
PASSWORD = "bench password 0123456789"
FIG_DEPOSITED = "validated and deposited (metrics counter)"
FIG_ACKED = "acknowledged (ack in the DPI's INBOX)"
FIG_SUBMIT = "submission alone"
FIG_CHECK = "validation alone, in-process (check_package)"
FIG_CPU = "server CPU per 1,000 packages, until the last ack"


def _ins(n: int) -> str:
    from annuaire.ins import ins_key

    body = f"2800575{n:06d}"
    return body + ins_key(body)


def packages(first: int, count: int) -> list[bytes]:
    """``count`` XDM packages, one document each, patients and ids ``first``…"""
    use_test_helpers()
    from cdagen import DOC_ROOT, SET_ROOT, make_cda, xdm_document, xdm_package

    made = []
    for n in range(first, first + count):
        cda = make_cda(
            doc_id=(DOC_ROOT, f"bench.{n}"), set_id=(SET_ROOT, f"bench.{n}"), ins=_ins(n)
        )
        entry = xdm_document(cda, unique_id=f"{DOC_ROOT}^bench.{n}", ins=_ins(n))
        made.append(xdm_package(entry, intended=(DOCTOR,)))
    return made


def bridge_message(n: int, package: bytes) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = f"DPI Hopital <{DPI}>"
    message["To"] = BRIDGE
    message["Subject"] = "XDM/1.0/DDM+Lettre de liaison"
    message["Message-ID"] = f"<bridge-bench.{n}.{time.monotonic_ns()}@a.test>"
    message.set_content("Documents joints.")
    message.add_attachment(package, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return message.as_bytes()  # CRLF, base64 attachment: no line starts with a dot


def _check_rate(made: Sequence[bytes]) -> float:
    started = time.perf_counter()
    for data in made:
        checked = check_package("IHE_XDM.ZIP", data)
        if not checked.forwardable:
            raise RuntimeError(f"a generated package does not check out: {checked}")
    return len(made) / (time.perf_counter() - started)


def _node(work: Path) -> Path:
    use_test_helpers()
    from nodes import add_config, rpps

    data = work / "a"
    mssante("init", "--demo", "--data-dir", str(data), "--domain", "a.test")
    add_config(
        data / "mssante.toml",
        f'[node]\nbridge_address = "{BRIDGE}"\n[dmp]\nbridge_clients = ["{DPI}"]\n',
    )
    pw = work / "pw"
    pw.write_text(PASSWORD)
    for address, kind, ident in (
        (DPI, "APP", ["--finess", "750712184"]),
        (DOCTOR, "PER", ["--rpps", rpps(1)]),
    ):
        mssante("bal", "add", address, "--type", kind, *ident, "--password-file", str(pw),
                "--data-dir", str(data))  # fmt: skip
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--packages", type=int, default=200, help="messages per round")
    parser.add_argument("--sessions", type=int, default=10, help="concurrent submissions")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds per round, at most")
    parser.add_argument("--poll", type=float, default=0.05, help="poll interval, s")
    parser.add_argument("--no-report", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args()
    if args.packages * args.rounds > 999_999:
        parser.error("at most 999,999 packages in all (patient numbers)")
    work = run_dir("bridge")
    try:
        data = _node(work)
        from mssante import config as cfg

        config = cfg.load(data)
        submission = config.listeners.submission.port
        imaps, http = config.listeners.imaps.port, config.listeners.http.port
        target = Target("127.0.0.1", submission, DPI, BRIDGE, client_context(), (DPI, PASSWORD))
        server = Server(data)
        rounds_done = [0]

        def ours() -> Figures:
            first = rounds_done[0] * args.packages + 1
            rounds_done[0] += 1
            made = packages(first, args.packages)
            messages = [bridge_message(first + i, p) for i, p in enumerate(made)]

            async def deposited() -> int:
                return await metric(http, "mssante_bridge_documents_total", 'outcome="deposited"')

            async def run() -> Figures:
                imap = await Imap.login(imaps, DPI, PASSWORD)
                try:
                    await imap.empty()
                    before: list[float] = []  # once the sessions are set up (AUTH: Argon2)
                    timing = await drive(
                        target,
                        messages,
                        {FIG_DEPOSITED: deposited, FIG_ACKED: imap.messages},
                        sessions=args.sessions,
                        limit=args.limit,
                        poll=args.poll,
                        on_start=lambda: before.append(cpu_seconds([server.process.pid])),
                    )
                    cpu = cpu_seconds([server.process.pid]) - before[0]
                finally:
                    await imap.close()
                if timing.errors:
                    print(f"    {len(timing.errors)} session errors, e.g. {timing.errors[0]}")
                if not timing.complete:
                    print(f"    after {args.limit:.0f} s: {timing.counts} of {timing.accepted}")
                figures = {k: timing.accepted / s for k, s in timing.done.items() if s}
                if timing.submit_seconds:
                    figures[FIG_SUBMIT] = timing.accepted / timing.submit_seconds
                if timing.complete and timing.accepted:
                    figures[FIG_CPU] = cpu * 1000 / timing.accepted
                return figures

            figures = asyncio.run(run())
            figures[FIG_CHECK] = _check_rate(made)
            return figures

        try:
            server.wait_ready()
            mine, _ = alternate(args.rounds, ours, None)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    units = {
        FIG_DEPOSITED: "packages/s",
        FIG_ACKED: "packages/s",
        FIG_SUBMIT: "packages/s",
        FIG_CHECK: "packages/s",
        FIG_CPU: "CPU s",
    }
    table = markdown(summarise(mine, [], units), None)
    print(table)
    if args.no_report:
        return
    size = statistics.median(len(m) for m in [bridge_message(0, p) for p in packages(1, 3)])
    command = "bench/bridge_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(
        "Bridge (envoi en Y)",
        f"{machine()}; {datetime.now(UTC):%Y-%m-%d}; `{command.strip()}`, "
        f"{args.packages} messages per round over {args.sessions} sessions, "
        f"{args.rounds} rounds.\n\n"
        f"One node with the bridge on (W mode off). Each message (about {size / 1024:.0f} KB) "
        "carries one IHE_XDM.ZIP with one CDA R2 document for a distinct patient, meant for "
        "a professional of the same node; the DPI's APP mailbox submits them over STARTTLS "
        "with AUTH PLAIN. Rates from the first submission until the node's "
        '`mssante_bridge_documents_total{outcome="deposited"}` counter (validated, deposited, '
        "forward and acknowledgement enqueued, committed), then the DPI's INBOX, have "
        "grown by the number of messages (polled every "
        f"{args.poll * 1000:.0f} ms). The row after checks the same packages in-process "
        "(`cda.intake.check_package`), without the queue, the store or the database; the "
        "last is the server's CPU time (user + system) from the first submission to the "
        "last acknowledgement. No reference server.\n\n" + table,
    )


if __name__ == "__main__":
    main()
