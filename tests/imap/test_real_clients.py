# covers: TS-4
"""Real IMAP clients against a real node: Debian's mbsync (isync) and neomutt.

* mbsync: a full two-way sync of a 1,000-message INBOX into a Maildir, flags
  both ways, moves both ways (a Maildir file moved to Archive, a server-side
  ``UID MOVE``), a deletion, and a last run that transfers nothing.
* neomutt, driven headless: it lists the INBOX (copies every message, and the
  flagged ones, to local mboxes with ``BODY.PEEK``) and reads one message (a
  non-PEEK ``BODY[]`` fetch, after which the server shows it ``\\Seen``).

Both clients draw progress counters or a full screen only on a terminal, so
they run under util-linux ``script``, which gives them a pseudo-terminal.
"""

from __future__ import annotations

import base64
import imaplib
import mailbox
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mssante import index

from harness import PASSWORD, ImapNode, start_node

pytestmark = pytest.mark.slow

MBSYNC = shutil.which("mbsync")
NEOMUTT = shutil.which("neomutt")
SCRIPT = shutil.which("script")
CLIENT_TIMEOUT = 300  # seconds; only a hung client comes near it

MESSAGES = 1000
FLAGGED = frozenset(range(0, MESSAGES, 100))  # \Flagged on the server before the first sync
ANSWERED = frozenset(range(7, MESSAGES, 250))  # \Seen \Answered on the server
MARKED_SEEN = range(10, 20)  # marked read in the Maildir
MOVED_LOCALLY = range(20, 25)  # moved INBOX -> Archive in the Maildir
DELETED_LOCALLY = 25  # deleted from the Maildir
FLAGGED_ON_SERVER = 30  # \Flagged by another client after the first sync
MOVED_ON_SERVER = 31  # UID MOVE INBOX -> Archive by another client after the first sync

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*<([^>]+)>", re.IGNORECASE | re.MULTILINE)
_COUNTERS = re.compile(r"C: \d+/\d+ .*")
_SENT = re.compile(r"mutt_socket_write\S* \d+> (\S+ .*)")  # an IMAP command in neomutt's log
_CREDENTIALS = re.compile(r"^(\S+ (?:LOGIN|AUTHENTICATE \S+)) .*")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapNode]:
    node = start_node(tmp_path_factory.mktemp("clients"))
    try:
        yield node
    finally:
        node.stop()


def ok(result: tuple[str, list]) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def need(*tools: tuple[str | None, str]) -> None:
    for path, package in tools:
        if path is None:
            pytest.skip(f"{package} is not installed (apt-get install {package})")


# ------------------------------------------------------------------ messages


def message(i: int, *, subject: str | None = None, body: str | None = None) -> bytes:
    subject = subject or f"Compte rendu de consultation n°{i}"
    body = body or (
        f"Bonjour,\n\nVeuillez trouver ci-dessous le compte rendu de la consultation n°{i}.\n"
        "Tension artérielle 12/8, examen clinique sans particularité.\n\n"
        "Bien confraternellement,\nDr Martin\n"
    )
    head = (
        "From: Dr Martin <martin@hopital.test>\n"
        "To: Patient <patient@demo.mssante.test>\n"
        f"Subject: =?UTF-8?B?{_b64(subject)}?=\n"
        "Date: Mon, 23 Nov 2026 10:00:00 +0100\n"
        f"Message-ID: <{msgid(i)}>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
        "Content-Transfer-Encoding: 8bit\n"
    )
    return (head + "\n" + body).replace("\n", "\r\n").encode()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def msgid(i: int) -> str:
    return f"cr-{i:04d}@hopital.test"


def deliver_many(
    node: ImapNode, owner: str, messages: Sequence[tuple[bytes, Sequence[str]]]
) -> None:
    """What ``node.deliver`` does, for many messages into the INBOX at once.

    ``node.deliver`` costs about 27 ms a message on a plain disk (an fsync of
    the blob, of its directory, and a ``synchronous=FULL`` SQLite commit,
    each): half a minute for 1,000 before mbsync even starts. Here the same
    store and index calls write the blobs in parallel and append the rows in
    one transaction, in about 3 s.
    """
    with ThreadPoolExecutor(8) as pool:
        blobs = list(pool.map(node.runtime.store.put, [raw for raw, _ in messages]))
    now = datetime.now(UTC)
    with node.runtime.db.transaction() as conn:
        index.ensure_default_mailboxes(conn, owner.lower(), now=now)
        box = index.get_mailbox(conn, owner.lower(), "INBOX")
        assert box is not None
        for blob, (_, flags) in zip(blobs, messages, strict=True):
            index.append(conn, box, blob, internal_date=now, flags=flags)
    node.runtime.mailbox_events.publish(box.id)


def server_view(client: imaplib.IMAP4, name: str) -> dict[str, set[str]]:
    """Message-ID -> flags of every message in a folder, read without changing anything."""
    ok(client.select(name, readonly=True))
    data = ok(client.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])"))
    records: list[bytes] = []
    for item in data:
        if isinstance(item, tuple):
            records.append(item[0] + b"\r\n" + item[1])
        elif item and records:
            records[-1] += item  # what follows the literal (FLAGS may come after it)
    view: dict[str, set[str]] = {}
    for record in records:
        found = _MESSAGE_ID.search(record)
        flags = re.search(rb"FLAGS \(([^)]*)\)", record)
        assert found is not None and flags is not None, record
        view[found.group(1).decode()] = set(flags.group(1).decode().split())
    return view


# ------------------------------------------------------------------ running a client


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float
    commands: list[str] = field(default_factory=list)  # what neomutt sent, from its log


def run_in_pty(command: Sequence[str], *, env: dict[str, str] | None = None) -> Run:
    """Run a command on a pseudo-terminal (util-linux ``script``), stdin empty.

    On a hang the whole process group (script and the client) is killed and
    the test fails with what the client had printed.
    """
    assert SCRIPT is not None
    started = time.monotonic()
    proc = subprocess.Popen(
        [SCRIPT, "-qec", shlex.join(command), "/dev/null"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=CLIENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{command[0]} hung for {CLIENT_TIMEOUT}s:\n{out.decode(errors='replace')}")
    text = out.decode(errors="replace").replace("\r\n", "\n")
    return Run(proc.returncode, text, time.monotonic() - started)


# ------------------------------------------------------------------ mbsync


def isync_version() -> tuple[int, ...]:
    assert MBSYNC is not None
    out = subprocess.run([MBSYNC, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    assert found, out
    return tuple(int(x) for x in found.groups(default="0"))


def mbsync_config(node: ImapNode, user: str, maildir: Path) -> str:
    # isync 1.5 renamed SSLType to TLSType (the old name is deprecated).
    tls = "TLSType" if isync_version() >= (1, 5) else "SSLType"
    # "localhost", not 127.0.0.1: isync checks the certificate's DNS names and
    # ignores its IP addresses; the node's certificate names localhost.
    return f"""\
IMAPAccount node
Host localhost
Port {node.ports["imaps"]}
User {user}
Pass "{PASSWORD}"
{tls} IMAPS
CertificateFile {node.ca_file}
AuthMechs LOGIN

IMAPStore node
Account node

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel node
Far :node:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
"""


def mbsync(config: Path) -> Run:
    assert MBSYNC is not None
    run = run_in_pty([MBSYNC, "-c", str(config), "-a", "-V"])
    assert run.returncode == 0, f"mbsync exited {run.returncode}:\n{run.output}"
    return run


def final_counters(run: Run) -> tuple[str, list[int]]:
    """The last progress line and the numbers of messages it says were handled.

    isync 1.4 ends with ``C: 1/1  B: 6/6  F: +0/0 *0/0 #0/0  N: +0/0 *0/0 #0/0``
    (channels, boxes; far then near side: added, flags updated, trashed;
    1.5 adds ``-`` for expunged): each ``done/total`` after ``B:``.
    """
    lines = _COUNTERS.findall(run.output.replace("\r", "\n"))
    assert lines, f"no progress counters in mbsync's output:\n{run.output}"
    last = lines[-1].strip()
    messages = last.split("B:", 1)[1]
    done = [int(n) for n in re.findall(r"[-+*#](\d+)/\d+", messages)]
    assert done, last
    return last, done


def maildir(box: Path) -> dict[str, Path]:
    """Message-ID -> file of every message in a Maildir folder."""
    found: dict[str, Path] = {}
    for sub in ("new", "cur"):
        for path in (box / sub).iterdir():
            match = _MESSAGE_ID.search(path.read_bytes())
            assert match is not None, path
            key = match.group(1).decode()
            assert key not in found, f"{key} twice in {box}"
            found[key] = path
    return found


def maildir_flags(path: Path) -> str:
    return path.name.partition(":2,")[2]


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.parent.name in ("cur", "new")}


@pytest.mark.skipif(MBSYNC is None, reason="mbsync is not installed (apt-get install isync)")
def test_mbsync_two_way_sync_of_1000_messages(node: ImapNode, tmp_path: Path) -> None:
    need((SCRIPT, "bsdutils"))
    user = node.new_user("mbsync")
    batch = []
    for i in range(MESSAGES):
        flags = ["\\Flagged"] if i in FLAGGED else []
        if i in ANSWERED:
            flags += ["\\Seen", "\\Answered"]
        batch.append((message(i), flags))
    deliver_many(node, user, batch)
    mail = tmp_path / "Mail"
    mail.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(mbsync_config(node, user, mail))
    inbox, archive = mail / "INBOX", mail / "Archive"

    # 1. Everything comes down, with the flags the server had.
    first = mbsync(config)
    local = maildir(inbox)
    assert len(local) == MESSAGES, first.output
    assert set(local) == {msgid(i) for i in range(MESSAGES)}
    for i in range(MESSAGES):
        expected = ("F" if i in FLAGGED else "") + ("RS" if i in ANSWERED else "")
        path = local[msgid(i)]
        assert maildir_flags(path) == expected, path.name
        assert path.parent.name == ("cur" if i in ANSWERED else "new"), path
    for name in ("Archive", "Drafts", "Junk", "Sent", "Trash"):
        assert (mail / name / "cur").is_dir(), f"{name} not created: {first.output}"
    sample = local[msgid(MESSAGES - 1)].read_bytes()
    assert "n°999".encode() in sample and b"Dr Martin" in sample

    # 2. Changes on both sides.
    for i in MARKED_SEEN:  # read in the mail client
        path = local[msgid(i)]
        base, _, flags = path.name.partition(":2,")
        path.rename(inbox / "cur" / f"{base}:2,{''.join(sorted(flags + 'S'))}")
    for i in MOVED_LOCALLY:  # moved as a Maildir MUA does: a new file name, without ",U="
        path = local[msgid(i)]
        (archive / "cur" / f"moved-{i}.localhost:2,{maildir_flags(path)}").write_bytes(
            path.read_bytes()
        )
        path.unlink()
    local[msgid(DELETED_LOCALLY)].unlink()
    other = node.login(user, tls="implicit")  # another client of the same mailbox
    ok(other.select("INBOX"))
    ok(other.uid("STORE", str(FLAGGED_ON_SERVER + 1), "+FLAGS.SILENT", "(\\Flagged)"))
    ok(other.uid("MOVE", str(MOVED_ON_SERVER + 1), "Archive"))
    other.logout()
    node.deliver(user, message(MESSAGES, subject="Résultats de biologie"))

    second = mbsync(config)

    client = node.login(user, tls="implicit")
    on_server = server_view(client, "INBOX")
    archived = server_view(client, "Archive")
    client.logout()
    report = second.output
    for i in MARKED_SEEN:
        assert "\\Seen" in on_server[msgid(i)], (i, report)
    for i in (*MOVED_LOCALLY, DELETED_LOCALLY, MOVED_ON_SERVER):
        assert msgid(i) not in on_server, (i, report)
    assert set(archived) == {msgid(i) for i in (*MOVED_LOCALLY, MOVED_ON_SERVER)}, report
    # Less the moves and the deletion, plus the message delivered between the syncs.
    assert len(on_server) == MESSAGES - len(MOVED_LOCALLY) - 1 - 1 + 1, report
    for i in FLAGGED:
        assert "\\Flagged" in on_server[msgid(i)], i
    assert not any("\\Deleted" in flags for flags in on_server.values()), "left unexpunged"

    local = maildir(inbox)
    assert set(local) == set(on_server), report
    assert "F" in maildir_flags(local[msgid(FLAGGED_ON_SERVER)])
    assert msgid(MESSAGES) in local, "the message delivered after the first sync came down"
    assert set(maildir(archive)) == set(archived), report
    for i in MARKED_SEEN:
        assert "S" in maildir_flags(local[msgid(i)])

    # 3. Nothing left to do.
    before = snapshot(mail)
    third = mbsync(config)
    line, done = final_counters(third)
    assert all(n == 0 for n in done), f"the third sync still transferred: {line}\n{third.output}"
    assert snapshot(mail) == before, third.output
    client = node.login(user, tls="implicit")
    assert server_view(client, "INBOX") == on_server
    client.logout()
    print(
        f"mbsync: first sync of {MESSAGES} messages {first.seconds:.1f}s, "
        f"second {second.seconds:.1f}s ({final_counters(second)[0]}), "
        f"third {third.seconds:.1f}s ({line})"
    )


# ------------------------------------------------------------------ neomutt

NEOMUTT_MESSAGES = {
    1: ("Compte rendu opératoire", "Intervention du 20 novembre sans complication.\n"),
    2: ("Radio thorax", "Pas d'anomalie pleuro-parenchymateuse décelable.\n"),
    3: ("Résultats de biologie", "Hémoglobine 13,5 g/dl, plaquettes 250 G/l.\n"),
    4: ("Ordonnance", "Paracétamol 1 g, trois fois par jour pendant cinq jours.\n"),
}
NEOMUTT_FLAGGED = 3
NEOMUTT_READ = 2  # "Radio thorax"


def muttrc(node: ImapNode, user: str, *, starttls: bool, peek: bool, keys: str) -> str:
    """A muttrc for a batch run: the INBOX over TLS (implicit or STARTTLS), ``keys`` pushed."""
    quoted = PASSWORD.replace("\\", "\\\\").replace('"', '\\"')
    if starttls:
        url = f"imap://127.0.0.1:{node.ports['imap']}"
    else:
        url = f"imaps://127.0.0.1:{node.ports['imaps']}"
    lines = [
        f'set folder="{url}/"',
        'set spoolfile="+INBOX"',
        f'set imap_user="{user}"',
        f'set imap_pass="{quoted}"',
        # The chain is verified against our CA; the certificate names the node, not 127.0.0.1.
        f'set ssl_ca_certificates_file="{node.ca_file}"'
        if neomutt_has("ssl_ca_certificates_file")
        else f'set certificate_file="{node.ca_file}"',
        "set ssl_verify_host=no",
        "set ssl_force_tls=yes",  # STARTTLS on imap://, or no connection at all
        'set header_cache=""',
        'set message_cachedir=""',
        "set mail_check=0",
        f"set imap_peek={'yes' if peek else 'no'}",
        "set confirmcreate=no",
        "set quit=yes",
        "set wait_key=no",
        f'push "{keys}"',
    ]
    return "\n".join(lines) + "\n"


def neomutt_has(option: str) -> bool:
    """Whether this build knows ``option`` (GnuTLS builds have the CA file option)."""
    assert NEOMUTT is not None
    probe = subprocess.run([NEOMUTT, "-n", "-F", "/dev/null", "-Q", option], capture_output=True)
    return probe.returncode == 0


def neomutt(config: Path, work: Path) -> Run:
    assert NEOMUTT is not None
    log = work / f"{config.stem}.log"
    run = run_in_pty(
        [NEOMUTT, "-n", "-F", str(config), "-d", "2", "-l", str(log)],
        env={"TERM": "vt100", "HOME": str(work), "LC_ALL": "C.UTF-8"},
    )
    commands = [
        _CREDENTIALS.sub(r"\1 <credentials>", found.group(1))
        for p in sorted(work.glob(f"{log.name}*"))
        for found in _SENT.finditer(p.read_text(errors="replace"))
    ]
    run.output += "\n--- IMAP commands sent:\n" + "\n".join(commands)
    assert run.returncode == 0, f"neomutt exited {run.returncode}:\n{run.output}"
    assert commands, f"no IMAP command found in neomutt's log {log}:\n{run.output}"
    run.commands = commands
    return run


@pytest.mark.skipif(NEOMUTT is None, reason="neomutt is not installed (apt-get install neomutt)")
def test_neomutt_lists_and_reads(node: ImapNode, tmp_path: Path) -> None:
    need((SCRIPT, "bsdutils"))
    user = node.new_user("neomutt")
    raws = {}
    for i, (subject, body) in NEOMUTT_MESSAGES.items():
        raws[i] = message(i, subject=subject, body=body)
        flags = ["\\Flagged"] if i == NEOMUTT_FLAGGED else []
        node.deliver(user, raws[i], flags=flags)

    # List: copy the flagged messages, then all of them, to local mboxes (BODY.PEEK).
    flagged, listed = tmp_path / "flagged.mbox", tmp_path / "listed.mbox"
    config = tmp_path / "list.muttrc"
    config.write_text(
        muttrc(
            node,
            user,
            starttls=False,
            peek=True,
            keys=(
                f"<tag-pattern>~F<enter><tag-prefix><copy-message>{flagged}<enter>"
                "<untag-pattern>~A<enter>"
                f"<tag-pattern>~A<enter><tag-prefix><copy-message>{listed}<enter><quit>"
            ),
        )
    )
    run = neomutt(config, tmp_path)
    assert listed.exists() and flagged.exists(), run.output
    copies = {m["Message-ID"].strip("<>"): m for m in mailbox.mbox(listed)}
    assert set(copies) == {msgid(i) for i in NEOMUTT_MESSAGES}, run.output
    for i, (_, body) in NEOMUTT_MESSAGES.items():
        assert copies[msgid(i)].get_payload(decode=True).decode() == body
    assert [m["Message-ID"].strip("<>") for m in mailbox.mbox(flagged)] == [
        msgid(NEOMUTT_FLAGGED)
    ], run.output
    client = node.login(user, tls="implicit")
    seen = {k for k, flags in server_view(client, "INBOX").items() if "\\Seen" in flags}
    assert seen == set(), f"a BODY.PEEK copy marked messages read: {seen}\n{run.output}"

    # Read, over STARTTLS: find one message by subject and pipe it out (a non-PEEK fetch).
    piped = tmp_path / "read.eml"
    config = tmp_path / "read.muttrc"
    config.write_text(
        muttrc(
            node,
            user,
            starttls=True,
            peek=False,
            keys=f"<search>~s thorax<enter><pipe-entry>cat > {piped}<enter><quit>",
        )
    )
    run = neomutt(config, tmp_path)
    assert piped.exists(), run.output
    assert piped.read_bytes() == raws[NEOMUTT_READ].replace(b"\r\n", b"\n"), run.output
    assert any(c.split()[1:] == ["STARTTLS"] for c in run.commands), run.output
    # The server set \Seen itself, on the body FETCH: neomutt stored no flag.
    assert any("FETCH" in c and "BODY[]" in c for c in run.commands), run.output
    assert not any("STORE" in c and "\\Seen" in c for c in run.commands), run.output
    view = server_view(client, "INBOX")
    client.logout()
    seen = {k for k, flags in view.items() if "\\Seen" in flags}
    assert seen == {msgid(NEOMUTT_READ)}, f"the body FETCH should set \\Seen: {view}\n{run.output}"
    assert "\\Flagged" in view[msgid(NEOMUTT_FLAGGED)]
