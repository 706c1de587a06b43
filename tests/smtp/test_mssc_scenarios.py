# covers: MSSC-INIT-1, MSSC-INIT-2, MSSC-INIT-3, MSSC-FIN-1, MSSC-RET-1, MSSC-MDN-1
# covers: MSSC-TEST-1, MSSC-FROM-1, MSSC-NOTIF-1, MSSC-ATT-1, INS-1, INS-2, LIM-1, TS-3, TS-5
"""MSS-C end to end: a professionals' operator (a.test) and the patient domain's operator (b.test).

Both are real `mssante serve` processes with mutual TLS between them; the
professionals send with smtplib on a.test, the patients read with imaplib and
send with smtplib on b.test, and b.test's notifications go to a local SMTP
sink standing in for the patients' personal mail provider.
"""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage, Message

import dkim as dkimpy
import pytest

from annuaire.ins import ins_key
from smtp import dkim

from nodes import rpps
from operators import PASSWORD, Pair, Peer, setup_pair
from sinks import Recorder, threaded

pytestmark = pytest.mark.slow

PATIENT_DOMAIN = "patient.mssante.fr"


def ins(n: int) -> str:
    body = f"1800175001{n:03d}"
    return body + ins_key(body)


def patient(n: int) -> str:
    return f"{ins(n)}@{PATIENT_DOMAIN}"


OPEN, OPEN2, CLOSED, OPPOSED, UNKNOWN, NOT_CREATED, PICKY, LEAVING = 1, 2, 3, 4, 5, 6, 7, 8


@pytest.fixture(scope="module")
def sink() -> Iterator[tuple[Recorder, int]]:
    """The patients' personal mail provider: keeps what the smarthost hands it."""
    handler = Recorder()
    with threaded(handler) as port:
        yield handler, port


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, sink: tuple[Recorder, int]) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("mssc")
    _, port = sink
    b_config = (
        f'[notifications]\nsmarthost = "127.0.0.1:{port}"\ntls = "none"\nwindow_seconds = 3600\n'
    )
    pair = setup_pair(work, extra_config=("", b_config), patient_operator="b")
    pw = work / "pw"
    for n in range(10, 20):
        pair.a.run("bal", "add", f"ps{n}@a.test", "--type", "PER", "--rpps", rpps(n),
                   "--password-file", str(pw))  # fmt: skip
    # Pharmacies hosted by the patient domain's operator (b.test): the flag is in its directory.
    pair.b.run("bal", "add", "pharmacie@b.test", "--type", "ORG", "--finess", "750712184",
               "--pharmacy-accepts-patients", "--password-file", str(pw))  # fmt: skip
    pair.b.run("bal", "add", "pharmacie-sans@b.test", "--type", "ORG", "--finess", "750712184",
               "--password-file", str(pw))  # fmt: skip
    rows = [
        f"{ins(OPEN)},open,Jeanne,Dupont,jeanne.dupont@perso.example",
        f"{ins(OPEN2)},open,Émile,Zola,emile@perso.example",
        f"{ins(CLOSED)},closed,Paul,Ferme,paul@perso.example",
        f"{ins(OPPOSED)},opposed,Anne,Oppose,anne@perso.example",
        f"{ins(NOT_CREATED)},not_created,,,",
        f"{ins(PICKY)},open,Léa,Martin,",
        f"{ins(LEAVING)},open,Jean,Départ,",
    ]
    csv = work / "patients.csv"
    csv.write_text("ins,status,first_name,last_name,notification_email\n" + "\n".join(rows) + "\n")
    pair.b.run("patients", "import", str(csv))
    for n in (OPEN, OPEN2, PICKY, LEAVING):
        pair.b.run("patients", "passwd", ins(n), "--password-file", str(pw))
    with pair.running():
        yield pair


# --------------------------------------------------------------------------- helpers


def send(pair: Pair, peer: Peer, user: str, msg: EmailMessage, **kw: object) -> dict:
    smtp = smtplib.SMTP("127.0.0.1", peer.port("submission"), timeout=60)
    try:
        smtp.starttls(context=pair.client_context())
        smtp.login(user, PASSWORD)
        return smtp.send_message(msg, **kw)  # type: ignore[arg-type]
    finally:
        smtp.quit()


def mail(
    sender: str, to: str, subject: str, body: str = "Bonjour.\n", **headers: str
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def parsed(data: bytes) -> Message:
    """The message, with the bytes as stored in ``raw`` (re-serialising would alter them)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    message.raw = data  # type: ignore[attr-defined]
    return message


def wait_for(
    peer: Peer,
    owner: str,
    predicate: Callable[[Message], bool],
    count: int = 1,
    timeout: float = 40,
) -> list[Message]:
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in map(parsed, peer.inbox(owner)) if predicate(m)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)  # waiting for other processes, not timing a behaviour


def subject_is(text: str) -> Callable[[Message], bool]:
    return lambda m: str(m["Subject"]) == text


def is_return(m: Message) -> bool:
    return m.get_content_type() == "multipart/report" and "delivery-status" in str(
        m["Content-Type"]
    )


def is_mdn(m: Message) -> bool:
    return "disposition-notification" in str(m["Content-Type"])


def status_of(m: Message) -> str:
    found = re.search(rb"Status: ([245]\.\d+\.\d+)", m.raw)  # type: ignore[attr-defined]
    assert found, m.raw  # type: ignore[attr-defined]
    return found.group(1).decode()


def imap_login(pair: Pair, n: int) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", pair.b.port("imap"), timeout=60)
    imap.starttls(ssl_context=pair.client_context())
    imap.login(patient(n), PASSWORD)
    return imap


def queue_empty(peer: Peer, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while "-- 0 message(s)" not in (out := peer.run("queue", "list").stdout):
        if time.monotonic() > deadline:
            raise AssertionError(out)
        time.sleep(0.2)  # waiting for other processes, not timing a behaviour


# --------------------------------------------------------------------------- the scenario


def test_mssc_init_1_fin_1_mdn_1_from_1_the_whole_exchange(pair: Pair) -> None:
    ps = "ps10@a.test"
    # 1. The professional writes, asking for a read receipt.
    send(pair, pair.a, ps, mail(ps, patient(OPEN), "Vos résultats", Disposition_Notification_To=ps))
    got = wait_for(pair.b, patient(OPEN), subject_is("Vos résultats"))
    assert len(got) == 1
    assert got[0]["X-MSSante-Patient-Reply"] == "allowed"
    assert got[0]["From"].addresses[0].display_name == "ps10"  # MSSC-FROM-1: start of the address

    # 2. The patient reads: exactly one MDN reaches the professional, even on a second display.
    imap = imap_login(pair, OPEN)
    imap.select("INBOX")
    typ, data = imap.search(None, "ALL")
    first = data[0].split()[-1]
    typ, data = imap.fetch(first, "(BODY[])")
    assert typ == "OK"
    typ, data = imap.fetch(first, "(FLAGS)")
    assert b"$MDNSent" in data[0] and b"\\Seen" in data[0]
    mdns = wait_for(pair.a, ps, is_mdn)
    assert len(mdns) == 1
    mdn = mdns[0]
    assert mdn["Auto-Submitted"] == "auto-replied"
    raw = mdn.raw  # type: ignore[attr-defined]
    assert b"Disposition: automatic-action/MDN-sent-automatically; displayed" in raw
    assert f"Final-Recipient: rfc822; {patient(OPEN)}".encode() in raw
    assert b"Original-Message-ID: <" in raw
    assert str(mdn["From"]).startswith("Jeanne Dupont")
    # Unread then read again, from a second session: no second receipt.
    imap.store(first, "-FLAGS", "(\\Seen)")
    other = imap_login(pair, OPEN)
    other.select("INBOX")
    other.fetch(first, "(BODY[])")
    other.logout()
    queue_empty(pair.b)
    queue_empty(pair.a)
    assert len(wait_for(pair.a, ps, is_mdn, count=2, timeout=0)) == 1

    # 3. The patient replies: the professional sees the registry's name in From:.
    reply = mail(patient(OPEN), ps, "Re: Vos résultats", "Merci docteur.\n")
    reply["In-Reply-To"] = got[0]["Message-ID"]
    send(pair, pair.b, patient(OPEN), reply)
    received = wait_for(pair.a, ps, subject_is("Re: Vos résultats"))
    assert len(received) == 1
    sender = received[0]["From"].addresses[0]
    assert sender.display_name == "Jeanne Dupont" and sender.addr_spec == patient(OPEN)
    assert received[0]["In-Reply-To"] == got[0]["Message-ID"]  # TS-5
    assert received[0]["Message-ID"]

    # 4. The professional closes the exchange with FIN.
    send(pair, pair.a, ps, mail(ps, patient(OPEN), "Suivi terminé - FIN"))
    closing = wait_for(pair.b, patient(OPEN), subject_is("Suivi terminé - FIN"))
    assert closing[0]["X-MSSante-Patient-Reply"] == "closed"

    # 5. The patient's reply is refused with an explanatory return; the PS gets nothing.
    send(pair, pair.b, patient(OPEN), mail(patient(OPEN), ps, "Encore une question"))
    returns = wait_for(pair.b, patient(OPEN), is_return)
    assert len(returns) == 1
    assert status_of(returns[0]) == "5.7.1"
    text = returns[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "clos" in text.lower()
    queue_empty(pair.b)
    assert not wait_for(pair.a, ps, subject_is("Encore une question"), timeout=0)

    # 6. The professional writes again: the patient may answer again.
    send(pair, pair.a, ps, mail(ps, patient(OPEN), "Nouveau rendez-vous"))
    wait_for(pair.b, patient(OPEN), subject_is("Nouveau rendez-vous"))
    send(pair, pair.b, patient(OPEN), mail(patient(OPEN), ps, "Re: Nouveau rendez-vous"))
    assert wait_for(pair.a, ps, subject_is("Re: Nouveau rendez-vous"))


def test_mssc_init_1_patient_cannot_start_a_conversation(pair: Pair) -> None:
    send(pair, pair.b, patient(OPEN2), mail(patient(OPEN2), "ps11@a.test", "Bonjour docteur"))
    returns = wait_for(pair.b, patient(OPEN2), is_return)
    assert len(returns) == 1 and status_of(returns[0]) == "5.7.1"
    assert returns[0]["Auto-Submitted"] == "auto-replied"
    queue_empty(pair.b)
    assert not wait_for(pair.a, "ps11@a.test", subject_is("Bonjour docteur"), timeout=0)


def test_mssc_init_2_flagged_pharmacy_only(pair: Pair) -> None:
    send(pair, pair.b, patient(OPEN2), mail(patient(OPEN2), "pharmacie@b.test", "Ordonnance"))
    assert wait_for(pair.b, "pharmacie@b.test", subject_is("Ordonnance"))
    send(pair, pair.b, patient(OPEN2), mail(patient(OPEN2), "pharmacie-sans@b.test", "Ordo 2"))
    returns = wait_for(
        pair.b,
        patient(OPEN2),
        lambda m: is_return(m) and b"pharmacie-sans" in m.raw,  # type: ignore[attr-defined]
    )
    assert returns


def test_mssc_init_3_patient_to_patient(pair: Pair) -> None:
    send(pair, pair.b, patient(PICKY), mail(patient(PICKY), patient(OPEN2), "Coucou"))
    returns = wait_for(pair.b, patient(PICKY), is_return)
    assert returns and status_of(returns[0]) == "5.7.1"
    queue_empty(pair.b)
    assert not wait_for(pair.b, patient(OPEN2), subject_is("Coucou"), timeout=0)


_DATES = (
    rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
    rb"\d{1,2}(er)? \w+ \d{4} (\xc3\xa0|at) \d{1,2}( h |:)\d\d \(UTC[^)]*\)",
)


def _normalised(m: Message) -> list[bytes]:
    """What a return says, without what legitimately differs: identifiers, addresses, dates.

    The trace the receiving MX prepends is left out; each MIME part is compared
    decoded, so quoted-printable line breaks do not depend on a date's length.
    """
    parts = [str(m["Subject"]).encode(), str(m["From"]).encode()]
    for part in m.walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)
        parts.append(payload if isinstance(payload, bytes) else str(payload).encode())
    out = []
    for data in parts:
        for pattern in _DATES:
            data = re.sub(pattern, b"DATE", data)
        data = re.sub(rb"\b[0-9A-F]{12,}[0-9A-Za-z.]*\b", b"ID", data)
        data = re.sub(rb"<[^>]*>", b"<ID>", data)
        data = re.sub(rb"\d{15}@patient\.mssante\.fr", b"INS", data)
        data = re.sub(rb"ps1\d@a\.test", b"PS", data)
        out.extend(data.splitlines())
    return out


def test_mssc_ret_1_closed_and_not_found(pair: Pair) -> None:
    ps = "ps12@a.test"
    send(pair, pair.a, ps, mail(ps, patient(CLOSED), "A"))
    closed = wait_for(pair.a, ps, is_return)
    assert len(closed) == 1 and status_of(closed[0]) == "5.2.1"
    assert "messagerie fermée" in str(closed[0]["Subject"]).lower()
    assert closed[0]["Auto-Submitted"] == "auto-replied"
    not_found = []
    for n, who in ((OPPOSED, "ps13"), (UNKNOWN, "ps14"), (NOT_CREATED, "ps15")):
        send(pair, pair.a, f"{who}@a.test", mail(f"{who}@a.test", patient(n), "A"))
        found = wait_for(pair.a, f"{who}@a.test", is_return)
        assert len(found) == 1 and status_of(found[0]) == "5.1.1"
        assert "patient non trouvé" in str(found[0]["Subject"]).lower()
        not_found.append(found[0])
    # Opposed, unknown, not created: the same bytes but for identifiers and dates.
    first = _normalised(not_found[0])
    for other in not_found[1:]:
        assert _normalised(other) == first


def test_ins_1_malformed_ins_refused_at_rcpt(pair: Pair) -> None:
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=30)
    smtp.starttls(context=pair.client_context())
    smtp.login("ps16@a.test", PASSWORD)
    smtp.mail("ps16@a.test")
    code, text = smtp.rcpt(f"{ins(OPEN)[:-2]}00@{PATIENT_DOMAIN}")
    assert code == 550 and b"5.1.3" in text
    smtp.quit()


def _undeclared(smtp: smtplib.SMTP, sender: str, to: str, total: int) -> tuple[int, bytes]:
    """DATA of exactly ``total`` bytes without SIZE (smtplib's sendmail would declare it)."""
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: Gros\r\nX-Pad: \r\n\r\n".encode()
    line = b"x" * 498 + b"\r\n"
    pad = (total - len(head)) % len(line)  # so that the body is whole CRLF lines
    head = head.replace(b"X-Pad: ", b"X-Pad: " + b"p" * pad)
    data = head + line * ((total - len(head)) // len(line))
    assert len(data) == total
    assert smtp.mail(sender)[0] == 250
    assert smtp.rcpt(to)[0] == 250
    return smtp.data(data)


def test_lim_1_size_declared_and_actual(pair: Pair) -> None:
    cap = 25 * 1024 * 1024
    ps = "ps17@a.test"
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=120)
    smtp.starttls(context=pair.client_context())
    smtp.login(ps, PASSWORD)
    # Declared: refused before any byte is sent.
    assert smtp.mail(ps, [f"SIZE={cap + 1}"])[0] == 250
    code, text = smtp.rcpt(patient(OPEN2))
    assert (code, text[:5]) == (552, b"5.3.4")
    smtp.rset()
    # Not declared, on a professionals' operator: refused at the end of DATA.
    code, text = _undeclared(smtp, ps, patient(OPEN2), cap + 1)
    assert (code, text[:5]) == (552, b"5.3.4")
    smtp.quit()
    # Not declared, on the patient domain's operator: accepted, then answered by
    # the automatic return "taille maximale dépassée" (MSSC-RET-1 c).
    smtp = smtplib.SMTP("127.0.0.1", pair.b.port("submission"), timeout=120)
    smtp.starttls(context=pair.client_context())
    smtp.login("pharmacie-sans@b.test", PASSWORD)
    assert _undeclared(smtp, "pharmacie-sans@b.test", patient(OPEN2), cap + 1)[0] == 250
    smtp.quit()
    returns = wait_for(pair.b, "pharmacie-sans@b.test", is_return, timeout=120)
    assert len(returns) == 1 and status_of(returns[0]) == "5.3.4"
    assert "taille maximale" in str(returns[0]["Subject"]).lower()
    assert len(returns[0].raw) < 64 * 1024  # type: ignore[attr-defined]  # headers only
    assert not wait_for(pair.b, patient(OPEN2), subject_is("Gros"), timeout=0)
    # Exactly the cap is delivered.
    smtp = smtplib.SMTP("127.0.0.1", pair.b.port("submission"), timeout=120)
    smtp.starttls(context=pair.client_context())
    smtp.login("pharmacie-sans@b.test", PASSWORD)
    assert _undeclared(smtp, "pharmacie-sans@b.test", patient(OPEN2), cap)[0] == 250
    smtp.quit()
    assert wait_for(pair.b, patient(OPEN2), subject_is("Gros"), timeout=120)


def test_mssc_test_1_responder(pair: Pair) -> None:
    ps = "ps18@a.test"
    to = f"reponse.automatique-test@{PATIENT_DOMAIN}"
    send(pair, pair.a, ps, mail(ps, to, "Pas un essai", "rien\n"))
    send(pair, pair.a, ps, mail(ps, to, "TEST de messagerie", "Ceci est un TEST.\n"))
    acks = wait_for(pair.a, ps, lambda m: str(m["Auto-Submitted"]) == "auto-replied")
    assert len(acks) == 1
    assert acks[0]["In-Reply-To"]
    queue_empty(pair.b)
    queue_empty(pair.a)
    assert len(wait_for(pair.a, ps, lambda m: True, count=2, timeout=0)) == 1


def test_mssc_notif_1_generic_signed_and_rate_limited(
    pair: Pair, sink: tuple[Recorder, int]
) -> None:
    handler, _ = sink
    ps = "ps19@a.test"
    subject, body, attachment = (
        "Diagnostic confidentiel",
        "Votre biopsie est positive.",
        "biopsie.pdf",
    )
    msg = mail(ps, patient(OPEN2), subject, body)
    msg.add_attachment(
        b"%PDF-1.4 secret", maintype="application", subtype="pdf", filename=attachment
    )
    before = len(handler.received)
    send(pair, pair.a, ps, msg)
    send(pair, pair.a, ps, mail(ps, patient(OPEN2), "Deuxième"))
    wait_for(pair.b, patient(OPEN2), subject_is("Deuxième"))
    queue_empty(pair.b)
    notes = [m for m in handler.received[before:] if "emile@perso.example" in m.rcpt_tos]
    assert len(notes) <= 1  # one per window (OPEN2 may have been notified by an earlier test)
    everything = [m for m in handler.received if "emile@perso.example" in m.rcpt_tos]
    assert everything
    data = everything[-1].content
    for secret in (subject, body, attachment, ps, "ps19", "biopsie"):
        assert secret.encode() not in data
    key = dkim.load_key(pair.b.data_dir / "keys" / "dkim.key", domain="b.test", selector="mss1")
    record = dkim.dns_record(key).encode()

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mss1._domainkey.b.test."
        return record

    assert dkimpy.verify(data, dnsfunc=dnsfunc)
    # The log proves it: the notification is named by queue ids, nothing of the message.
    logs = "".join(pair.b.node.drain())  # type: ignore[union-attr]
    assert "notification queued" in logs and "notification attempt" in logs
    for secret in (subject, body, attachment, ins(OPEN2), "emile@perso.example"):
        assert secret not in logs
    text = parsed(data).get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Mon espace santé" in text


def test_mssc_att_1_patient_attachments(pair: Pair) -> None:
    ps = "ps11@a.test"
    send(pair, pair.a, ps, mail(ps, patient(PICKY), "Envoyez vos documents"))
    wait_for(pair.b, patient(PICKY), subject_is("Envoyez vos documents"))
    ok = mail(patient(PICKY), ps, "Mon scan")
    ok.add_attachment(
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64, maintype="image", subtype="png", filename="scan.png"
    )
    send(pair, pair.b, patient(PICKY), ok)
    assert wait_for(pair.a, ps, subject_is("Mon scan"))
    before = len(wait_for(pair.b, patient(PICKY), is_return, timeout=0))
    bad = mail(patient(PICKY), ps, "Mon programme")
    bad.add_attachment(
        b"MZ\x90\x00" + b"\0" * 64, maintype="application", subtype="pdf", filename="ordonnance.pdf"
    )
    send(pair, pair.b, patient(PICKY), bad)
    returns = wait_for(pair.b, patient(PICKY), is_return, count=before + 1)
    assert len(returns) == before + 1 and status_of(returns[-1]) == "5.6.1"
    queue_empty(pair.b)
    assert not wait_for(pair.a, ps, subject_is("Mon programme"), timeout=0)


def test_patients_log_in_only_to_open_spaces(pair: Pair) -> None:
    imap_login(pair, LEAVING).logout()
    pair.b.run("patients", "set-status", ins(LEAVING), "closed")
    with pytest.raises(imaplib.IMAP4.error):
        imap_login(pair, LEAVING)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        send(pair, pair.b, patient(LEAVING), mail(patient(LEAVING), "ps10@a.test", "x"))
