# covers: Y-1, Y-2, Y-3, Y-4, Y-7, Y-ACK-1, Y-FAN-1, Y-XDM-1, Y-XDM-2, Y-INS-1, Y-VIS-1
"""The envoi-en-Y bridge in the queue runner: a corpus of packages, each with its exact outcome.

One real node (``mssante init``), its queue runner in-process with an injected
clock and a real SQLite file. A message from the DPI's APP mailbox to the
bridge is enqueued as submission would, the runner takes it, and the test
reads what a user would see: the acknowledgement queued to the sender, the
forwards queued to the recipients, the documents in the store.
"""

from __future__ import annotations

import asyncio
import email
import email.header
import hashlib
import importlib
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from annuaire.ins import ins_key
from cda import store as dmp
from cda.bridge import BridgeDesk
from cda.codes import INS_C_LEGACY, TRE_A05_OID
from cda.xdm import XdmLimits
from mssante import config as cfg
from mssante.app import Runtime
from mssante.clock import FakeClock
from mssante.schema import auto_replies, dmp_documents, dmp_oppositions, queue_messages
from smtp.queue import Envelope, NewRecipient, delete_message, enqueue, list_entries
from smtp.runner import QueueRunner
from smtp.service import smtp_services

from cdagen import DOC_ROOT, SET_ROOT, make_cda, xdm_document, xdm_package
from nodes import add_config, mssante, rpps

BRIDGE = "dmp-bridge@a.test"
DPI = "dpi@a.test"
SECRETARIAT = "secretariat@a.test"  # an ORG mailbox of the same hospital (same FINESS)
ELSEWHERE = "dpi-autre@a.test"  # another hospital's DPI, hosted here too
DOCTOR = "dr.traitant@a.test"
OTHER_PS = "cardio@b.test"
PATIENT_DOMAIN = "patient.mssante.fr"


def ins(n: int) -> str:
    body = f"2800575{n:06d}"
    return body + ins_key(body)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("bridge")
    data = work / "a"
    result = mssante("init", "--demo", "--data-dir", str(data), "--domain", "a.test")
    assert result.returncode == 0, result.stderr
    add_config(
        data / cfg.CONFIG_NAME,
        f'[node]\nbridge_address = "{BRIDGE}"\n[dmp]\n'
        f'bridge_clients = ["{DPI}", "{SECRETARIAT}", "{ELSEWHERE}"]\n',
    )
    pw = work / "pw"
    pw.write_text("correct horse battery staple")
    for address, kind, ident in (
        (DPI, "APP", ["--finess", "750712184"]),
        (SECRETARIAT, "ORG", ["--finess", "750712184"]),
        (ELSEWHERE, "APP", ["--finess", "130783236"]),
        (DOCTOR, "PER", ["--rpps", rpps(1)]),
    ):
        args = ["bal", "add", address, "--type", kind, *ident, "--password-file", str(pw)]
        assert mssante(*args, "--data-dir", str(data)).returncode == 0
    return data


@dataclass
class Bridge:
    runtime: Runtime
    runner: QueueRunner
    clock: FakeClock
    n: int = 0

    def send(
        self, *packages: bytes, sender: str = DPI, mdn: bool = False, mdn_to: str | None = None
    ) -> str:
        """Enqueue a message with ``packages`` attached, as submission would; its queue id."""
        self.n += 1
        message = EmailMessage(policy=SMTP)
        message["From"] = f"DPI de test <{sender}>"
        message["To"] = BRIDGE
        message["Subject"] = "XDM/1.0/DDM+Lettre de liaison"
        message["Message-ID"] = f"<y{self.n}.{id(self)}@a.test>"
        if mdn:
            message["Disposition-Notification-To"] = mdn_to or sender
        message.set_content("Documents joints.")
        for data in packages:
            message.add_attachment(
                data, maintype="application", subtype="zip", filename="IHE_XDM.ZIP"
            )
        return self.enqueue(message.as_bytes(), sender)

    def enqueue(self, data: bytes, sender: str = DPI) -> str:
        blob = self.runtime.store.put(data)
        envelope = Envelope(
            sender,
            (NewRecipient(BRIDGE),),
            origin="submission",
            client=sender,
            received_sha256=hashlib.sha256(data).hexdigest(),
            received_size=len(data),
        )
        with self.runtime.db.transaction() as conn:
            return enqueue(conn, blob, envelope, now=self.clock.now(), max_age=timedelta(days=5))

    def run(self) -> None:
        asyncio.run(self.runner.run_once())

    def queued(self, origin: str | None = None) -> list[tuple[str, list[str], bytes]]:
        """(queue id, recipients, bytes) of queued messages, optionally of one origin."""
        with self.runtime.db.read() as conn:
            entries = list_entries(conn)
        out = []
        for e in entries:
            if origin is not None and e.origin != origin:
                continue
            with self.runtime.db.read() as conn:
                sha = conn.execute(
                    select(queue_messages.c.blob_sha256).where(
                        queue_messages.c.queue_id == e.queue_id
                    )
                ).scalar_one()
            out.append((e.queue_id, [r[0] for r in e.recipients], self.runtime.store.read(sha)))
        return out

    def ack(self) -> tuple[str, list[str], str | None]:
        return self.ack_to(DPI)

    def ack_to(self, sender: str) -> tuple[str, list[str], str | None]:
        """The one acknowledgement queued: (subject, French document lines, Disposition)."""
        acks = self.queued("bridge-ack")
        assert len(acks) == 1, [a[0] for a in acks]
        _, to, data = acks[0]
        assert to == [sender]
        message = email.message_from_bytes(data)
        text, disposition = "", None
        for part in message.walk():
            if part.get_content_type() == "text/plain" and not text:
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                text = payload.decode("utf-8")
            if part.get_content_type() == "message/disposition-notification":
                raw = part.get_payload()
                body = raw[0].as_string() if isinstance(raw, list) else str(raw)
                disposition = next(
                    line.split(":", 1)[1].strip()
                    for line in body.splitlines()
                    if line.lower().startswith("disposition:")
                )
        french = text.split("-" * 72)[0]
        lines = [line for line in french.splitlines() if line.startswith("- ")]
        subject = str(email.header.make_header(email.header.decode_header(message["Subject"])))
        return subject, lines, disposition

    def forwards(self) -> list[tuple[list[str], bytes]]:
        return [(to, data) for _, to, data in self.queued("bridge")]

    def documents(self, patient: str) -> list[dmp.DocumentRecord]:
        with self.runtime.db.transaction() as conn:
            return dmp.documents(
                conn, patient, view="professional", reader=DPI, now=self.clock.now(),
                include_superseded=True,
            )  # fmt: skip

    def clear_queue(self) -> None:
        with self.runtime.db.transaction() as conn:
            for entry in list_entries(conn):
                delete_message(conn, entry.queue_id)


@pytest.fixture
def bridge(data_dir: Path) -> Iterator[Bridge]:
    clock = FakeClock(current=datetime(2026, 12, 5, 9, 0, tzinfo=UTC))
    runtime = Runtime.open(cfg.load(data_dir), clock=clock)
    runner = next(s for s in smtp_services(runtime) if isinstance(s, QueueRunner))
    here = Bridge(runtime, runner, clock)
    yield here
    here.clear_queue()
    with runtime.db.transaction() as conn:
        for table in (dmp_documents, dmp_oppositions, auto_replies):
            conn.execute(delete(table))
    runtime.db.dispose()


def letter(n: int, *, version: int = 1, patient: int = 1, **cda: object) -> bytes:
    return make_cda(
        doc_id=(DOC_ROOT, f"{n}.{version}"),
        set_id=(SET_ROOT, str(n)),
        version=str(version),
        ins=ins(patient),
        **cda,  # type: ignore[arg-type]
    )


def package(
    n: int,
    *,
    version: int = 1,
    patient: int = 1,
    flags: tuple[str, ...] = (),
    intended: tuple[str, ...] = (DOCTOR, OTHER_PS),
    cda: dict[str, object] | None = None,
    entry: dict[str, object] | None = None,
) -> bytes:
    data = letter(n, version=version, patient=patient, **(cda or {}))
    options: dict[str, object] = {"unique_id": f"{DOC_ROOT}^{n}.{version}", "ins": ins(patient)}
    options.update(entry or {})
    return xdm_package(xdm_document(data, flags=flags, **options), intended=intended)  # type: ignore[arg-type]


def uid(n: int, version: int = 1) -> str:
    return f"{DOC_ROOT}^{n}.{version}"


# --------------------------------------------------------------------------- success


def test_a_valid_document_is_deposited_forwarded_and_acknowledged(bridge: Bridge) -> None:
    bridge.send(package(1), mdn=True)
    bridge.run()
    subject, lines, disposition = bridge.ack()
    assert disposition == "automatic-action/MDN-sent-automatically; processed"
    assert subject == "XDM/1.0/DDM+Lettre de liaison"
    assert len(lines) == 1 and lines[0].startswith(f"- {uid(1)} ")
    assert "intégré (nouveau document)" in lines[0]
    [(to, data)] = bridge.forwards()
    assert to == [DOCTOR, OTHER_PS]  # W mode off: no patient copy (Y-1)
    forward = email.message_from_bytes(data)
    assert forward["Message-ID"] in lines[0]  # the ack names the fan-out
    assert forward["X-MSS-CODECDA"] == "11490-0" and forward["X-MSS-INS"] == "O"
    assert forward["X-MSS-MES"] is None  # toward professionals, never FIN
    subject_line = str(email.header.make_header(email.header.decode_header(forward["Subject"])))
    assert subject_line == "XDM/1.0/DDM+Lettre de liaison de sortie DUPONT JEANNE 15/05/1980"
    assert DPI in forward["From"]
    [zipped] = [p.get_payload(decode=True) for p in forward.walk() if p.get_filename()]
    assert zipped == package(1)  # the package as received
    [record] = bridge.documents(ins(1))
    assert (record.unique_id, record.status, record.author) == (uid(1), "current", DPI)
    assert (
        'mssante_bridge_documents_total{outcome="deposited"} 1' in bridge.runtime.metrics.render()
    )
    # The bridge's row is done, and nothing else of the original stays queued.
    assert {e[1][0] for e in bridge.queued("submission")} == set()


def test_no_automatic_mdn_to_a_third_party(bridge: Bridge) -> None:
    # RFC 8098 §2.1: the acknowledgement still goes to the sender, as a plain message.
    bridge.send(package(24), mdn=True, mdn_to="someone.else@b.test")
    bridge.run()
    _, lines, disposition = bridge.ack()  # asserts it goes to the DPI mailbox
    assert disposition is None and len(lines) == 1


def test_two_packages_in_one_message_get_one_acknowledgement(bridge: Bridge) -> None:
    bridge.send(package(2), package(3, patient=2))
    bridge.run()
    _, lines, disposition = bridge.ack()
    assert disposition is None  # no MDN asked: a plain message
    assert [line.split()[1] for line in lines] == [uid(2), uid(3)]
    assert len(bridge.forwards()) == 2


def test_replacement_by_version_and_by_rplc(bridge: Bridge) -> None:
    bridge.send(package(4))
    bridge.run()
    bridge.clear_queue()
    bridge.send(package(4, version=2))
    rplc = package(4, version=3, cda={"replaces": (DOC_ROOT, "4.2")})
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "remplace la version précédente" in lines[0]
    bridge.clear_queue()
    bridge.send(rplc)
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "remplace la version précédente" in lines[0]
    records = {r.unique_id: r.status for r in bridge.documents(ins(1))}
    assert records == {uid(4, 1): "superseded", uid(4, 2): "superseded", uid(4, 3): "current"}
    bridge.clear_queue()
    bridge.send(package(4, version=2, cda={"title": "Autre"}, entry={"title": "Autre"}))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "erreur 906" in lines[0]  # same id, other content


def test_only_the_author_or_their_organisation_may_replace(bridge: Bridge) -> None:
    bridge.send(package(26))
    bridge.run()
    bridge.clear_queue()
    bridge.send(package(26, version=2), sender=ELSEWHERE)  # another hospital
    bridge.run()
    subject, lines, _ = bridge.ack_to(ELSEWHERE)
    assert subject.startswith("[KO Intégration système !][901] ") and "erreur 901^" in lines[0]
    assert bridge.forwards() == []
    bridge.clear_queue()
    bridge.send(package(26, version=2), sender=SECRETARIAT)  # the same hospital
    bridge.run()
    _, lines, _ = bridge.ack_to(SECRETARIAT)
    assert "remplace la version précédente" in lines[0]
    assert {r.unique_id: r.status for r in bridge.documents(ins(1))} == {
        uid(26, 1): "superseded",
        uid(26, 2): "current",
    }


def test_a_stale_version_is_refused_with_900(bridge: Bridge) -> None:
    bridge.send(package(5, version=3))
    bridge.run()
    bridge.clear_queue()
    bridge.send(package(5, version=2))
    bridge.run()
    subject, lines, _ = bridge.ack()
    assert subject.startswith("[KO Intégration système !][900] ")
    assert "erreur 900^" in lines[0]
    assert bridge.forwards() == []  # an outdated version is not sent on


def test_the_same_document_again_is_a_duplicate_and_not_sent_twice(bridge: Bridge) -> None:
    bridge.send(package(6))
    bridge.run()
    bridge.clear_queue()
    bridge.send(package(6))  # a new message carrying the same package
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "déjà intégré" in lines[0]
    assert bridge.forwards() == []
    assert len(bridge.documents(ins(1))) == 1


# --------------------------------------------------------------------------- visibility


@pytest.mark.parametrize(
    ("flags", "w_mode", "expected"),
    [
        ((), False, [[DOCTOR, OTHER_PS]]),
        ((), True, [[DOCTOR, OTHER_PS], [f"{ins(1)}@{PATIENT_DOMAIN}"]]),
        (("INVISIBLE_PATIENT",), True, [[DOCTOR, OTHER_PS]]),
        (("MASQUE_PS",), True, [[f"{ins(1)}@{PATIENT_DOMAIN}"]]),
        (("MASQUE_PS",), False, []),
        (("INVISIBLE_REP_LEGAUX",), True, [[DOCTOR, OTHER_PS], [f"{ins(1)}@{PATIENT_DOMAIN}"]]),
    ],
)
def test_fan_out_follows_the_visibility_flags(
    bridge: Bridge, flags: tuple[str, ...], w_mode: bool, expected: list[list[str]]
) -> None:
    bridge.runner.bridge = BridgeDesk(
        replace(_desk(bridge).settings, w_mode=w_mode), store=bridge.runtime.store
    )
    bridge.send(package(7, flags=flags))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "intégré (nouveau document)" in lines[0]
    forwards = bridge.forwards()
    assert [to for to, _ in forwards] == expected
    for to, data in forwards:
        message = email.message_from_bytes(data)
        # Toward the patient, the copy closes the exchange (MSSC-FIN-1): no reply wanted.
        assert message["X-MSS-MES"] == ("FIN" if to[0].endswith(PATIENT_DOMAIN) else None)
    [record] = bridge.documents(ins(1))
    assert {v.value for v in record.visibility} == {
        "INVISIBLE_REPRESENTANTS_LEGAUX" if f == "INVISIBLE_REP_LEGAUX" else f for f in flags
    }


def test_the_forbidden_combination_is_refused(bridge: Bridge) -> None:
    bridge.send(package(8, flags=("INVISIBLE_PATIENT", "MASQUE_PS")))
    bridge.run()
    subject, lines, _ = bridge.ack()
    assert "[906]" in subject and "erreur 906" in lines[0]
    assert bridge.forwards() == [] and bridge.documents(ins(1)) == []


# --------------------------------------------------------------------------- refusals


def test_an_unqualified_ins_is_refused_with_903(bridge: Bridge) -> None:
    bridge.send(package(9, cda={"ins_oid": INS_C_LEGACY}, entry={"ins_oid": INS_C_LEGACY}))
    bridge.run()
    subject, lines, _ = bridge.ack()
    assert "[903]" in subject and "erreur 903^" in lines[0]
    assert bridge.forwards() == []


def test_incomplete_ins_traits_are_refused_with_905(bridge: Bridge) -> None:
    bridge.send(package(10, cda={"birth_place": None}))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "erreur 905^" in lines[0] and "birthplace" in lines[0]


def test_opposition_blocks_the_deposit_not_the_letter(bridge: Bridge) -> None:
    # covers: Y-7
    with bridge.runtime.db.transaction() as conn:
        dmp.set_opposition(conn, ins(3), True, actor="test", now=bridge.clock.now())
    bridge.send(package(11, patient=3))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "erreur 906" in lines[0] and "opposed" in lines[0]
    assert bridge.documents(ins(3)) == []
    [(to, _)] = bridge.forwards()
    assert to == [DOCTOR, OTHER_PS]


def test_metadata_that_names_another_patient_is_refused(bridge: Bridge) -> None:
    bridge.send(package(12, entry={"ins": ins(2)}))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "patientId" in lines[0] and "erreur 906" in lines[0]
    assert ins(2) not in lines[0] and ins(1) not in lines[0]  # no INS in the ack text
    assert bridge.forwards() == []
    assert bridge.documents(ins(1)) == [] and bridge.documents(ins(2)) == []


def test_metadata_with_another_type_code_is_refused(bridge: Bridge) -> None:
    bridge.send(package(13, entry={"type_code": "11502-2"}))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "typeCode" in lines[0] and "11502-2" in lines[0]


def test_a_type_code_unfit_for_a_header_is_refused(bridge: Bridge) -> None:
    bad = "IMG\r\nBcc: x@y"
    bridge.send(
        package(25, cda={"code": bad, "code_system": TRE_A05_OID}, entry={"type_code": bad})
    )
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "erreur 906" in lines[0] and "code/@code" in lines[0]
    assert bridge.forwards() == [] and bridge.documents(ins(1)) == []


def _rezip(data: bytes, change: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, change.get(info.filename, src.read(info)))
        for name, content in change.items():
            if name not in src.namelist():
                dst.writestr(name, content)
    return out.getvalue()


def test_a_bad_hash_refuses_that_document_only(bridge: Bridge) -> None:
    good = package(14)
    tampered = _rezip(package(15), {"IHE_XDM/SUBSET01/DOC00001.XML": letter(15, title="Changé")})
    bridge.send(tampered, good)
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "erreur 906" in lines[0] and "hash" in lines[0].lower()
    assert "intégré (nouveau document)" in lines[1]
    assert [r.unique_id for r in bridge.documents(ins(1))] == [uid(14)]
    assert len(bridge.forwards()) == 1


def test_an_oversized_document_is_refused(bridge: Bridge) -> None:
    cap = len(letter(16)) - 1  # the document is one byte over the cap
    bridge.runner.bridge = BridgeDesk(
        replace(_desk(bridge).settings, limits=XdmLimits(max_entry_size=cap)),
        store=bridge.runtime.store,
    )
    bridge.send(package(16))
    bridge.run()
    subject, lines, _ = bridge.ack()
    assert "[906]" in subject and len(lines) == 1
    assert "erreur 906" in lines[0] and f"attendu at most {cap} bytes" in lines[0]
    assert bridge.documents(ins(1)) == [] and bridge.forwards() == []


@pytest.mark.parametrize(
    "hostile",
    [
        "traversal",
        "absolute",
        "bomb",
        "not_a_zip",
    ],
)
def test_hostile_archives_are_refused_whole(bridge: Bridge, hostile: str) -> None:
    base = package(18)
    if hostile == "traversal":
        data = _rezip(base, {"../../etc/cron.d/x": b"* * * * * root true"})
    elif hostile == "absolute":
        data = _rezip(base, {"/etc/passwd": b"x"})
    elif hostile == "bomb":
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("IHE_XDM/SUBSET01/METADATA.XML", b"<a/>")
            zf.writestr("IHE_XDM/SUBSET01/BOMB.XML", b"\0" * (40 * 1024 * 1024))
        data = out.getvalue()
    else:
        data = b"PK\x03\x04 this is not a zip at all"
    bridge.send(data)
    bridge.run()
    subject, lines, _ = bridge.ack()
    assert "[906]" in subject and len(lines) == 1 and "erreur 906" in lines[0]
    assert bridge.forwards() == [] and bridge.documents(ins(1)) == []


@pytest.mark.parametrize(
    "payload",
    [
        b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<ClinicalDocument xmlns="urn:hl7-org:v3">&x;</ClinicalDocument>',
        (
            '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY l0 "lol">'
            + "".join(f'<!ENTITY l{n} "{f"&l{n - 1};" * 10}">' for n in range(1, 10))
            + ']><ClinicalDocument xmlns="urn:hl7-org:v3">&l9;</ClinicalDocument>'
        ).encode(),
    ],
    ids=["external-entity", "billion-laughs"],
)
def test_entities_in_a_cda_are_refused_without_harm(bridge: Bridge, payload: bytes) -> None:
    doc = xdm_document(payload, unique_id=uid(19), ins=ins(1))
    bridge.send(xdm_package(doc, intended=(DOCTOR,)))
    bridge.run()
    _, lines, _ = bridge.ack()
    assert "erreur 906" in lines[0] and ("DOCTYPE" in lines[0] or "XML" in lines[0])
    assert "root:" not in lines[0] and "lollol" not in lines[0]  # nothing expanded
    assert bridge.forwards() == []


def test_a_message_without_a_package_is_answered(bridge: Bridge) -> None:
    bridge.send()
    bridge.run()
    subject, lines, _ = bridge.ack()
    assert "[906]" in subject and "IHE_XDM.ZIP" in lines[0]


def test_only_listed_app_or_org_mailboxes_may_use_the_bridge(bridge: Bridge) -> None:
    bridge.send(package(20), sender=DOCTOR)  # a listed mailbox? no: a PER, not a client
    bridge.run()
    assert bridge.queued("bridge-ack") == []
    [(_, to, dsn)] = bridge.queued("dsn")
    assert to == [DOCTOR] and b"5.7.1" in dsn
    assert bridge.documents(ins(1)) == []


def _desk(bridge: Bridge) -> BridgeDesk:
    desk = bridge.runner.bridge
    assert desk is not None
    return desk


# --------------------------------------------------------------------------- crashes


def _fail_on(calls: int) -> object:
    """A stand-in that raises on its ``calls``-th call and passes through before."""

    def wrap(real: object) -> object:
        count = 0

        def stand_in(*args: object, **kwargs: object) -> object:
            nonlocal count
            count += 1
            if count == calls:
                raise OSError("injected crash")
            return real(*args, **kwargs)  # type: ignore[operator]

        return stand_in

    return wrap


@pytest.mark.parametrize(
    ("target", "calls"),
    [
        ("cda.store.deposit", 2),  # between the two deposits
        ("cda.bridge.enqueue", 2),  # after the first forward was enqueued
        ("cda.bridge.enqueue_generated", 1),  # everything done but the acknowledgement
        ("smtp.runner.finish", 1),  # everything done but the end of the queue row
    ],
)
def test_a_crash_at_any_step_neither_loses_nor_doubles(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch, target: str, calls: int
) -> None:
    module, _, name = target.rpartition(".")
    owner = importlib.import_module(module)
    real = getattr(owner, name)
    monkeypatch.setattr(owner, name, _fail_on(calls)(real))  # type: ignore[operator]
    bridge.send(package(21), package(22, patient=2), mdn=True)
    bridge.run()
    # The pass rolled back whole: no deposit, no forward, no ack; the row waits.
    assert bridge.documents(ins(1)) == [] and bridge.documents(ins(2)) == []
    assert bridge.forwards() == [] and bridge.queued("bridge-ack") == []
    [(_, to, _)] = bridge.queued("submission")
    assert to == [BRIDGE]
    monkeypatch.setattr(owner, name, real)
    bridge.clock.advance(timedelta(hours=1))  # past the retry delay
    bridge.run()
    assert [r.unique_id for r in bridge.documents(ins(1))] == [uid(21)]
    assert [r.unique_id for r in bridge.documents(ins(2))] == [uid(22)]
    assert len(bridge.forwards()) == 2
    _, lines, disposition = bridge.ack()
    assert disposition == "automatic-action/MDN-sent-automatically; processed"
    assert len(lines) == 2 and bridge.queued("submission") == []


def test_the_same_message_delivered_twice_is_integrated_once(bridge: Bridge) -> None:
    message = EmailMessage(policy=SMTP)
    message["From"] = DPI
    message["To"] = BRIDGE
    message["Subject"] = "XDM/1.0/DDM+Lettre"
    message["Message-ID"] = "<twice@a.test>"
    message.set_content("Documents joints.")
    message.add_attachment(
        package(23, flags=("INVISIBLE_PATIENT",)),
        maintype="application",
        subtype="zip",
        filename="IHE_XDM.ZIP",
    )
    data = message.as_bytes()
    bridge.enqueue(data)
    bridge.enqueue(data)  # a client that resent after losing our 250
    bridge.run()  # both rows in one batch, possibly in parallel
    assert bridge.queued("submission") == []
    assert len(bridge.queued("bridge-ack")) == 1
    assert len(bridge.forwards()) == 1
    assert [r.unique_id for r in bridge.documents(ins(1))] == [uid(23)]
