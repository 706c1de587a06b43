"""IMAP on one big mailbox, ours against Dovecot: SELECT, FETCH, SEARCH, APPEND, logins.

    .venv/bin/python bench/imap_bench.py [--messages 100000] [--distinct 500] [--rounds 3]
        [--appends 2000] [--clients 20] [--sessions 200] [--limit 120]
        [--database-url postgresql+psycopg://...] [--no-reference]

The same N messages (the same bytes, flags and internal dates, in the same
UID order) go into the INBOX of both servers, once per run:

* ``--distinct`` different messages (default 500), each with its own
  Subject, Message-ID and size: 70 % text/plain of 1-6 KB, 30 %
  multipart/mixed with a 20-120 KB PDF-like attachment (about 30 KB on
  average); one in ten has the word searched by TEXT in its body. The N
  messages reuse them in turn; 30 % are ``\\Seen`` and 5 % ``\\Flagged``
  (seeded), internal dates spread over one year in UID order.
* ours: a demo node (``mssante init --demo`` under ``bench/.work``; SQLite
  unless ``--database-url``) with one PER BAL. The distinct messages are
  stored once each with ``runtime.store.put`` (encrypted, fsynced,
  content-addressed, as a delivery stores them) together with their index
  cache columns (``imap.cache``: what IMAP APPEND writes with the row; a
  message delivered by SMTP gets them on its first FETCH or SEARCH); the N
  index rows go in with one executemany ``insert(mailbox_messages)``.
* Dovecot 2.3 (``bench/refservers.py``): a private instance, ``sdbox``
  storage, the N messages through ``doveadm import`` (Dovecot's own save
  path: one file per message). Its passwords are ``ARGON2ID`` hashes like
  ours (a login costs both servers an Argon2 check).

Then rounds alternate ours / Dovecot (``--rounds``, default 3). Each round
restarts the server (ours: a new ``mssante serve`` process; Dovecot: its
processes, and its ``dovecot.index.cache`` of the INBOX is deleted, so that
its first ENVELOPE and SUBJECT read the messages as after a fill), then
times over implicit TLS, to the tagged OK, with a client that reads the bytes
without parsing them (so the figure is the server's, not imaplib's):

* ``SELECT INBOX`` (the first after the restart, then again);
* ``UID FETCH 1:* (FLAGS)``;
* ``UID FETCH 1:* (ENVELOPE)``, the first after the restart and again;
* ``UID SEARCH SUBJECT …`` (first and again) and ``UID SEARCH TEXT …``
  (a word in one message body of ten; no full-text index on either side);
* APPEND rate: ``--appends`` distinct 5 KB messages (default 2,000), one
  connection, one after the other (``LITERAL+``), into another folder so
  the INBOX keeps its N messages; at most ``--limit`` seconds;
* LOGIN + SELECT INBOX + LOGOUT: ``--sessions`` sessions (default 200), each
  on a new TLS connection, by ``--clients`` concurrent clients (default 20);
  at most ``--limit`` seconds.

The answers are checked (EXISTS, number of FETCH responses, the same SEARCH
hits on both servers). The table (median, min–max, ratio ours/Dovecot) is
printed and written to ``docs/benchmarks.md``. Not a test: nothing is
asserted about timings. ``--no-reference`` runs ours alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import random
import re
import secrets
import shlex
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

from sqlalchemy import insert, update

from annuaire.bal import BalSpec, add_bal, remove_bal, set_password
from annuaire.identifiers import luhn_key
from mssante import config as cfg
from mssante import index
from mssante.app import Runtime
from mssante.datadir import DEMO_DOMAIN, DEMO_PORTS
from mssante.schema import mailbox_messages, mailboxes

from benchlib import Server, client_context, work_dir
from compare import Figures, alternate, machine, markdown, summarise, write_section

PASSWORD = "bench password, long enough"
FIRST_DATE = datetime(2025, 12, 1, tzinfo=UTC)
YEAR = timedelta(days=365)
SUBJECT_WORD = "biologie"  # in one subject template of eight
TEXT_WORD = "glycemie"  # in the body of one distinct message of ten
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
        words = [rng.choice(WORDS) for _ in range(rng.randrange(150, 900))]
        if i % 10 == 3:
            words.insert(rng.randrange(len(words)), TEXT_WORD)
        text = " ".join(words)
        msg.set_content("\n".join(text[k : k + 72] for k in range(0, len(text), 72)))
        if rng.random() < 0.30:
            pdf = b"%PDF-1.4\n" + rng.randbytes(rng.randrange(20_000, 120_000))
            msg.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"cr-{i}.pdf")
        out.append(msg.as_bytes(policy=SMTP))
    return out


@dataclass(frozen=True)
class Plan:
    """The mailbox both servers get: message ``uid`` is ``messages[blob[uid - 1]]``."""

    messages: list[bytes]
    blob: list[int]
    flags: list[tuple[str, ...]]
    dates: list[datetime]

    @property
    def count(self) -> int:
        return len(self.blob)

    @property
    def mailbox_bytes(self) -> int:
        return sum(len(self.messages[b]) for b in self.blob)


def make_plan(owner: str, count: int, distinct: int, seed: int) -> Plan:
    rng = random.Random(seed)
    messages = make_messages(distinct, owner, rng)
    step = YEAR / count
    blob, flags, dates = [], [], []
    for n in range(count):
        chosen = []
        if rng.random() < 0.30:
            chosen.append("\\Seen")
        if rng.random() < 0.05:
            chosen.append("\\Flagged")
        blob.append(n % distinct)
        flags.append(tuple(sorted(chosen)))
        dates.append(FIRST_DATE + step * n)
    return Plan(messages, blob, flags, dates)


def fill_ours(runtime: Runtime, owner: str, plan: Plan) -> None:
    """The distinct blobs through the store, then one row per message, in one transaction."""
    refs = [runtime.store.put(raw) for raw in plan.messages]
    extra = [_cache_columns(raw) for raw in plan.messages]
    with runtime.db.transaction() as conn:
        inbox = index.get_mailbox(conn, owner, "INBOX")
        if inbox is None:
            raise RuntimeError(f"{owner} has no INBOX")
        rows: list[dict[str, Any]] = []
        for n in range(plan.count):
            b = plan.blob[n]
            rows.append(
                {
                    "mailbox_id": inbox.id,
                    "uid": n + 1,
                    "blob_sha256": refs[b].sha256,
                    "size": refs[b].size,
                    "internal_date": plan.dates[n],
                    "flags": " ".join(plan.flags[n]),
                    "modseq": n + 2,
                    "delivery_key": None,
                    "structure": None,
                    **extra[b],
                }
            )
        conn.execute(insert(mailbox_messages), rows)
        conn.execute(
            update(mailboxes)
            .where(mailboxes.c.id == inbox.id)
            .values(
                uidnext=plan.count + 1,
                highestmodseq=plan.count + 1,
                recent_uid=max(1, plan.count - 9),
            )
        )


def _cache_columns(raw: bytes) -> dict[str, Any]:
    """The index cache APPEND writes with the row (none before imap.cache existed)."""
    try:
        from imap import cache
    except ImportError:
        return {}
    return cache.columns(raw)


def fill_dovecot(dovecot: Any, user: str, plan: Plan) -> None:
    from refservers import Stored

    items = (
        Stored(plan.messages[plan.blob[n]], plan.flags[n], plan.dates[n]) for n in range(plan.count)
    )
    dovecot.append_messages(user, "INBOX", items)


# --------------------------------------------------------------------------- the client


class RawClient:
    """One TLS connection driven by hand: bytes up to the tagged answer, nothing parsed.

    imaplib would parse each of 100,000 lines in Python, the same cost for both
    servers, and hide the difference between them.
    """

    def __init__(self, port: int, ctx: ssl.SSLContext, timeout: float = 3600) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw)
        self._buffer = bytearray(1 << 20)
        self.greeting = self.sock.recv(65536)
        self._tags = (f"r{n}" for n in itertools.count(1))

    def command(self, text: str | bytes, *, check: bool = True) -> bytes:
        """Send one command (LITERAL+ literals included); all up to its tagged answer."""
        tag = next(self._tags)
        line = text.encode() if isinstance(text, str) else text
        self.sock.sendall(tag.encode() + b" " + line + b"\r\n")
        data = bytearray()
        marker = f"{tag} ".encode()
        view = memoryview(self._buffer)
        last = 0
        while True:
            size = self.sock.recv_into(view)
            if not size:
                raise RuntimeError(f"connection closed during {line[:60]!r}")
            data += view[:size]
            if data.endswith(b"\r\n"):
                end = data.rfind(b"\r\n", 0, len(data) - 2)
                last = 0 if end < 0 else end + 2  # where the last line starts
                if data.startswith(marker, last):
                    break
        if check and not data.startswith(f"{tag} OK".encode(), last):
            raise RuntimeError(f"{line[:60]!r}: {bytes(data[last:])!r}")
        return bytes(data)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            self.command("LOGOUT", check=False)
        self.sock.close()


def quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Target:
    """One server as the rounds see it."""

    name: str
    port: int  # implicit TLS
    context: ssl.SSLContext
    user: str
    password: str
    restart: Callable[[], None]

    def login(self) -> RawClient:
        client = RawClient(self.port, self.context)
        client.command(f"LOGIN {quoted(self.user)} {quoted(self.password)}")
        return client


def timed(action: Callable[[], bytes]) -> tuple[float, bytes]:
    start = time.perf_counter()
    answer = action()
    return time.perf_counter() - start, answer


def search_hits(answer: bytes) -> int:
    found = re.search(rb"^\* SEARCH([ 0-9]*)\r$", answer, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no SEARCH response in {answer[:200]!r}")
    return len(found.group(1).split())


def append_messages(count: int, seed: int) -> list[bytes]:
    """``count`` distinct messages of about 5 KB (distinct: our store is content-addressed)."""
    rng = random.Random(seed + 1)
    out = []
    for i in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(640))
        body = "\r\n".join(text[k : k + 72] for k in range(0, len(text), 72))
        head = (
            f"From: Dr Praticien <praticien@hopital.{DEMO_DOMAIN}>\r\n"
            f"To: bench@{DEMO_DOMAIN}\r\n"
            f"Subject: Compte rendu {i}\r\n"
            f"Message-ID: <append.{i}.{secrets.token_hex(6)}@hopital.{DEMO_DOMAIN}>\r\n"
            "Date: Mon, 01 Dec 2025 10:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        )
        out.append((head + body + "\r\n").encode())
    return out


async def _one_session(target: Target, select: str) -> None:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", target.port, ssl=target.context, limit=1 << 20
    )
    try:
        await reader.readline()  # greeting
        steps = (
            ("a", f"LOGIN {quoted(target.user)} {quoted(target.password)}"),
            ("b", f"SELECT {select}"),
            ("c", "LOGOUT"),
        )
        for tag, command in steps:
            writer.write(f"{tag} {command}\r\n".encode())
            while True:
                line = await reader.readline()
                if not line:
                    raise RuntimeError(f"connection closed during {command.split()[0]}")
                if line.startswith(f"{tag} ".encode()):
                    if not line.startswith(f"{tag} OK".encode()):
                        raise RuntimeError(line.decode(errors="replace").strip())
                    break
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def _sessions(target: Target, clients: int, total: int, limit: float) -> tuple[int, float]:
    """LOGIN + SELECT + LOGOUT ``total`` times by ``clients`` workers: (done, seconds)."""
    left = itertools.count()
    done = 0
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + limit

    async def worker() -> None:
        nonlocal done
        while next(left) < total and time.perf_counter() < deadline:
            try:
                await _one_session(target, "INBOX")
                done += 1
            except (OSError, RuntimeError, ssl.SSLError) as exc:
                errors.append(str(exc))

    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    if errors:
        print(f"    {target.name}: {len(errors)} failed sessions, e.g. {errors[0]}")
    return done, elapsed


@dataclass
class Workload:
    count: int
    appends: list[bytes]
    clients: int
    sessions: int
    limit: float


#: Figures, in table order, with their units.
UNITS = {
    "SELECT INBOX, 1st after restart": "s",
    "SELECT INBOX, again": "s",
    "UID FETCH 1:* (FLAGS)": "s",
    "UID FETCH 1:* (ENVELOPE), 1st": "s",
    "UID FETCH 1:* (ENVELOPE), again": "s",
    f"UID SEARCH SUBJECT {SUBJECT_WORD}, 1st": "s",
    f"UID SEARCH SUBJECT {SUBJECT_WORD}, again": "s",
    f"UID SEARCH TEXT {TEXT_WORD}": "s",
    "APPEND 5 KB, 1 connection": "msg/s",
    "LOGIN + SELECT + LOGOUT, 20 clients": "sessions/s",
}

#: SEARCH hits per server and figure, to check both servers answer alike.
HITS: dict[str, dict[str, int]] = {}


def one_round(target: Target, work: Workload) -> Figures:
    target.restart()
    figures: Figures = {}
    client = target.login()
    try:
        for label in ("SELECT INBOX, 1st after restart", "SELECT INBOX, again"):
            seconds, answer = timed(lambda: client.command("SELECT INBOX"))
            exists = re.search(rb"^\* (\d+) EXISTS", answer, re.MULTILINE)
            if exists is None or int(exists.group(1)) != work.count:
                raise RuntimeError(f"{target.name}: SELECT said {answer[:300]!r}")
            figures[label] = seconds
        for label, items in (
            ("UID FETCH 1:* (FLAGS)", "FLAGS"),
            ("UID FETCH 1:* (ENVELOPE), 1st", "ENVELOPE"),
            ("UID FETCH 1:* (ENVELOPE), again", "ENVELOPE"),
        ):
            seconds, answer = timed(functools.partial(client.command, f"UID FETCH 1:* ({items})"))
            responses = answer.count(b" FETCH (")
            if responses != work.count:
                raise RuntimeError(f"{target.name}: {label} gave {responses} responses")
            figures[label] = seconds
        searches = (
            (f"UID SEARCH SUBJECT {SUBJECT_WORD}, 1st", f"SUBJECT {SUBJECT_WORD}"),
            (f"UID SEARCH SUBJECT {SUBJECT_WORD}, again", f"SUBJECT {SUBJECT_WORD}"),
            (f"UID SEARCH TEXT {TEXT_WORD}", f"TEXT {TEXT_WORD}"),
        )
        for label, keys in searches:
            seconds, answer = timed(functools.partial(client.command, f"UID SEARCH {keys}"))
            HITS.setdefault(label, {})[target.name] = search_hits(answer)
            figures[label] = seconds
        client.command("CREATE Appended", check=False)  # exists after the first round
        start = time.perf_counter()
        appended = 0
        for raw in work.appends:
            client.command(b"APPEND Appended {%d+}\r\n" % len(raw) + raw)
            appended += 1
            if time.perf_counter() - start > work.limit:
                break
        figures["APPEND 5 KB, 1 connection"] = appended / (time.perf_counter() - start)
    finally:
        client.close()
    done, seconds = asyncio.run(_sessions(target, work.clients, work.sessions, work.limit))
    figures[f"LOGIN + SELECT + LOGOUT, {work.clients} clients"] = done / seconds
    return figures


# --------------------------------------------------------------------------- the servers


@contextlib.contextmanager
def ours(
    plan: Plan, owner: str, data: Path, config: cfg.Config, runtime: Runtime
) -> Iterator[Target]:
    context = ssl.create_default_context(cafile=str(config.path(Path("pki/ca/root.pem"))))
    context.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
    server: list[Server] = []

    def restart() -> None:
        while server:
            server.pop().stop()
        server.append(Server(data))
        server[0].wait_ready()

    try:
        yield Target("ours", config.listeners.imaps.port, context, owner, PASSWORD, restart)
    finally:
        while server:
            server.pop().stop()


@contextlib.contextmanager
def dovecot(plan: Plan, owner: str, work: Path) -> Iterator[Target]:
    from refservers import DovecotInstance, demo_cert, ensure_installed, free_port

    ensure_installed(["dovecot-imapd"])
    cert, key = demo_cert(work)
    context = client_context()
    with DovecotInstance(
        free_port(),
        free_port(),
        cert,
        key,
        {owner: PASSWORD},
        parent=work,
        password_scheme="ARGON2ID",
        # the default (10 per user and address) would refuse the 20 login clients
        extra_conf="protocol imap {\n  mail_max_userip_connections = 1000\n}\n",
    ) as instance:
        start = time.perf_counter()
        fill_dovecot(instance, owner, plan)
        print(f"fill Dovecot: {plan.count:,} messages in {time.perf_counter() - start:.1f} s")

        def restart() -> None:
            # its cache of header fields goes too: the 1st ENVELOPE/SUBJECT reads the messages
            for path in instance.mail_dir(owner).glob("mailboxes/INBOX/*/dovecot.index.cache"):
                path.unlink()
            instance.restart()

        yield Target("Dovecot", instance.port_imaps, context, owner, PASSWORD, restart)


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages in the INBOX")
    parser.add_argument("--distinct", type=int, default=500, help="distinct messages")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--appends", type=int, default=2000, help="APPENDs per round")
    parser.add_argument("--clients", type=int, default=20, help="concurrent login clients")
    parser.add_argument("--sessions", type=int, default=200, help="login sessions per round")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per rate, at most")
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql+psycopg://user@host/db (default: SQLite in the scratch node)",
    )
    parser.add_argument("--no-reference", action="store_true", help="ours only, no Dovecot")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if min(args.messages, args.distinct, args.rounds, args.appends, args.clients) < 1:
        parser.error("the counts must be positive")

    engine = "PostgreSQL" if args.database_url else "SQLite"
    print(f"IMAP benchmark: {args.messages:,} messages in one INBOX, ours on {engine}")
    work = Workload(
        args.messages,
        append_messages(args.appends, args.seed),
        args.clients,
        args.sessions,
        args.limit,
    )
    with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
        scratch = Path(tmp)
        scratch.chmod(0o755)  # Dovecot's unprivileged processes reach their directory in it
        data = scratch / "node"
        config = init_node(data, args.database_url)
        runtime = Runtime.open(config)
        owner = new_bal(runtime)
        try:
            plan = make_plan(owner, args.messages, min(args.distinct, args.messages), args.seed)
            start = time.perf_counter()
            fill_ours(runtime, owner, plan)
            runtime.db.dispose()
            print(
                f"fill ours: {plan.count:,} messages ({plan.mailbox_bytes / 1e9:.2f} GB) in "
                f"{time.perf_counter() - start:.1f} s"
            )
            with contextlib.ExitStack() as stack:
                mine = stack.enter_context(ours(plan, owner, data, config, runtime))
                theirs = (
                    None
                    if args.no_reference
                    else stack.enter_context(dovecot(plan, owner, scratch))
                )
                mine_figures, their_figures = alternate(
                    args.rounds,
                    lambda: one_round(mine, work),
                    None if theirs is None else (lambda: one_round(theirs, work)),
                )
        finally:
            if args.database_url:  # the database outlives the scratch directory
                with runtime.db.transaction() as conn:
                    remove_bal(conn, owner, purge=True)
            runtime.db.dispose()
    units = {k.replace(", 20 clients", f", {args.clients} clients"): v for k, v in UNITS.items()}
    rows = summarise(mine_figures, their_figures, units)
    table = markdown(rows, "Dovecot")
    print(table)
    hits = "; ".join(
        f"{label.split(',')[0]}: " + ", ".join(f"{k} {v:,}" for k, v in found.items())
        for label, found in HITS.items()
        if "again" not in label
    )
    print(f"SEARCH hits: {hits}")
    if any(len(set(found.values())) > 1 for found in HITS.values()):
        print("WARNING: the servers found different messages")
    if args.no_reference:
        return
    command = "bench/imap_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_section(
        f"IMAP on a {args.messages:,}-message mailbox",
        f"{machine()}; {datetime.now(UTC):%Y-%m-%d}; `{command.strip()}`, "
        f"{args.rounds} alternating rounds, ours on {engine}.\n\n"
        f"The same {args.messages:,} messages ({plan.mailbox_bytes / 1e9:.2f} GB, "
        f"{min(args.distinct, args.messages)} distinct ones repeated, same flags and dates) "
        "in the INBOX of both; Dovecot 2.3 with sdbox storage, filled by `doveadm import`. "
        "Each round restarts the server (Dovecot's `dovecot.index.cache` of the INBOX is "
        "deleted first, so its 1st ENVELOPE and SUBJECT read the message files; ours "
        "fills its index cache as IMAP APPEND does, with the row; a message delivered by "
        "SMTP gets it on its first FETCH or SEARCH), then times to the "
        "tagged OK over implicit TLS with a client that does not parse the answers. "
        f"APPEND: up to {args.appends:,} distinct 5 KB messages in a row on one connection "
        f"(both fsync). Logins: {args.sessions} sessions by {args.clients} concurrent "
        "clients, each a new TLS connection; both check an Argon2id hash. "
        f"SEARCH hits: {hits}.\n\n" + table,
    )


if __name__ == "__main__":
    main()
