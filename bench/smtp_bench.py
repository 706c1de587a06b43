"""SMTP durable acceptance, ours against Postfix: messages/s and p50/p99 to the final 250.

    .venv/bin/python bench/smtp_bench.py [--rounds 3] [--sizes 5,100] [--sessions 1,20,100]
        [--messages 600] [--limit 60]

Both servers are throwaway instances on 127.0.0.1, fsync on (our SQLite in
``synchronous=FULL`` and the blob store's fsyncs; Postfix's queue files), and
both keep what they accept without delivering it, so the figure is the
acceptance path alone:

* ours: a ``mssante serve`` process of a demo node ``a.test`` whose trust
  space also lists ``b.test``; the load submits, over STARTTLS with AUTH
  PLAIN (our MX and submission never take plaintext), from a PER BAL to
  ``sink@b.test``, whose transport points at a closed port: the queue runner
  tries once, is refused, and defers;
* Postfix: a private instance (``bench/refservers.py``) relaying ``b.test``
  with delivery deferred (``defer_transports``: its queue manager still
  moves each message to the deferred queue, as our runner tries and defers),
  plain and with STARTTLS (no AUTH: it is an MX).

For each message size and number of concurrent sessions, one run sends
``--messages`` messages in all (split over the sessions; at most ``--limit``
seconds). The servers alternate round by round (ours, Postfix, ours, …), and
both queues are emptied between runs. The table goes to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mssante import config as cfg

from benchlib import Server, client_context, empty_queue, mssante, run_dir, use_test_helpers
from compare import Figures, alternate, machine, markdown, summarise, write_section
from refservers import free_port
from smtp_load import Target, load

PASSWORD = "bench password 0123456789"
SENDER = "bench@a.test"
RECIPIENT = "sink@b.test"


def _offset() -> int:
    use_test_helpers()
    from nodes import free_port_offset

    return free_port_offset()


@dataclass
class OurNode:
    data: Path
    server: Server
    submission: int

    def empty_queue(self) -> None:
        empty_queue(self.data)


@contextlib.contextmanager
def our_node(work: Path) -> Iterator[OurNode]:
    """Node a.test (served) and b.test (only its whitelist entry), as two operators."""
    ca = work / "ca"
    mssante("certs", "create-ca", "--ca-dir", str(ca))
    dirs = {}
    for name in ("a", "b"):
        data = work / name
        mssante(
            "init",
            "--demo",
            "--data-dir",
            str(data),
            "--domain",
            f"{name}.test",
            "--ca-dir",
            str(ca),
            "--port-offset",
            str(_offset()),
        )
        dirs[name] = data
    entry = work / "b.xml"
    entry.write_text(mssante("whitelist", "self-entry", "--whole", "--data-dir", str(dirs["b"])))
    a = ["--data-dir", str(dirs["a"])]
    mssante("whitelist", "update", str(entry), *a)
    mssante("transport", "set", "b.test", f"127.0.0.1:{free_port()}", *a)  # nobody listens
    pw = work / "pw"
    pw.write_text(PASSWORD)
    mssante(
        "bal",
        "add",
        SENDER,
        "--type",
        "PER",
        "--rpps",
        "10000000017",
        "--password-file",
        str(pw),
        *a,
    )
    config = cfg.load(dirs["a"])
    server = Server(dirs["a"])
    try:
        server.wait_ready()
        yield OurNode(dirs["a"], server, config.listeners.submission.port)
    finally:
        server.stop()


def _figures(
    target_for: dict[str, Target | None],
    empty: Callable[[], None],
    sizes: list[int],
    sessions: list[int],
    messages: int,
    limit: float,
) -> Figures:
    figures: Figures = {}
    for mode, target in target_for.items():
        if target is None:
            continue
        for size in sizes:
            for n in sessions:
                run = load(
                    target,
                    sessions=n,
                    per_session=max(1, messages // n),
                    size=size * 1024,
                    limit=limit,
                )
                empty()
                if run.errors:
                    print(
                        f"    {mode} {size}KB×{n}: {len(run.errors)} errors, e.g. {run.errors[0]}"
                    )
                figures.update(run.figures(f"{size} KB × {n} {mode} "))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="5,100", help="message sizes in KB")
    parser.add_argument("--sessions", default="1,20,100")
    parser.add_argument("--messages", type=int, default=600, help="messages per run")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds per run, at most")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    sessions = [int(s) for s in args.sessions.split(",")]

    from refservers import PARK_DEFER, PostfixInstance, demo_cert, ensure_installed

    ensure_installed()
    work = run_dir("smtp")
    cert, key = demo_cert(work)
    context = client_context()
    with (
        our_node(work / "ours") as node,
        PostfixInstance(
            free_port(), cert, key, domain="b.test", park=PARK_DEFER, parent=work
        ) as postfix,
    ):
        ours_targets: dict[str, Target | None] = {
            "plain": None,  # refused by design: no plaintext submission or MX
            "STARTTLS": Target(
                "127.0.0.1", node.submission, SENDER, RECIPIENT, context, (SENDER, PASSWORD)
            ),
        }
        postfix_targets: dict[str, Target | None] = {
            "plain": Target("127.0.0.1", postfix.port, SENDER, RECIPIENT),
            "STARTTLS": Target("127.0.0.1", postfix.port, SENDER, RECIPIENT, context),
        }
        units = {}
        for mode in ("plain", "STARTTLS"):
            for size in sizes:
                for n in sessions:
                    prefix = f"{size} KB × {n} {mode} "
                    units.update(
                        {
                            f"{prefix}msgs/s": "msg/s",
                            f"{prefix}p50 ms": "ms",
                            f"{prefix}p99 ms": "ms",
                        }
                    )
        mine, theirs = alternate(
            args.rounds,
            lambda: _figures(
                ours_targets, node.empty_queue, sizes, sessions, args.messages, args.limit
            ),
            lambda: _figures(
                postfix_targets, postfix.flush_queue, sizes, sessions, args.messages, args.limit
            ),
        )
    rows = summarise(mine, theirs, units)
    table = markdown(rows, "Postfix")
    print(table)
    command = "bench/smtp_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(
        "SMTP durable acceptance",
        f"{machine()}; {datetime.now(UTC):%Y-%m-%d}; `{command.strip()}`, "
        f"{args.rounds} alternating rounds.\n\n"
        "Ours: submission over STARTTLS with AUTH PLAIN (there is no plaintext path: "
        "n/a), accepted for a trust-space domain whose delivery is deferred. Postfix: "
        "a private instance relaying the same domain with delivery deferred. Both fsync.\n\n"
        + table,
    )


if __name__ == "__main__":
    main()
