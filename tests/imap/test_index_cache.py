# covers: TS-4
"""The IMAP index cache (ENVELOPE as sent, decoded Subject) and the fast FETCH path, over TLS.

The message is the truth and the index a cache: every answer must be the same
whether the cache columns are filled (APPEND, COPY) or still NULL (a local
delivery, a row older than the cache), and a NULL is filled by the first
FETCH that needs it.
"""

from __future__ import annotations

import imaplib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from imap.cache import split_subject
from mssante.schema import mailbox_messages, mailboxes

from harness import ImapNode, start_node

MESSAGE = (
    b"From: Dr Martin <martin@hopital.test>\r\n"
    b'To: Patient <p@demo.mssante.test>, "Lab" <lab@hopital.test>\r\n'
    b"Subject: =?utf-8?q?R=C3=A9sultats_de_biologie?= n\xc2\xb012\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <cr-1@hopital.test>\r\n"
    b"\r\n"
    b"Bonjour,\r\nvoici les r\xc3\xa9sultats.\r\n"
)
OTHER = MESSAGE.replace(b"biologie", b"imagerie").replace(b"cr-1@", b"cr-2@")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapNode]:
    work: Path = tmp_path_factory.mktemp("imap-cache")
    node = start_node(work)
    try:
        yield node
    finally:
        node.stop()


def ok(result: tuple[str, list[Any]]) -> list[Any]:
    typ, data = result
    assert typ == "OK", data
    return data


def cache_of(node: ImapNode, owner: str, uid: int, name: str = "INBOX") -> dict[str, Any]:
    with node.runtime.db.read() as conn:
        row = conn.execute(
            select(
                mailbox_messages.c.structure,
                mailbox_messages.c.envelope,
                mailbox_messages.c.subject,
            )
            .select_from(mailbox_messages.join(mailboxes))
            .where(
                mailboxes.c.owner == owner.lower(),
                mailboxes.c.name == name,
                mailbox_messages.c.uid == uid,
            )
        ).one()
    return dict(row._mapping)


def wait_cached(node: ImapNode, owner: str, uid: int) -> dict[str, Any]:
    """The cache is written in the background after the FETCH answer: wait for the commit."""
    deadline = time.monotonic() + 10
    while True:
        found = cache_of(node, owner, uid)
        if found["envelope"] is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def raw_lines(client: imaplib.IMAP4, command: str) -> list[bytes]:
    """Send a command by hand; the untagged lines, exactly as the server wrote them."""
    tag = client._new_tag()  # type: ignore[attr-defined]
    client.send(tag + b" " + command.encode() + b"\r\n")
    lines = []
    while True:
        line = client.readline()
        if line.startswith(tag + b" "):
            assert line.startswith(tag + b" OK"), line
            return lines
        lines.append(line)


ENVELOPE = (
    b'ENVELOPE ("Mon, 23 Nov 2026 10:00:00 +0100" '
    b'"=?utf-8?q?R=C3=A9sultats_de_biologie?= n\xc2\xb012" '
)


def test_a_delivered_message_is_parsed_once_and_its_cache_filled(node: ImapNode) -> None:
    owner = node.new_user()
    uid = node.deliver(owner, MESSAGE)
    assert cache_of(node, owner, uid) == {"structure": None, "envelope": None, "subject": None}
    client = node.login(owner)
    try:
        ok(client.select("INBOX"))
        first = raw_lines(client, "UID FETCH 1:* (ENVELOPE)")
        cached = wait_cached(node, owner, uid)
        assert cached["structure"] is not None
        assert split_subject(cached["subject"]) == ["Résultats de biologie n°12"]
        again = raw_lines(client, "UID FETCH 1:* (ENVELOPE)")
        # the same bytes from the message and from the cache; the 8-bit subject as a literal
        assert first == again
        assert first[0].startswith(b"* 1 FETCH (UID %d ENVELOPE (" % uid)
        whole = b"".join(first)
        assert b"{" in whole and b"=A9sultats_de_biologie?= n\xc2\xb012" in whole
        assert b'(("Dr Martin" NIL "martin" "hopital.test"))' in whole
        assert b'(("Patient" NIL "p" "demo.mssante.test")("Lab" NIL "lab" "hopital.test"))' in whole
        assert whole.rstrip().endswith(b'NIL "<cr-1@hopital.test>"))')
        # the general path (ENVELOPE with another item) says the same
        typ, data = client.uid("FETCH", str(uid), "(ENVELOPE RFC822.SIZE)")
        assert typ == "OK"
        general = data[0][0] + data[0][1] + data[1] if isinstance(data[0], tuple) else data[0]
        assert b"RFC822.SIZE %d" % len(MESSAGE) in general
        assert b'"<cr-1@hopital.test>"' in general
    finally:
        client.logout()


def test_append_and_copy_write_the_cache_with_the_row(node: ImapNode) -> None:
    owner = node.new_user()
    client = node.login(owner)
    try:
        data = ok(client.append("INBOX", "(\\Seen)", None, OTHER))
        uid = int(re.search(rb"APPENDUID \d+ (\d+)", data[0]).group(1))  # type: ignore[union-attr]
        cached = cache_of(node, owner, uid)
        assert cached["structure"] is not None and cached["envelope"] is not None
        assert split_subject(cached["subject"]) == ["Résultats de imagerie n°12"]
        ok(client.select("INBOX"))
        ok(client.uid("COPY", str(uid), "Archive"))
        copied = cache_of(node, owner, 1, "Archive")
        assert copied == cached
        ok(client.select("Archive"))
        lines = raw_lines(client, "FETCH 1 (ENVELOPE)")
        assert b"".join(lines).startswith(b"* 1 FETCH (ENVELOPE (")
        assert b"imagerie" in b"".join(lines)
    finally:
        client.logout()


def test_search_subject_reads_the_cache_and_agrees_with_the_message(node: ImapNode) -> None:
    owner = node.new_user()
    first = node.deliver(owner, MESSAGE)
    second = node.deliver(owner, OTHER)
    client = node.login(owner)
    try:
        ok(client.select("INBOX"))
        # no cache yet: the messages are read
        assert ok(client.uid("SEARCH", "SUBJECT", "biologie")) == [str(first).encode()]
        ok(client.uid("FETCH", "1:*", "(ENVELOPE)"))
        assert wait_cached(node, owner, second)["subject"] is not None
        assert ok(client.uid("SEARCH", "SUBJECT", "biologie")) == [str(first).encode()]
        client.literal = "résultats".encode()  # type: ignore[attr-defined]
        found = ok(client.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT"))
        assert found == [f"{first} {second}".encode()]
        # the cache, not the message, answers now: change it and the answer follows
        with node.runtime.db.transaction() as conn:
            conn.execute(
                update(mailbox_messages)
                .where(mailbox_messages.c.uid == second, mailbox_messages.c.blob_sha256 != "")
                .where(
                    mailbox_messages.c.mailbox_id
                    == select(mailboxes.c.id)
                    .where(mailboxes.c.owner == owner.lower(), mailboxes.c.name == "INBOX")
                    .scalar_subquery()
                )
                .values(subject="\nbiologie aussi")
            )
        assert ok(client.uid("SEARCH", "SUBJECT", "biologie")) == [f"{first} {second}".encode()]
    finally:
        client.logout()


def test_fast_fetch_of_flags_uid_and_modseq(node: ImapNode) -> None:
    owner = node.new_user()
    uids = [
        node.deliver(owner, MESSAGE, flags=flags)
        for flags in ((), ("\\Seen",), ("\\Seen", "\\Flagged"), ("$Label",), ())
    ]
    client = node.login(owner)
    try:
        ok(client.select("INBOX"))
        lines = raw_lines(client, "FETCH 2,4:5 (FLAGS)")
        assert lines == [
            b"* 2 FETCH (FLAGS (\\Recent \\Seen))\r\n",
            b"* 4 FETCH (FLAGS (\\Recent $Label))\r\n",
            b"* 5 FETCH (FLAGS (\\Recent))\r\n",
        ]
        lines = raw_lines(client, "UID FETCH 1:* (FLAGS)")
        assert [re.sub(rb"\d+ FETCH \(UID \d+ ", b"", line) for line in lines] == [
            b"* FLAGS (\\Recent))\r\n",
            b"* FLAGS (\\Recent \\Seen))\r\n",
            b"* FLAGS (\\Flagged \\Recent \\Seen))\r\n",
            b"* FLAGS (\\Recent $Label))\r\n",
            b"* FLAGS (\\Recent))\r\n",
        ]
        assert [int(re.search(rb"UID (\d+)", x).group(1)) for x in lines] == uids  # type: ignore[union-attr]
        ok(client.uid("STORE", str(uids[0]), "+FLAGS.SILENT", "(\\Answered)"))
        lines = raw_lines(client, f"UID FETCH {uids[0]}:{uids[1]} (FLAGS MODSEQ)")
        assert lines[0].startswith(b"* OK [HIGHESTMODSEQ ")  # CONDSTORE turned on by MODSEQ
        lines = lines[1:]
        assert len(lines) == 2
        assert re.fullmatch(
            rb"\* 1 FETCH \(UID %d FLAGS \(\\Answered \\Recent\) MODSEQ \(\d+\)\)\r\n" % uids[0],
            lines[0],
        )
        modseqs = [int(re.search(rb"MODSEQ \((\d+)\)", x).group(1)) for x in lines]  # type: ignore[union-attr]
        assert modseqs[0] > modseqs[1]
        # a UID that names no message, and an empty answer
        assert raw_lines(client, "UID FETCH 999999 (FLAGS)") == []
    finally:
        client.logout()


def fetch_flags(client: imaplib.IMAP4) -> list[bytes]:
    return [re.sub(rb"^\* \d+ FETCH ", b"", x) for x in raw_lines(client, "UID FETCH 1:* (FLAGS)")]


def without_recent(lines: list[bytes]) -> list[tuple[bytes, set[bytes]]]:
    out = []
    for line in lines:
        found = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)
        assert found is not None
        out.append((found.group(1), set(found.group(2).split()) - {b"\\Recent"}))
    return out


def test_select_starts_from_the_shared_state_and_sees_every_change(node: ImapNode) -> None:
    owner = node.new_user()
    for n in range(5):
        node.deliver(owner, MESSAGE, flags=("\\Seen",) if n == 2 else ())
    first, second, third = node.login(owner), node.login(owner), node.login(owner)
    try:
        ok(first.select("INBOX"))  # loads the state; the others start from it
        ok(second.select("INBOX"))
        ok(second.store("1", "+FLAGS.SILENT", "(\\Deleted)"))
        ok(second.expunge())
        ok(second.store("1", "+FLAGS.SILENT", "(\\Flagged)"))  # UID 2
        node.deliver(owner, OTHER, flags=("$Label",))  # UID 6, by "another writer"
        assert ok(third.select("INBOX"))[0] == b"5"
        seen_by_third = fetch_flags(third)
        assert seen_by_third == [
            b"(UID 2 FLAGS (\\Flagged))\r\n",
            b"(UID 3 FLAGS (\\Seen))\r\n",
            b"(UID 4 FLAGS ())\r\n",
            b"(UID 5 FLAGS ())\r\n",
            b"(UID 6 FLAGS (\\Recent $Label))\r\n",
        ]
        # the first session catches up by its own sync, and its copy-on-write
        # changes do not leak into the state a later SELECT starts from
        ok(first.noop())
        assert without_recent(fetch_flags(first)) == without_recent(seen_by_third)
        ok(first.store("1", "+FLAGS.SILENT", "(\\Answered)"))
        ok(third.close())
        assert ok(third.select("INBOX"))[0] == b"5"
        assert fetch_flags(third)[0] == b"(UID 2 FLAGS (\\Answered \\Flagged))\r\n"
        assert ok(second.select("INBOX"))[0] == b"5"
        assert ok(second.uid("SEARCH", "UNSEEN")) == [b"2 4 5 6"]
    finally:
        for client in (first, second, third):
            client.logout()


def test_search_subject_with_other_keys_gives_the_same_answer_cached_or_not(
    node: ImapNode,
) -> None:
    owner = node.new_user()
    for n in range(6):
        node.deliver(owner, OTHER if n % 2 else MESSAGE, flags=("\\Seen",) if n < 3 else ())
    client = node.login(owner)
    queries = [
        ("SUBJECT", "biologie"),
        ("SUBJECT", "biologie", "SEEN"),
        ("SEEN", "SUBJECT", "BIOLOGIE", "SUBJECT", "résultats"),
        ("NOT", "SUBJECT", "biologie"),
        ("OR", "SUBJECT", "biologie", "FLAGGED"),
        ("SUBJECT", '""'),
        ("SUBJECT", "absent"),
        ("HEADER", "subject", "imagerie"),
    ]

    def answers() -> list[list[Any]]:
        out = []
        for query in queries:
            if any(not q.isascii() for q in query):
                client.literal = query[-1].encode()  # type: ignore[attr-defined]
                out.append(ok(client.uid("SEARCH", "CHARSET", "UTF-8", *query[:-1])))
            else:
                out.append(ok(client.uid("SEARCH", *query)))
        return out

    try:
        ok(client.select("INBOX"))
        before = answers()  # nothing cached: every message is read
        ok(client.uid("FETCH", "1:4", "(ENVELOPE)"))  # caches four of the six
        assert wait_cached(node, owner, 4)["subject"] is not None
        assert cache_of(node, owner, 5)["subject"] is None
        assert answers() == before
        assert before[:2] == [[b"1 3 5"], [b"1 3"]]
        assert before[3] == [b"2 4 6"] and before[6] == [b""] and before[7] == [b"2 4 6"]
    finally:
        client.logout()


def test_a_rare_subject_is_found_among_many_cached_ones(node: ImapNode) -> None:
    owner = node.new_user()
    uids = [node.deliver(owner, OTHER) for _ in range(11)]
    uids.insert(7, node.deliver(owner, MESSAGE))
    client = node.login(owner)
    try:
        ok(client.select("INBOX"))
        ok(client.uid("FETCH", "1:*", "(ENVELOPE)"))
        assert wait_cached(node, owner, max(uids))["subject"] is not None
        # one candidate of twelve: the other facts are read for it alone
        assert ok(client.uid("SEARCH", "SUBJECT", "biologie")) == [str(uids[7]).encode()]
        assert ok(client.search(None, "SUBJECT", "biologie", "UNSEEN")) == [b"12"]
        assert ok(client.search(None, "SUBJECT", "biologie", "SEEN")) == [b""]
        assert ok(client.search(None, "SUBJECT", "biologie", "LARGER", "10")) == [b"12"]
    finally:
        client.logout()


def test_body_search_uses_the_cached_structure_and_survives_a_damaged_one(
    node: ImapNode,
) -> None:
    owner = node.new_user()
    multipart = (
        b"From: a@hopital.test\r\nSubject: pieces\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"glyc=C3=A9mie normale, contr=C3=B4le dans une semaine\r\n"
        b"--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQK\r\n--b1--\r\n"
    )
    uids = [node.deliver(owner, raw) for raw in (MESSAGE, multipart, OTHER)]
    client = node.login(owner)
    queries = [("BODY", "voici"), ("TEXT", "pieces"), ("NOT", "BODY", "normale")]

    def answers() -> list[list[Any]]:
        out = [ok(client.uid("SEARCH", *q)) for q in queries]
        client.literal = "GLYCÉMIE".encode()  # type: ignore[attr-defined]
        out.append(ok(client.uid("SEARCH", "CHARSET", "UTF-8", "BODY")))
        return out

    try:
        ok(client.select("INBOX"))
        before = answers()  # nothing cached: each message is parsed
        assert before == [
            [f"{uids[0]} {uids[2]}".encode()],
            [str(uids[1]).encode()],
            [f"{uids[0]} {uids[2]}".encode()],
            [str(uids[1]).encode()],
        ]
        ok(client.uid("FETCH", "1:*", "(ENVELOPE)"))
        assert wait_cached(node, owner, uids[2])["structure"] is not None
        assert answers() == before  # the cached structure stands in for the parse
        with node.runtime.db.transaction() as conn:  # a damaged entry: parsed again
            conn.execute(
                update(mailbox_messages)
                .where(
                    mailbox_messages.c.mailbox_id
                    == select(mailboxes.c.id)
                    .where(mailboxes.c.owner == owner.lower(), mailboxes.c.name == "INBOX")
                    .scalar_subquery()
                )
                .values(structure='{"o": [0, 1, 2]}')
            )
        assert answers() == before
    finally:
        client.logout()
