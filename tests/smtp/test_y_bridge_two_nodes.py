# covers: Y-1, Y-2, Y-4, Y-ACK-1, Y-FAN-1, Y-XDM-1
"""Envoi en Y end to end: two real nodes over mutual TLS, real clients.

The hospital's DPI mailbox ``dpi@a.test`` submits one message carrying two
XDM packages to node a's bridge. Node a deposits both, forwards them through
the trust space to ``bob@b.test`` (another operator), copies the visible one
to the patient's MSS-C space (W mode), and acknowledges to the DPI.
"""

from __future__ import annotations

import base64
import email
import email.policy
import http.client
import json
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from annuaire.ins import ins_key

from cdagen import DOC_ROOT, SET_ROOT, make_cda, xdm_document, xdm_package
from operators import PASSWORD, Pair, Peer, setup_pair

pytestmark = pytest.mark.slow

BRIDGE = "dmp-bridge@a.test"
DPI = "dpi@a.test"
BOB = "bob@b.test"
PATIENT_DOMAIN = "patient.mssante.fr"


def ins(n: int) -> str:
    body = f"2750575{n:06d}"
    return body + ins_key(body)


VISIBLE, HIDDEN = ins(1), ins(2)

A_CONFIG = f"""
[node]
bridge_address = "{BRIDGE}"
[dmp]
bridge_clients = ["{DPI}"]
w_mode = true
http_views = true
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("y")
    pair = setup_pair(work, extra_config=(A_CONFIG, ""))
    pw = work / "pw"
    pair.a.run("bal", "add", DPI, "--type", "APP", "--finess", "750712184",
               "--password-file", str(pw))  # fmt: skip
    csv = work / "patients.csv"
    csv.write_text(
        "ins,status,first_name,last_name,notification_email\n"
        f"{VISIBLE},open,Jeanne,Dupont,\n{HIDDEN},open,Marc,Durand,\n"
    )
    pair.a.run("patients", "import", str(csv))
    for patient in (VISIBLE, HIDDEN):
        pair.a.run("patients", "passwd", patient, "--password-file", str(pw))
    with pair.running():
        yield pair


def package(n: int, patient: str, flags: tuple[str, ...] = ()) -> bytes:
    cda = make_cda(doc_id=(DOC_ROOT, f"e2e.{n}"), set_id=(SET_ROOT, f"e2e.{n}"), ins=patient)
    entry = xdm_document(cda, unique_id=f"{DOC_ROOT}^e2e.{n}", ins=patient, flags=flags)
    return xdm_package(entry, intended=(BOB,))


def submit(pair: Pair, user: str, message: EmailMessage) -> None:
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=60)
    try:
        smtp.starttls(context=pair.client_context())
        smtp.login(user, PASSWORD)
        smtp.send_message(message)
    finally:
        smtp.quit()


def bridge_message(*packages: bytes, sender: str = DPI) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"DPI Hôpital <{sender}>"
    message["To"] = BRIDGE
    message["Subject"] = "XDM/1.0/DDM+Documents de sortie"
    message["Disposition-Notification-To"] = sender
    message.set_content("Documents de sortie.")
    for data in packages:
        message.add_attachment(data, maintype="application", subtype="zip", filename="IHE_XDM.ZIP")
    return message


def inbox(peer: Peer, owner: str, count: int) -> list[email.message.Message]:
    found = peer.wait_inbox(owner, count, timeout=60)
    return [email.message_from_bytes(m, policy=email.policy.default) for m in found]


def test_one_message_two_packages_deposited_forwarded_and_acknowledged(pair: Pair) -> None:
    submit(
        pair, DPI, bridge_message(package(1, VISIBLE), package(2, HIDDEN, ("INVISIBLE_PATIENT",)))
    )

    # The professional on the other operator gets both documents, each as received.
    forwards = inbox(pair.b, BOB, 2)
    assert len(forwards) == 2
    for forward in forwards:
        assert str(forward["Subject"]).startswith("XDM/1.0/DDM+Lettre de liaison de sortie")
        assert forward["X-MSS-CODECDA"] == "11490-0"
        assert DPI in str(forward["From"])
        assert [p.get_filename() for p in forward.iter_attachments()] == ["IHE_XDM.ZIP"]

    # W mode: the patient's MSS-C space gets the visible one, closed to replies; the
    # other patient gets nothing, the document being invisible to them.
    [copy] = inbox(pair.a, f"{VISIBLE}@{PATIENT_DOMAIN}", 1)
    assert copy["X-MSS-MES"] == "FIN"
    assert copy["X-MSSante-Patient-Reply"] == "closed"
    assert pair.a.inbox(f"{HIDDEN}@{PATIENT_DOMAIN}") == []

    # One acknowledgement, an MDN, naming both documents and their forwards.
    [ack] = inbox(pair.a, DPI, 1)
    assert str(ack["Subject"]) == "XDM/1.0/DDM+Documents de sortie"
    report = ack.get_body(("plain",))
    assert report is not None
    text = report.get_content()
    assert f"{DOC_ROOT}^e2e.1" in text and f"{DOC_ROOT}^e2e.2" in text
    for forward in forwards:
        assert str(forward["Message-ID"]) in text
    assert b"Disposition: automatic-action/MDN-sent-automatically; processed" in ack.as_bytes()


def documents(pair: Pair, user: str, patient: str) -> tuple[int, list[str]]:
    """GET the DMP view over HTTPS as ``user``: (status, unique ids shown)."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", pair.a.port("https"), context=pair.client_context(), timeout=30
    )
    token = base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    try:
        conn.request(
            "GET",
            f"/dmp/patients/{patient}/documents",
            headers={"Authorization": f"Basic {token}"},
        )
        response = conn.getresponse()
        body = json.loads(response.read() or b"{}")
    finally:
        conn.close()
    return response.status, [d["unique_id"] for d in body.get("documents", [])]


def test_the_dmp_views_show_each_reader_what_they_may_see(pair: Pair) -> None:
    # covers: Y-4, Y-6
    # Builds on the first test's two deposits (the module's node keeps its record).
    submit(pair, DPI, bridge_message(package(3, VISIBLE, ("MASQUE_PS",))))
    inbox(pair.a, DPI, 2)  # the second acknowledgement: the deposit is done
    visible = f"{DOC_ROOT}^e2e.1"
    masked = f"{DOC_ROOT}^e2e.3"
    hidden = f"{DOC_ROOT}^e2e.2"
    # The patient sees their documents, masked ones too; never another patient's record.
    assert documents(pair, f"{VISIBLE}@{PATIENT_DOMAIN}", VISIBLE) == (200, [visible, masked])
    assert documents(pair, f"{HIDDEN}@{PATIENT_DOMAIN}", HIDDEN) == (200, [])
    assert documents(pair, f"{HIDDEN}@{PATIENT_DOMAIN}", VISIBLE)[0] == 403
    # A professional sees what is not masked; the author (the DPI mailbox) sees it all.
    assert documents(pair, "alice@a.test", VISIBLE) == (200, [visible])
    assert documents(pair, "alice@a.test", HIDDEN) == (200, [hidden])
    assert documents(pair, DPI, VISIBLE) == (200, [visible, masked])


def test_a_mailbox_that_is_not_a_client_is_refused_at_rcpt(pair: Pair) -> None:
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=60)
    try:
        smtp.starttls(context=pair.client_context())
        smtp.login("alice@a.test", PASSWORD)
        smtp.mail("alice@a.test")
        code, text = smtp.rcpt(BRIDGE)
        assert code == 550 and text.startswith(b"5.7.1")
    finally:
        smtp.quit()
