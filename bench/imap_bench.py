"""IMAP server on one big mailbox: SELECT, FETCH FLAGS and SEARCH on N messages.

    .venv/bin/python bench/imap_bench.py [--messages 100000] [--distinct 500]
        [--database-url postgresql+psycopg://...] [--full-search-limit 300] [--repeat 3]

Makes a demo node (``mssante init --demo`` in a scratch directory under
``bench/.work``; SQLite unless ``--database-url``), one PER BAL, and fills its
INBOX directly, not through IMAP APPEND:

* ``--distinct`` different messages (default 500) are stored once each with
  ``runtime.store.put`` (encrypted, fsynced, content-addressed); the N index
  rows reuse them in turn. Each distinct message has its own Subject,
  Message-ID and size: 70 % are text/plain of 1-6 KB, 30 % multipart/mixed
  with a 20-120 KB PDF-like attachment (about 30 KB on average). Reusing blobs
  keeps the fill short; it also means the few MB of blobs stay in the page
  cache, so searches that read messages see a warm store.
* the N rows go in with one executemany ``insert(mailbox_messages)`` in one
  transaction: UIDs 1..N, MODSEQ 2..N+1, internal dates in UID order over one
  year (1-Dec-2025 to 1-Dec-2026), 30 % ``\\Seen`` and 5 % ``\\Flagged``
  (independent, seeded), the last 10 messages ``\\Recent``; then the mailbox
  row's UIDNEXT / HIGHESTMODSEQ are set to match.

The node then runs as a ``mssante serve`` subprocess (as in production) and
one ``imaplib`` client over implicit TLS (the demo ``imaps`` port) times, to
the tagged OK:

* LOGIN (an Argon2 check) and SELECT INBOX;
* ``UID FETCH 1:* (FLAGS)``, through imaplib and again on a second, hand-driven
  TLS connection (EXAMINE) that does not parse the lines: the difference is
  imaplib's cost, and that connection also gives the time to the first byte;
* ``UID SEARCH UNSEEN``, ``UID SEARCH FLAGGED SINCE 1-Jun-2026`` and
  ``UID SEARCH UID N/2:*``, which the index answers without opening a message;
* ``FETCH 1:1000 (ENVELOPE)``: once, when the server parses the messages and
  caches their MIME structure in the index (written in the background after
  the OK: the bench waits for that commit), then again reading the cache;
* ``UID SEARCH SUBJECT``, which reads and parses every message it is asked
  about: timed on 10,000 messages (``UID SEARCH UID 1:10000 SUBJECT …``; the
  cheap UID key is evaluated first, so only those are read), and on the whole
  mailbox only when that figure extrapolates to at most
  ``--full-search-limit`` seconds (default 300).

Operations that can be repeated run ``--repeat`` times (default 3): the
median is shown with the range. Each line also gives messages/s, the number of
responses, and the CPU seconds the server process (``/proc/PID/stat``) and
this client spent per run; the server's RSS is read from ``/proc/PID/status``
after LOGIN, SELECT and FETCH, with the peak (VmHWM) at the end. The fill time
is reported separately. A ratio against Dovecot belongs here; without Dovecot
installed the bench says so rather than print a figure. Not a test: nothing
is asserted about timings.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import imaplib
import itertools
import random
import re
import secrets
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, update

from annuaire.bal import BalSpec, add_bal, remove_bal, set_password
from annuaire.identifiers import luhn_key
from mssante import config as cfg
from mssante import index
from mssante.app import Runtime
from mssante.datadir import DEMO_DOMAIN, DEMO_PORTS
from mssante.schema import mailbox_messages, mailboxes

from benchlib import Server, work_dir

PASSWORD = "bench password, long enough"
FIRST_DATE = datetime(2025, 12, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
SUBJECT_WORD = "biologie"  # in one subject template of eight
SUBJECTS = (
    "Compte rendu de consultation",
    "Résultats de biologie",
    "Lettre de liaison",
    "Demande d'avis spécialisé",
    "Ordonnance de sortie",
    "Compte rendu opératoire",
    "Courrier de sortie d'hospitalisation",
    "Résultats d'imagerie",
)
WORDS = (
    "patient", "suivi", "traitement", "examen", "clinique", "tension", "artérielle", "bilan",
    "sanguin", "consultation", "contrôle", "semaine", "prochaine", "avis", "cardiologue",
    "radiographie", "thorax", "normale", "antécédents", "allergie", "posologie", "comprimés",
    "matin", "soir", "surveillance",
)  # fmt: skip

# imaplib refuses lines over 1 MB; a SEARCH answer on a big mailbox is longer.
imaplib._MAXLINE = 256 << 20  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- the node


def free_port_offset() -> int:
    """An offset at which every demo port is free on 127.0.0.1."""
    highest = max(DEMO_PORTS.values())
    for _ in range(200):
        offset = random.randrange(8000, 65535 - highest, 10)
        if all(_free(port + offset) for port in DEMO_PORTS.values()):
            return offset
    raise RuntimeError("no free demo port range")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def init_node(data: Path, database_url: str | None) -> cfg.Config:
    offset = str(free_port_offset())
    command = [sys.executable, "-m", "mssante", "init", "--demo", "--data-dir", str(data)]
    command += ["--port-offset", offset]
    if database_url:
        command += ["--database-url", database_url]
    made = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if made.returncode != 0:
        raise RuntimeError(f"mssante init failed:\n{made.stderr}")
    return cfg.load(data)


def new_bal(runtime: Runtime) -> str:
    """A PER BAL with :data:`PASSWORD` and its default folders; its address."""
    n = random.randrange(10**7, 10**8)
    body = f"10{n:08d}"
    address = f"bench-{secrets.token_hex(4)}@{DEMO_DOMAIN}"
    spec = BalSpec(address, "PER", person_id_type="RPPS", person_id=body + str(luhn_key(body)))
    now = datetime.now(UTC)
    with runtime.db.transaction() as conn:
        add_bal(conn, spec, now=now)
        set_password(conn, address, PASSWORD, now=now)
    return address


# --------------------------------------------------------------------------- the fill


def make_messages(distinct: int, owner: str, rng: random.Random) -> list[bytes]:
    """``distinct`` different messages: mostly short letters, some with a PDF attachment."""
    out = []
    for i in range(distinct):
        msg = EmailMessage()
        msg["From"] = f"Dr Praticien {i % 37} <praticien{i % 37}@hopital.{DEMO_DOMAIN}>"
        msg["To"] = owner
        msg["Subject"] = f"{SUBJECTS[i % len(SUBJECTS)]} n°{i}"
        msg["Date"] = (FIRST_DATE + YEAR * i / distinct).strftime("%a, %d %b %Y %H:%M:%S +0000")
        msg["Message-ID"] = f"<bench.{i}.{secrets.token_hex(6)}@hopital.{DEMO_DOMAIN}>"
        words = rng.randrange(150, 900)
        text = " ".join(rng.choice(WORDS) for _ in range(words))
        msg.set_content("\n".join(text[k : k + 72] for k in range(0, len(text), 72)))
        if rng.random() < 0.30:
            pdf = b"%PDF-1.4\n" + rng.randbytes(rng.randrange(20_000, 120_000))
            msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"cr-{i}.pdf")
        out.append(msg.as_bytes(policy=SMTP))
    return out


@dataclass
class Fill:
    blobs_seconds: float
    blob_bytes: int
    rows_seconds: float
    mailbox_bytes: int


def fill(runtime: Runtime, owner: str, count: int, distinct: int, seed: int) -> Fill:
    rng = random.Random(seed)
    messages = make_messages(distinct, owner, rng)
    start = time.perf_counter()
    refs = [runtime.store.put(raw) for raw in messages]
    blobs_seconds = time.perf_counter() - start
    step = YEAR / count
    start = time.perf_counter()
    with runtime.db.transaction() as conn:
        inbox = index.get_mailbox(conn, owner, "INBOX")
        if inbox is None:
            raise RuntimeError(f"{owner} has no INBOX")
        rows: list[dict[str, Any]] = []
        for uid in range(1, count + 1):
            ref = refs[(uid - 1) % distinct]
            flags = []
            if rng.random() < 0.30:
                flags.append("\\Seen")
            if rng.random() < 0.05:
                flags.append("\\Flagged")
            rows.append(
                {
                    "mailbox_id": inbox.id,
                    "uid": uid,
                    "blob_sha256": ref.sha256,
                    "size": ref.size,
                    "internal_date": FIRST_DATE + step * (uid - 1),
                    "flags": " ".join(sorted(flags)),
                    "modseq": uid + 1,
                    "delivery_key": None,
                    "structure": None,
                }
            )
        conn.execute(insert(mailbox_messages), rows)
        conn.execute(
            update(mailboxes)
            .where(mailboxes.c.id == inbox.id)
            .values(uidnext=count + 1, highestmodseq=count + 1, recent_uid=max(1, count - 9))
        )
    rows_seconds = time.perf_counter() - start
    return Fill(
        blobs_seconds,
        sum(r.size for r in refs),
        rows_seconds,
        sum(refs[i % distinct].size for i in range(count)),
    )


def cached_structures(runtime: Runtime, owner: str, upto: int) -> int:
    """INBOX messages with UID <= ``upto`` whose MIME structure the server has cached."""
    with runtime.db.read() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(mailbox_messages.join(mailboxes))
                .where(
                    mailboxes.c.owner == owner,
                    mailboxes.c.name == "INBOX",
                    mailbox_messages.c.uid <= upto,
                    mailbox_messages.c.structure.is_not(None),
                )
            ).scalar_one()
        )


# --------------------------------------------------------------------------- the client


@dataclass
class Result:
    operation: str
    samples: list[float]  # wall seconds of each run
    messages: int
    responses: int | None
    server_cpu: float | None  # per run
    client_cpu: float  # per run

    @property
    def seconds(self) -> float:
        return statistics.median(self.samples)


class Timer:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.results: list[Result] = []

    def run(
        self, operation: str, messages: int, action: Callable[[], int | None], repeat: int = 1
    ) -> Result:
        """Time ``action`` (which returns its number of responses, or None) ``repeat`` times."""
        server_before = self.server.cpu()
        client_before = time.process_time()
        samples = []
        responses = None
        for _ in range(repeat):
            start = time.perf_counter()
            responses = action()
            samples.append(time.perf_counter() - start)
        client_cpu = (time.process_time() - client_before) / repeat
        server_after = self.server.cpu()
        server_cpu = (
            (server_after - server_before) / repeat
            if server_after is not None and server_before is not None
            else None
        )
        result = Result(operation, samples, messages, responses, server_cpu, client_cpu)
        self.results.append(result)
        runs = " ".join(f"{t:.3f}" for t in samples)
        print(f"  {operation:<46} {runs} s", flush=True)
        return result


def ok(answer: tuple[str, list[Any]]) -> list[Any]:
    typ, data = answer
    if typ != "OK":
        raise RuntimeError(f"the server answered {typ}: {data!r}")
    return data


def fetch_count(data: list[Any]) -> int:
    """FETCH responses in an imaplib answer (a literal comes as a tuple, then b')')."""
    pattern = re.compile(rb"^\d+ \(")
    count = 0
    for item in data:
        head = item[0] if isinstance(item, tuple) else item
        if isinstance(head, bytes) and pattern.match(head):
            count += 1
    return count


def search_count(data: list[Any]) -> int:
    return sum(len(line.split()) for line in data if line)


class RawClient:
    """One TLS connection driven by hand, without imaplib's per-line parsing.

    It gives the server's own time for a big answer and its time to the first
    byte (the server builds every response line before sending the first).
    """

    def __init__(self, port: int, ctx: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=3600)
        self.sock = ctx.wrap_socket(raw)
        self._buffer = bytearray(1 << 20)
        self._greeting = self.sock.recv(65536)
        self._tags = (f"r{n}" for n in itertools.count(1))
        self.first_byte = 0.0
        self.reads = 0  # recv calls of the last command: about one per TLS record

    def command(self, text: str) -> bytes:
        """Send one command; everything up to and including its tagged answer."""
        tag = next(self._tags)
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        start = time.perf_counter()
        data = bytearray()
        marker = f"{tag} ".encode()
        view = memoryview(self._buffer)
        self.reads = 0
        while True:
            size = self.sock.recv_into(view)
            if not size:
                raise RuntimeError(f"connection closed during {text!r}")
            if not data:
                self.first_byte = time.perf_counter() - start
            self.reads += 1
            data += view[:size]
            if data.endswith(b"\r\n"):
                end = data.rfind(b"\r\n", 0, len(data) - 2)
                last = 0 if end < 0 else end + 2  # where the last line starts
                if data.startswith(marker, last):
                    break
        if not data.startswith(f"{tag} OK".encode(), last):
            raise RuntimeError(f"{text!r}: {bytes(data[last:])!r}")
        return bytes(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.command("LOGOUT")
        self.sock.close()


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def run_client(
    server: Server,
    cafile: Path,
    port: int,
    owner: str,
    count: int,
    *,
    repeat: int,
    full_search_limit: float,
    cached: Callable[[int], int],
) -> None:
    """Time the operations; ``cached(n)`` counts UIDs 1..n whose structure is cached."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    timer = Timer(server)
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=ctx, timeout=3600)
    memory: dict[str, float | None] = {}
    try:
        print("timing (wall time to the tagged OK):")

        def login() -> None:
            ok(client.login(owner, PASSWORD))

        timer.run("LOGIN (Argon2 check)", 0, login)
        memory["after LOGIN"] = server.memory_mib()

        def select() -> None:
            exists = int(ok(client.select("INBOX"))[0])
            if exists != count:
                raise RuntimeError(f"SELECT says {exists} EXISTS, {count} were filled")

        timer.run("SELECT INBOX", count, select, repeat)
        memory["after SELECT"] = server.memory_mib()
        timer.run(
            "UID FETCH 1:* (FLAGS)",
            count,
            lambda: fetch_count(ok(client.uid("FETCH", "1:*", "(FLAGS)"))),
            repeat,
        )
        memory["after UID FETCH 1:* (FLAGS)"] = server.memory_mib()
        raw = RawClient(port, ctx)
        try:
            raw.command(f'LOGIN {owner} "{PASSWORD}"')
            raw.command("EXAMINE INBOX")
            timer.run(
                "UID FETCH 1:* (FLAGS), raw socket",
                count,
                lambda: raw.command("UID FETCH 1:* (FLAGS)").count(b" FETCH ("),
                repeat,
            )
            first_byte, reads = raw.first_byte, raw.reads
        finally:
            raw.close()
        half = max(1, count // 2)
        searches = (
            ("UID SEARCH UNSEEN", ("UNSEEN",)),
            ("UID SEARCH FLAGGED SINCE 1-Jun-2026", ("FLAGGED", "SINCE", "1-Jun-2026")),
            (f"UID SEARCH UID {half}:*", ("UID", f"{half}:*")),
        )

        def search(*keys: str) -> int:
            return search_count(ok(client.uid("SEARCH", *keys)))

        for label, keys in searches:
            timer.run(label, count, functools.partial(search, *keys), repeat)
        first = min(1000, count)
        envelopes = f"FETCH 1:{first} (ENVELOPE)"
        timer.run(
            f"{envelopes}, 1st: parse + cache",
            first,
            lambda: fetch_count(ok(client.fetch(f"1:{first}", "(ENVELOPE)"))),
        )
        # The server writes the structure cache after its OK, in the background:
        # wait for that commit, so the next run reads the cache and parses nothing.
        start = time.perf_counter()
        while cached(first) < first and time.perf_counter() - start < 60:
            time.sleep(0.01)
        cache_note = (
            f"{envelopes}: the structure cache of the {cached(first):,} messages was "
            f"committed {time.perf_counter() - start:.2f} s after the 1st run's OK."
        )
        timer.run(
            f"{envelopes}, again: cached",
            first,
            lambda: fetch_count(ok(client.fetch(f"1:{first}", "(ENVELOPE)"))),
            repeat,
        )
        sample = min(10_000, count)
        sampled = timer.run(
            f"UID SEARCH UID 1:{sample} SUBJECT {SUBJECT_WORD}",
            sample,
            lambda: search("UID", f"1:{sample}", "SUBJECT", SUBJECT_WORD),
        )
        estimate = sampled.seconds * count / sample
        full_note = ""
        if sample == count:
            pass
        elif estimate <= full_search_limit:
            timer.run(
                f"UID SEARCH SUBJECT {SUBJECT_WORD} (all)",
                count,
                lambda: search("SUBJECT", SUBJECT_WORD),
            )
        else:
            full_note = (
                f"UID SEARCH SUBJECT on all {count:,} messages not run: the 10,000-message "
                f"figure extrapolates to about {estimate:.0f} s (> --full-search-limit "
                f"{full_search_limit:.0f} s)."
            )
        memory["peak (VmHWM)"] = server.memory_mib("VmHWM")
        client.logout()
    finally:
        with contextlib.suppress(OSError):
            client.shutdown()

    print()
    header = (
        f"{'operation':<46} {'seconds':>9} {'min-max':>13} {'messages/s':>11} "
        f"{'responses':>10} {'server CPU':>10} {'client CPU':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in timer.results:
        rate = r.messages / r.seconds if r.messages and r.seconds > 0 else None
        spread = f"{min(r.samples):.2f}-{max(r.samples):.2f}" if len(r.samples) > 1 else "-"
        print(
            f"{r.operation:<46} {r.seconds:9.3f} {spread:>13} {fmt(rate, ',.0f'):>11} "
            f"{fmt(r.responses, ',d'):>10} {fmt(r.server_cpu, '.2f'):>10} {r.client_cpu:10.2f}"
        )
    print(
        f"\nseconds: median of the runs (--repeat {repeat} for the operations that can be "
        "repeated), min-max their range. responses: FETCH responses, or UIDs in the SEARCH "
        "answer. CPU seconds per run: server = the mssante serve process, client = this "
        "process (mostly imaplib parsing)."
    )
    print(
        f"raw socket: the same UID FETCH read without imaplib (no per-line parsing) on a "
        f"second connection (EXAMINE); its first byte came after {first_byte:.3f} s, "
        f"and it took {reads:,} TLS reads (about one per TLS record sent)."
    )
    print(cache_note)
    if full_note:
        print(full_note)
    print("server RSS: " + ", ".join(f"{k} {fmt(v, '.0f')} MiB" for k, v in memory.items()))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages in the INBOX")
    parser.add_argument("--distinct", type=int, default=500, help="distinct message blobs")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql+psycopg://user@host/db (default: SQLite in the scratch node)",
    )
    parser.add_argument(
        "--full-search-limit",
        type=float,
        default=300.0,
        help="run SUBJECT on the whole mailbox when the 10,000-message time extrapolates "
        "to at most this many seconds",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each repeatable operation (median shown)"
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if min(args.messages, args.distinct, args.repeat) < 1:
        parser.error("--messages, --distinct and --repeat must be positive")

    engine = "PostgreSQL" if args.database_url else "SQLite"
    print(f"IMAP benchmark: {args.messages:,} messages in one INBOX, {engine}")
    with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
        data = Path(tmp) / "node"
        config = init_node(data, args.database_url)
        runtime = Runtime.open(config)
        owner = new_bal(runtime)
        server: Server | None = None
        try:
            made = fill(runtime, owner, args.messages, min(args.distinct, args.messages), args.seed)
            runtime.db.dispose()
            print(
                f"fill: {min(args.distinct, args.messages)} distinct blobs "
                f"({made.blob_bytes / 1e6:.1f} MB) stored in {made.blobs_seconds:.1f} s; "
                f"{args.messages:,} index rows ({made.mailbox_bytes / 1e9:.2f} GB of mail "
                f"counted) inserted in {made.rows_seconds:.1f} s "
                f"({args.messages / made.rows_seconds:,.0f} rows/s)"
            )
            server = Server(data)
            server.wait_ready()
            run_client(
                server,
                config.path(Path("pki/ca/root.pem")),
                config.listeners.imaps.port,
                owner,
                args.messages,
                repeat=args.repeat,
                full_search_limit=args.full_search_limit,
                cached=lambda upto: cached_structures(runtime, owner, upto),
            )
        finally:
            if server is not None:
                server.stop()
            if args.database_url:  # the database outlives the scratch directory
                with runtime.db.transaction() as conn:
                    remove_bal(conn, owner, purge=True)
            runtime.db.dispose()
    if shutil.which("dovecot"):
        print("reference: Dovecot is installed, but this bench does not drive it yet (no ratio)")
    else:
        print("reference: Dovecot not installed here")


if __name__ == "__main__":
    main()
