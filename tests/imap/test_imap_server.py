# covers: TS-4
"""The IMAP server over real TCP and TLS with Python's imaplib: states, commands, errors."""

from __future__ import annotations

import imaplib
import json
import re
import socket
import ssl
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from jwt.algorithms import RSAAlgorithm

from annuaire.bal import bind, certificate_fingerprint
from certs import CertificateAuthority
from mssante import audit

from harness import DOMAIN, PASSWORD, ImapNode, start_node

MESSAGE = (
    b"From: Dr Martin <martin@hopital.test>\r\n"
    b"To: Patient <p@demo.mssante.test>\r\n"
    b"Subject: compte rendu\r\n"
    b"Date: Mon, 23 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <cr-1@hopital.test>\r\n"
    b"\r\n"
    b"Bonjour,\r\nvoici le compte rendu.\r\n"
)


ISSUER = "https://psc.example.test/auth/realms/esante-wallet"
AUDIENCE = "mssante-operator-demo"
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(sub: str) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300}
    return jwt.encode(body, SIGNER, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapNode]:
    work: Path = tmp_path_factory.mktemp("imap")
    jwks = work / "jwks.json"
    key = RSAAlgorithm.to_jwk(SIGNER.public_key(), as_dict=True)
    jwks.write_text(json.dumps({"keys": [{**key, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    node = start_node(
        work,
        extra_config=(
            "[imap]\nquota_bytes = 200000\n"
            f'[smtp]\noauth_issuer = "{ISSUER}"\noauth_audience = "{AUDIENCE}"\n'
            f'oauth_jwks_file = "{jwks}"\n'
        ),
    )
    try:
        yield node
    finally:
        node.stop()


def ok(result: tuple[str, list]) -> list:
    typ, data = result
    assert typ == "OK", data
    return data


def raw_exchange(port: int, lines: list[bytes], context: ssl.SSLContext | None = None) -> bytes:
    """Send lines (on implicit TLS with a context); everything the server said.

    imaplib refuses to send a command in a state it thinks wrong, so the
    server's own state checks are reached with raw lines.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        s = context.wrap_socket(plain) if context is not None else plain
        out = s.recv(4096)
        for line in lines:
            s.sendall(line)
            out += _read_until_tagged(s, line.split(b" ", 1)[0])
        return out


def _read_until_tagged(s: socket.socket, tag: bytes) -> bytes:
    data = b""
    while not re.search(rb"(^|\r\n)" + re.escape(tag) + rb" (OK|NO|BAD)[^\r\n]*\r\n", data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


# ------------------------------------------------------------------ TLS and login


def test_plaintext_port_offers_starttls_and_refuses_login(node: ImapNode) -> None:
    out = raw_exchange(node.ports["imap"], [b"a CAPABILITY\r\n", b"b LOGIN x y\r\n"])
    assert b"STARTTLS" in out and b"LOGINDISABLED" in out
    assert b"AUTH=PLAIN" not in out, "no mechanism is offered before TLS"
    assert re.search(rb"b NO \[PRIVACYREQUIRED\]", out)


def test_starttls_then_login_then_logout(node: ImapNode) -> None:
    user = node.new_user()
    client = node.connect()
    caps = ok(client.capability())[0].decode()
    assert "LOGINDISABLED" not in caps and "AUTH=PLAIN" in caps
    ok(client.login(user, PASSWORD))
    caps = ok(client.capability())[0].decode()
    for needed in ("IDLE", "UIDPLUS", "MOVE", "CONDSTORE", "QRESYNC", "SPECIAL-USE", "QUOTA"):
        assert needed in caps.split(), needed
    assert client.logout()[0] == "BYE"


def test_implicit_tls_and_wrong_password(node: ImapNode) -> None:
    user = node.new_user()
    client = node.connect(tls="implicit")
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(user, "wrong")
    ok(client.login(user, PASSWORD))
    client.logout()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls_is_1_2_or_better(node: ImapNode) -> None:
    ctx = node.context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=ctx, timeout=10)
    modern = node.context()
    modern.minimum_version = ssl.TLSVersion.TLSv1_2
    client = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=modern, timeout=10)
    assert client.sock.version() in ("TLSv1.2", "TLSv1.3"), "the same port answers TLS 1.2+"
    client.logout()


def test_authenticate_plain_with_initial_response(node: ImapNode) -> None:
    user = node.new_user()
    client = node.connect()
    typ, _ = client.authenticate("PLAIN", lambda _: f"\0{user}\0{PASSWORD}".encode())
    assert typ == "OK"
    assert client.state == "AUTH"
    client.logout()


def test_authenticate_external_with_the_bound_app_certificate(
    node: ImapNode, tmp_path: Path
) -> None:
    """The national model for applicative mailboxes: the facility's software certificate."""
    app = node.new_user("dpi", bal_type="APP")
    ca = CertificateAuthority.load(node.data_dir / "pki" / "ca")
    issued = ca.issue("client-app", cn="DPI Hopital", identifier="750712184", organization="H")
    prefix = tmp_path / "app"
    ca.write_pem(issued, prefix)
    fingerprint = certificate_fingerprint(issued.cert.public_bytes(Encoding.DER))
    with node.runtime.db.transaction() as conn:
        bind(conn, app, "certificate", fingerprint, now=datetime.now(UTC))
    node.deliver(app, MESSAGE)
    ctx = node.context()
    ctx.load_cert_chain(f"{prefix}.pem", f"{prefix}.key")
    client = imaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=ctx, timeout=30)
    assert "AUTH=EXTERNAL" in ok(client.capability())[0].decode().split()
    typ, _ = client.authenticate("EXTERNAL", lambda _: b"")
    assert typ == "OK"
    ok(client.select("INBOX"))
    assert ok(client.search(None, "ALL"))[0] == b"1"
    client.logout()
    plain = node.connect(tls="implicit")
    assert "AUTH=EXTERNAL" not in ok(plain.capability())[0].decode().split()
    with pytest.raises(imaplib.IMAP4.error):
        plain.authenticate("EXTERNAL", lambda _: b"")


def test_authenticate_oauthbearer_with_a_token_from_the_issuer(node: ImapNode) -> None:
    user = node.new_user()
    with node.runtime.db.transaction() as conn:
        bind(conn, user, "oauth", f"{ISSUER} f:{user}", now=datetime.now(UTC))
    client = node.connect()
    good = f"n,a={user},\x01auth=Bearer {token(f'f:{user}')}\x01\x01".encode()
    typ, _ = client.authenticate("OAUTHBEARER", lambda _: good)
    assert typ == "OK"
    client.logout()
    client = node.connect()
    bad = f"n,a={user},\x01auth=Bearer {token('f:nobody')}\x01\x01".encode()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.authenticate("OAUTHBEARER", lambda _: bad)


def test_wrong_state_and_bad_syntax(node: ImapNode) -> None:
    user = node.new_user()
    out = raw_exchange(
        node.ports["imaps"],
        [
            b"a SELECT INBOX\r\n",
            f'b LOGIN "{user}" "{PASSWORD}"\r\n'.encode(),
            b"c FETCH 1 FLAGS\r\n",
            b"d FROBNICATE\r\n",
            b"e SELECT (unbalanced\r\n",
            b"f SELECT Nope\r\n",
            b"g LOGIN again please\r\n",
        ],
        node.context(),
    )
    assert re.search(rb"\r\na BAD [^\r]*[Ll]og in first", out)
    assert re.search(rb"\r\nb OK ", out)
    assert re.search(rb"\r\nc BAD [^\r]*[Nn]o mailbox selected", out)
    assert re.search(rb"\r\nd BAD [^\r]*[Uu]nknown command", out)
    assert re.search(rb"\r\ne BAD ", out)
    assert re.search(rb"\r\nf NO \[NONEXISTENT\]", out)
    assert re.search(rb"\r\ng BAD [^\r]*[Aa]lready authenticated", out)


# ------------------------------------------------------------------ mailboxes


def test_default_mailboxes_with_special_use(node: ImapNode) -> None:
    client = node.login(node.new_user())
    listed = b"\n".join(ok(client.list()))
    for name, use in (
        (b"Sent", b"\\Sent"),
        (b"Drafts", b"\\Drafts"),
        (b"Trash", b"\\Trash"),
        (b"Junk", b"\\Junk"),
        (b"Archive", b"\\Archive"),
    ):
        assert re.search(rb"\([^)]*" + re.escape(use) + rb"[^)]*\) \"/\" \"?" + name, listed), name
    assert b"INBOX" in listed
    subscribed = b"\n".join(ok(client.lsub()))
    assert b"Archive" in subscribed
    client.logout()


def test_create_rename_delete_and_hierarchy(node: ImapNode) -> None:
    client = node.login(node.new_user())
    ok(client.create("Dossiers/2026"))
    listed = b"\n".join(ok(client.list('""', "Dossiers*")))
    assert b"\\HasChildren" in listed and b"Dossiers/2026" in listed
    typ, data = client.create("Dossiers")
    assert typ == "NO" and b"ALREADYEXISTS" in data[0]
    ok(client.rename("Dossiers/2026", '"Dossiers/Archive 2026"'))
    typ, data = client.delete("Dossiers")
    assert typ == "NO", "a mailbox with children is not deleted"
    ok(client.delete('"Dossiers/Archive 2026"'))
    ok(client.delete("Dossiers"))
    typ, data = client.delete("Dossiers")
    assert typ == "NO" and b"NONEXISTENT" in data[0]
    client.logout()


def test_utf7_names_round_trip(node: ImapNode) -> None:
    client = node.login(node.new_user())
    ok(client.create("&AMk-t&AOk-"))  # "Été"
    listed = b"\n".join(ok(client.list('""', "*")))
    assert b"&AMk-t&AOk-" in listed
    typ, _ = client.create("bad&name")
    assert typ == "NO"
    client.logout()


# ------------------------------------------------------------------ messages


def test_append_fetch_store_search_expunge(node: ImapNode) -> None:
    user = node.new_user()
    client = node.login(user)
    typ, data = client.append("INBOX", r"(\Flagged)", None, MESSAGE)
    assert typ == "OK" and b"APPENDUID" in data[0]
    ok(client.select("INBOX"))
    data = ok(client.fetch("1", "(FLAGS RFC822.SIZE ENVELOPE)"))
    head = data[0] if isinstance(data[0], bytes) else data[0][0]
    assert b"\\Flagged" in head and f"RFC822.SIZE {len(MESSAGE)}".encode() in head
    assert b'"compte rendu"' in head and b'"martin" "hopital.test"' in head
    body = ok(client.fetch("1", "(BODY.PEEK[TEXT])"))[0][1]
    assert body == b"Bonjour,\r\nvoici le compte rendu.\r\n"
    flags = ok(client.fetch("1", "FLAGS"))[0]
    assert b"\\Seen" not in flags, "PEEK leaves the message unread"
    ok(client.fetch("1", "(BODY[])"))
    assert b"\\Seen" in ok(client.fetch("1", "FLAGS"))[0]
    assert ok(client.search(None, "FROM", "martin"))[0] == b"1"
    assert ok(client.search(None, "UNSEEN"))[0] == b""
    ok(client.store("1", "+FLAGS", r"(\Deleted)"))
    data = ok(client.expunge())
    assert data[0] == b"1"
    assert ok(client.search(None, "ALL"))[0] == b""
    client.logout()


def test_copy_and_move_answer_copyuid(node: ImapNode) -> None:
    user = node.new_user()
    for _ in range(3):
        node.deliver(user, MESSAGE)
    client = node.login(user)
    ok(client.select("INBOX"))
    typ, data = client.copy("1:2", "Archive")
    assert typ == "OK" and re.search(rb"COPYUID \d+ 1:2 1:2", data[0]), data
    typ, data = client.uid("MOVE", "3", "Trash")
    assert typ == "OK", data
    assert ok(client.search(None, "ALL"))[0] == b"1 2"
    ok(client.select("Trash"))
    assert ok(client.search(None, "ALL"))[0] == b"1"
    client.logout()


def test_out_of_range_is_bad(node: ImapNode) -> None:
    user = node.new_user()
    node.deliver(user, MESSAGE)
    client = node.login(user)
    ok(client.select("INBOX"))
    with pytest.raises(imaplib.IMAP4.error, match=r"(?i)invalid message set"):
        client.fetch("5", "FLAGS")
    client.logout()


def test_over_quota_append_is_refused(node: ImapNode) -> None:
    client = node.login(node.new_user())
    big = MESSAGE + b"x" * 150_000 + b"\r\n"
    ok(client.append("INBOX", None, None, big))
    typ, data = client.append("INBOX", None, None, big)
    assert typ == "NO" and b"[OVERQUOTA]" in data[0]
    root = ok(client.getquotaroot("INBOX"))
    assert b"STORAGE" in b" ".join(x for x in root[1] if isinstance(x, bytes))
    client.logout()


def test_delegated_login_to_an_org_mailbox_is_audited(node: ImapNode) -> None:
    member = node.new_user("member")
    org = node.new_user("secretariat", bal_type="ORG")
    node.add_member(org, member)
    node.deliver(org, MESSAGE)
    client = node.connect()
    ok(client.login(f"{member}*{org}", PASSWORD))
    ok(client.select("INBOX"))
    assert ok(client.search(None, "ALL"))[0] == b"1"
    client.logout()
    outsider = node.new_user("outsider")
    client = node.connect()
    with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
        client.login(f"{outsider}*{org}", PASSWORD)
    with node.runtime.db.read() as conn:
        entries = audit.query(conn, action="imap.login", target=org.lower())
    assert [e.actor for e in entries] == [member.lower()]
    assert DOMAIN in org


# ------------------------------------------------------------------ CONDSTORE / QRESYNC


def test_qresync_after_expunges_and_flag_changes(node: ImapNode) -> None:
    user = node.new_user()
    for _ in range(5):
        node.deliver(user, MESSAGE)
    login = f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode()
    first = raw_exchange(
        node.ports["imaps"], [login, b"b ENABLE QRESYNC\r\n", b"c SELECT INBOX\r\n"], node.context()
    )
    validity = int(re.search(rb"UIDVALIDITY (\d+)", first).group(1))
    seen = int(re.search(rb"HIGHESTMODSEQ (\d+)", first).group(1))

    other = node.login(user)
    ok(other.select("INBOX"))
    ok(other.store("2", "+FLAGS", r"(\Flagged)"))
    ok(other.store("4", "+FLAGS", r"(\Deleted)"))
    ok(other.expunge())
    other.logout()

    again = raw_exchange(
        node.ports["imaps"],
        [
            login,
            b"b ENABLE QRESYNC\r\n",
            f"c SELECT INBOX (QRESYNC ({validity} {seen}))\r\n".encode(),
            f"d UID FETCH 1:* (FLAGS) (CHANGEDSINCE {seen} VANISHED)\r\n".encode(),
        ],
        node.context(),
    )
    select_part, fetch_part = again.split(b"\r\nc OK", 1)
    assert re.findall(rb"\* VANISHED \(EARLIER\) [^\r]*", select_part) == [
        b"* VANISHED (EARLIER) 4"
    ]
    fetches = re.findall(rb"\* \d+ FETCH [^\r]*", select_part)
    assert len(fetches) == 1 and b"UID 2 " in fetches[0] and b"\\Flagged" in fetches[0]
    assert b"MODSEQ (" in fetches[0]
    assert re.findall(rb"\* VANISHED \(EARLIER\) [^\r]*", fetch_part) == [b"* VANISHED (EARLIER) 4"]
    fetches = re.findall(rb"\* \d+ FETCH [^\r]*", fetch_part)
    assert len(fetches) == 1 and b"UID 2 " in fetches[0]


def test_store_unchangedsince_refuses_a_message_changed_meanwhile(node: ImapNode) -> None:
    user = node.new_user()
    node.deliver(user, MESSAGE)
    node.deliver(user, MESSAGE)
    client = node.login(user)
    ok(client.select("INBOX"))
    data = ok(client.fetch("1:2", "(MODSEQ)"))
    modseq = max(int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", b" ".join(data)))
    other = node.login(user)
    ok(other.select("INBOX"))
    ok(other.store("1", "+FLAGS", r"(\Answered)"))
    other.logout()
    typ, data = client._simple_command(
        "STORE", "1:2", f"(UNCHANGEDSINCE {modseq})", "+FLAGS", r"(\Flagged)"
    )
    assert typ == "OK"
    assert b"[MODIFIED 1]" in client.untagged_responses.get("OK", [b""])[-1] or any(
        b"MODIFIED 1" in (d or b"") for d in data
    )
    flags = [d for d in ok(client.fetch("2", "FLAGS")) if d.startswith(b"2 (")]
    assert b"\\Flagged" in flags[-1], "the unchanged message was stored"
    first = [d for d in ok(client.fetch("1", "FLAGS")) if d.startswith(b"1 (")]
    assert b"\\Flagged" not in first[-1], "the changed one was not"
    client.logout()


def test_multiappend_catenate_and_binary_append(node: ImapNode) -> None:
    user = node.new_user()
    node.deliver(user, MESSAGE)
    login = f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode()
    one, two = b"Subject: one\r\n\r\nbody1\r\n", b"Subject: two\r\n\r\nbody2\r\n"
    binary = (
        b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"\x00\x01\xff\r\n"
    )
    out = raw_exchange(
        node.ports["imaps"],
        [
            login,
            b"b APPEND Archive {%d+}\r\n%s {%d+}\r\n%s\r\n" % (len(one), one, len(two), two),
            b'c APPEND Archive CATENATE (URL "/INBOX/;uid=1/;section=HEADER" TEXT {7+}\r\n'
            b"hello\r\n)\r\n",
            b"d APPEND Archive ~{%d+}\r\n%s\r\n" % (len(binary), binary),
            b'e APPEND Archive (\\Seen) CATENATE (URL "/INBOX/;uid=99")\r\n',
            b"f SELECT Archive\r\n",
            b"g FETCH 3 BODY.PEEK[]\r\n",
            b"h FETCH 4 (BODY.PEEK[1] BINARY.PEEK[1])\r\n",
        ],
        node.context(),
    )
    assert re.search(rb"b OK \[APPENDUID \d+ 1:2\]", out), out
    assert re.search(rb"c OK \[APPENDUID \d+ 3\]", out)
    assert re.search(rb"e NO \[BADURL", out), "a URL naming no message refuses the whole APPEND"
    assert b"* 4 EXISTS" in out
    fetched = out.split(b"\r\ng OK")[0].split(b"g FETCH")[-1]
    assert b"Subject: compte rendu\r\n" in fetched and fetched.rstrip().endswith(b"hello\r\n)")
    binary_out = out.split(b"h FETCH")[-1]
    assert b"AAH/" in binary_out, "BODY[1] of a literal8 is stored as base64"
    assert b"~{5}\r\n\x00\x01\xff\r\n" in binary_out, "BINARY[1] gives the bytes back"


# ------------------------------------------------------------------ extensions


def test_namespace_id_enable_unselect_status_size_and_appendlimit(node: ImapNode) -> None:
    user = node.new_user()
    node.deliver(user, MESSAGE)
    out = raw_exchange(
        node.ports["imaps"],
        [
            f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode(),
            b"b NAMESPACE\r\n",
            b'c ID ("name" "test-client")\r\n',
            b"d ENABLE CONDSTORE UTF8=ACCEPT\r\n",
            b"e STATUS INBOX (MESSAGES UNSEEN SIZE UIDNEXT HIGHESTMODSEQ APPENDLIMIT)\r\n",
            b"f SELECT INBOX\r\n",
            b"g UNSELECT\r\n",
            b"h FETCH 1 FLAGS\r\n",
            b'i LIST "" "*" RETURN (STATUS (MESSAGES))\r\n',
            b"j APPEND INBOX {999999999}\r\n",
        ],
        node.context(),
    )
    assert b'* NAMESPACE (("" "/")) NIL NIL' in out
    assert re.search(rb'\* ID \("name" "mssante-operator"\)', out)
    assert b"* ENABLED CONDSTORE UTF8=ACCEPT" in out
    size = len(MESSAGE)
    assert re.search(
        rb"\* STATUS \"?INBOX\"? \(MESSAGES 1 UNSEEN 1 SIZE %d UIDNEXT 2 HIGHESTMODSEQ \d+ "
        rb"APPENDLIMIT \d+\)" % size,
        out,
    )
    assert re.search(rb"\r\ng OK", out) and re.search(rb"\r\nh BAD", out), "UNSELECT leaves"
    assert re.search(rb'\* STATUS "?Archive"? \(MESSAGES 0\)', out), "LIST-STATUS"
    assert re.search(rb"\r\nj NO \[TOOBIG\]", out), "a literal over APPENDLIMIT is refused first"


def test_sort_thread_and_esearch(node: ImapNode) -> None:
    user = node.new_user()
    for subject, sender in (("b", "zoe"), ("Re: a", "adam"), ("a", "marc")):
        node.deliver(
            user,
            MESSAGE.replace(b"compte rendu", subject.encode()).replace(
                b"martin@", sender.encode() + b"@"
            ),
        )
    client = node.login(user)
    ok(client.select("INBOX"))
    assert ok(client.sort("(SUBJECT)", "UTF-8", "ALL"))[0] == b"2 3 1"
    assert ok(client.sort("(FROM)", "UTF-8", "ALL"))[0] == b"2 3 1"
    # same Date: threads in sequence order of their first message
    assert ok(client.thread("ORDEREDSUBJECT", "UTF-8", "ALL"))[0] == b"(1)(2 3)"
    typ, _ = client._simple_command("SEARCH", "RETURN", "(MIN MAX COUNT)", "ALL")
    assert typ == "OK"
    esearch = client.untagged_responses.pop("ESEARCH")[0]
    assert b"MIN 1 MAX 3 COUNT 3" in esearch
    client.logout()


def test_seen_hook_fires_once_per_message_on_every_path(node: ImapNode) -> None:
    calls: list[tuple[str, list[int]]] = []

    async def hook(owner: str, mailbox_id: int, uids: object) -> None:
        calls.append((owner, list(uids)))  # type: ignore[call-overload]

    node.runtime.seen_hooks.append(hook)
    try:
        user = node.new_user()
        for _ in range(3):
            node.deliver(user, MESSAGE)
        client = node.login(user)
        ok(client.select("INBOX"))
        ok(client.fetch("1", "(BODY.PEEK[])"))
        assert calls == [], "PEEK reads without marking"
        ok(client.fetch("1", "(BODY[TEXT])"))
        ok(client.store("2", "+FLAGS", r"(\Seen)"))
        ok(client.store("1:2", "+FLAGS", r"(\Seen \Flagged)"))  # already seen: no new call
        ok(client.append("INBOX", r"(\Seen)", None, MESSAGE))
        client.logout()
        owner = user.lower()
        assert calls == [(owner, [1]), (owner, [2]), (owner, [4])]
    finally:
        node.runtime.seen_hooks.remove(hook)


def test_error_paths_and_imap4rev2(node: ImapNode) -> None:
    user = node.new_user()
    node.deliver(user, MESSAGE, flags=["\\Deleted"])
    node.deliver(user, MESSAGE, flags=["\\Deleted"])
    node.deliver(
        user,
        MESSAGE.replace(
            b"\r\n\r\n", b"\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: x-odd\r\n\r\n"
        ),
    )
    out = raw_exchange(
        node.ports["imaps"],
        [
            f'a LOGIN "{user}" "{PASSWORD}"\r\n'.encode(),
            b"b APPEND Nowhere {3+}\r\nx\r\n\r\n",
            b"c SUBSCRIBE Nowhere\r\n",
            b'd SETQUOTA "" (STORAGE 10)\r\n',
            b"e EXAMINE INBOX\r\n",
            b"f STORE 1 +FLAGS (\\Seen)\r\n",
            b"g SELECT INBOX\r\n",
            b"h COPY 1 Nowhere\r\n",
            b"i FETCH 3 BINARY[1]\r\n",
            b"j UID EXPUNGE 2\r\n",
            b"k CLOSE\r\n",
            b"l ENABLE IMAP4rev2\r\n",
            b"m SELECT INBOX\r\n",
            b"n SEARCH ALL\r\n",
            b"o IDLE\r\nnot done\r\n",
        ],
        node.context(),
    )

    def reply(tag: bytes) -> bytes:
        found = re.search(rb"\r\n" + tag + rb" (OK|NO|BAD)[^\r]*", out)
        assert found, tag
        return found.group(0).strip()

    assert reply(b"b").startswith(b"b NO [TRYCREATE]")
    assert reply(b"c").startswith(b"c NO [NONEXISTENT]")
    assert reply(b"d").startswith(b"d NO [NOPERM]")
    assert reply(b"e").startswith(b"e OK [READ-ONLY]")
    assert reply(b"f").startswith(b"f NO [READ-ONLY]")
    assert reply(b"h").startswith(b"h NO [TRYCREATE]")
    assert reply(b"i").startswith(b"i NO [UNKNOWN-CTE]")
    assert b"* 2 EXPUNGE" in out.split(b"\r\ni ")[1].split(b"\r\nj ")[0]
    assert reply(b"k").startswith(b"k OK")
    after = out.split(b"\r\nl ")[1]
    assert b"RECENT" not in after.split(b"\r\nm OK")[0], "IMAP4rev2 has no \\Recent"
    assert re.search(rb'\* ESEARCH \(TAG "n"\) ALL 1\r\n', after), "CLOSE expunged message 1"
    assert reply(b"o").startswith(b"o BAD")
