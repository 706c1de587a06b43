"""The envoi-en-Y bridge: one message from a client mailbox in, deposits, forwards, one ack out.

The queue runner hands over every row addressed to the bridge (``route()`` →
Bridge). Like :class:`smtp.patients.PatientDesk`, the work is in two steps:

* :meth:`BridgeDesk.stage`, before any transaction: read the message, check
  every ``IHE_XDM.ZIP`` (:mod:`cda.intake`), decide who gets each package
  (:func:`policies.fan_out`) and store the forwards' bytes. Nothing here is
  visible to anyone: blobs nobody names are collected by the store's GC.
* :meth:`BridgeDesk.integrate`, inside the transaction that finishes the
  row: deposit each document, enqueue the forwards and the acknowledgement.

Crash safety is that one transaction plus an idempotence key: the deposits,
the forwards, the acknowledgement and the end of the queue row commit
together or not at all, and :func:`smtp.queue.first_time` records the
integration of this message (keyed on the bytes as received), so a retry
after a crash redoes everything from scratch and a second delivery of the
same message integrates nothing twice. Forwards and the acknowledgement are
deterministic (Message-IDs and queue ids derive from the message), so a
retried pass writes the same messages.

Decisions (documented in docs/dmp.md):

* A package is forwarded whole and as received, only when each of its
  clinical documents checked out and went in (deposited, replaced, or
  refused only because the patient opposed feeding the record: Y-7 blocks the
  deposit, not the letter to the treating doctor), and at least one is new.
  A package of duplicates only is not sent again.
* Its recipients are those every document of the package allows (Y-FAN-1):
  a package with one masked document goes to no professional.
* Professionals are the submission sets' ``intendedRecipient`` addresses
  outside the patient domain; the patient is ``<INS>@<patient domain>``,
  only in W mode.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.utils import getaddresses, parseaddr

from sqlalchemy import Connection

from annuaire import address_key, get_bal
from cda import store as dmp
from cda.ack import DocumentOutcome, OutcomeKind, build_ack
from cda.document import Patient
from cda.findings import Finding, Invalid
from cda.forward import build_forward
from cda.intake import MAX_PACKAGES, CheckedDocument, Package, check_package, xdm_attachments
from cda.xdm import XdmLimits
from mssante.logs import pseudonym
from mssante.metrics import Metrics
from mssante.store import BlobRef, BlobStore
from policies import fan_out, forwarded_headers, xdm_subject
from smtp.accept import parse_headers, read_header_block
from smtp.queue import Envelope, NewRecipient, Work, enqueue, enqueue_generated, first_time

__all__ = [
    "BRIDGE_CLIENT_TYPES",
    "BridgeDesk",
    "BridgeSettings",
    "Forward",
    "Staged",
    "is_bridge_client",
    "same_organisation",
]

log = logging.getLogger("mssante.bridge")

#: Mailbox types that may use the bridge (Y-2: the DPI's applicative mailbox).
BRIDGE_CLIENT_TYPES = frozenset({"APP", "ORG"})
#: Queue origins of what the bridge writes.
FORWARD_ORIGIN = "bridge"
ACK_ORIGIN = "bridge-ack"
_ONCE_KIND = "bridge"


@dataclass(frozen=True)
class BridgeSettings:
    address: str  # the bridge's address (From and Final-Recipient of the acks)
    hostname: str
    patient_domain: str
    clients: frozenset[str]  # address keys of the client mailboxes
    w_mode: bool = False
    patient_replies: bool = False
    test_mode: bool = False
    limits: XdmLimits = field(default_factory=XdmLimits)
    max_age: timedelta = timedelta(days=5)  # queue lifetime of what the bridge enqueues


@dataclass(frozen=True)
class Forward:
    """One forward of a package, already stored; enqueued only if the package went in."""

    queue_id: str
    message_id: str
    blob: BlobRef
    to: tuple[str, ...]


@dataclass(frozen=True)
class StagedPackage:
    package: Package
    forwards: tuple[Forward, ...]


@dataclass(frozen=True)
class Staged:
    head: bytes
    packages: tuple[StagedPackage, ...]
    problem: Finding | None  # the message itself carries nothing to integrate
    as_mdn: bool  # the sender asked for an MDN (to itself: the ack always goes to the sender)


class BridgeDesk:
    """Executes envoi-en-Y integrations for the queue runner (one per node)."""

    def __init__(
        self, settings: BridgeSettings, *, store: BlobStore, metrics: Metrics | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.key = address_key(settings.address)
        self._documents = (metrics or Metrics()).counter(
            "mssante_bridge_documents_total",
            "Documents the envoi-en-Y bridge integrated, per outcome "
            "(deposited, replaced, duplicate, refused).",
        )

    def committed(self, outcomes: Sequence[DocumentOutcome]) -> None:
        """Count what an integration did, once its transaction has committed."""
        for outcome in outcomes:
            self._documents.inc(outcome=outcome.kind)

    def concerns(self, address: str) -> bool:
        try:
            return address_key(address) == self.key
        except ValueError:
            return False

    def allowed(self, conn: Connection, sender: str) -> bool:
        return is_bridge_client(conn, self.settings.clients, sender)

    # ------------------------------------------------------------------ before the transaction

    def stage(self, work: Work) -> Staged:
        blob = work.message.blob
        head = read_header_block(self.store, blob.sha256)
        as_mdn = _asks_mdn(work.message.sender, head)
        base = Staged(head, (), None, as_mdn)
        try:
            attachments = xdm_attachments(self.store.read(blob.sha256))
        except Invalid as exc:
            return _with_problem(base, exc.findings[0])
        if not attachments:
            return _with_problem(
                base, Finding("message", "an IHE_XDM.ZIP attachment (IHE XDM)", "none")
            )
        staged: list[StagedPackage] = []
        for number, (name, data) in enumerate(attachments, 1):
            if number > MAX_PACKAGES:
                finding = Finding(name, f"at most {MAX_PACKAGES} packages per message", "more")
                staged.append(StagedPackage(Package(name, data, (), (), (finding,)), ()))
                continue
            package = check_package(
                name, data, limits=self.settings.limits, test_mode=self.settings.test_mode
            )
            staged.append(StagedPackage(package, self._forwards(work, number, package, head)))
        return Staged(head, tuple(staged), None, as_mdn)

    def _forwards(
        self, work: Work, number: int, package: Package, head: bytes
    ) -> tuple[Forward, ...]:
        if not package.forwardable:
            return ()
        documents = [d for d in package.documents if d.header is not None]
        patients = {d.header.patient.ins for d in documents if d.header is not None}
        patient = (
            f"{next(iter(patients))}@{self.settings.patient_domain}" if len(patients) == 1 else None
        )
        domain = f"@{self.settings.patient_domain}"
        professionals = tuple(a for a in package.intended if not a.lower().endswith(domain))
        decisions = [
            fan_out(
                d.visibility,
                professionals=professionals,
                patient=patient,
                w_mode=self.settings.w_mode,
            )
            for d in documents
        ]
        if any(d.refused for d in decisions):
            return ()
        to_professionals = tuple(
            p for p in decisions[0].professionals if all(p in d.professionals for d in decisions)
        )
        to_patient = patient if all(d.patient == patient for d in decisions) else None
        first = documents[0].header
        assert first is not None
        codes = [d.header.code.code for d in documents if d.header is not None]
        subject = _subject(first.title, first.patient)
        name, _ = parseaddr(str(parse_headers(head).get("From", "")))
        out: list[Forward] = []
        for tag, to, patient_copy in (
            ("P", to_professionals, False),
            ("T", (to_patient,) if to_patient else (), True),
        ):
            if not to:
                continue
            basis = work.message.received_sha256 or work.message.queue_id
            digest = hashlib.sha256(f"{basis}/{number}/{tag}".encode()).hexdigest()[:24]
            message_id = f"{digest}.y@{self.settings.hostname}"
            data = build_forward(
                sender=work.message.sender,
                sender_name=name,
                to=to,
                subject=subject,
                extra_headers=forwarded_headers(
                    codes, True, patient_copy, not self.settings.patient_replies
                ),
                package=package.data,
                documents=len(documents),
                date=work.message.received_at,
                message_id=message_id,
            )
            queue_id = f"{work.message.queue_id}Y{number:02d}{tag}"
            out.append(Forward(queue_id, message_id, self.store.put(data), tuple(to)))
        return tuple(out)

    # ------------------------------------------------------------------ in the transaction

    def integrate(
        self, conn: Connection, work: Work, staged: Staged, now: datetime
    ) -> list[DocumentOutcome]:
        """Deposit, forward, acknowledge; the outcomes, none when integrated before."""
        ack_queue_id = f"{work.message.queue_id}YA"
        if not first_time(conn, _ONCE_KIND, work, ack_queue_id, now):
            log.info(
                "bridge message already integrated",
                extra={"fields": {"queue_id": work.message.queue_id}},
            )
            return []
        outcomes: list[DocumentOutcome] = []
        if staged.problem is not None:
            outcomes.append(DocumentOutcome("", "", "refused", 906, (staged.problem,)))
        for item in staged.packages:
            outcomes.extend(self._package(conn, work, item, now))
        data = build_ack(
            outcomes=outcomes,
            original_headers=staged.head,
            bridge_address=self.settings.address,
            to=work.message.sender,
            as_mdn=staged.as_mdn,
            reporting_ua=self.settings.hostname,
            now=now,
            message_id=f"{ack_queue_id}.ack@{self.settings.hostname}",
        )
        enqueue_generated(
            conn,
            self.store,
            data,
            to=work.message.sender,
            origin=ACK_ORIGIN,
            client=self.settings.hostname,
            now=now,
            max_age=self.settings.max_age,
            queue_id=ack_queue_id,
        )
        log.info(
            "bridge integration",
            extra={
                "fields": {
                    "queue_id": work.message.queue_id,
                    "from": pseudonym(work.message.sender),
                    "documents": len(outcomes),
                    "refused": sum(1 for o in outcomes if not o.ok),
                }
            },
        )
        return outcomes

    def _package(
        self, conn: Connection, work: Work, item: StagedPackage, now: datetime
    ) -> list[DocumentOutcome]:
        package = item.package
        if package.findings:
            return [DocumentOutcome("", package.name[:128], "refused", 906, package.findings)]
        results = [self._deposit(conn, work, d, now) for d in package.documents]
        went_in = [kind in ("deposited", "replaced") or opposed for kind, _, opposed in results]
        forward = all(
            w or kind == "duplicate" for w, (kind, _, _) in zip(went_in, results, strict=True)
        ) and any(went_in)
        ids: tuple[str, ...] = ()
        if forward and item.forwards:
            for fw in item.forwards:
                self._enqueue_forward(conn, work, fw, now)
            ids = tuple(f"<{fw.message_id}>" for fw in item.forwards)
        return [
            DocumentOutcome(
                d.unique_id,
                d.title,
                outcome.kind,
                outcome.ack_code if outcome.kind == "refused" else None,
                outcome.findings,
                ids if w else (),
            )
            for d, (_, outcome, _), w in zip(package.documents, results, went_in, strict=True)
        ]

    def _deposit(
        self, conn: Connection, work: Work, document: CheckedDocument, now: datetime
    ) -> tuple[OutcomeKind, DocumentOutcome, bool]:
        """(kind, outcome, refused only for the patient's opposition) of one document."""
        if not document.ok or document.header is None:
            refused = DocumentOutcome(
                document.unique_id, document.title, "refused", document.ack_code, document.findings
            )
            return "refused", refused, False
        result = dmp.deposit(
            conn,
            self.store,
            document.header,
            document.data,
            visibility=document.visibility,
            author=address_key(work.message.sender),
            now=now,
            test_mode=self.settings.test_mode,
            may_replace=lambda previous: same_organisation(conn, work.message.sender, previous),
        )
        opposed = result.kind == "refused" and dmp.is_opposed(conn, document.header.patient.ins)
        outcome = DocumentOutcome(
            document.unique_id, document.title, result.kind, result.ack_code, result.findings
        )
        return result.kind, outcome, opposed

    def _enqueue_forward(self, conn: Connection, work: Work, fw: Forward, now: datetime) -> None:
        envelope = Envelope(
            sender=work.message.sender,
            recipients=tuple(NewRecipient(a) for a in fw.to),
            origin=FORWARD_ORIGIN,
            client=self.settings.address,
        )
        enqueue(
            conn, fw.blob, envelope, now=now, max_age=self.settings.max_age, queue_id=fw.queue_id
        )


def is_bridge_client(conn: Connection, clients: frozenset[str], sender: str) -> bool:
    """Y-2: a listed client mailbox (address keys in ``clients``), hosted here, APP or ORG."""
    try:
        key = address_key(sender)
    except ValueError:
        return False
    if key not in clients:
        return False
    bal = get_bal(conn, key)
    return bal is not None and bal.bal_type in BRIDGE_CLIENT_TYPES


def same_organisation(conn: Connection, sender: str, previous: str) -> bool:
    """Y-ACK-1 901: may ``sender`` replace a version ``previous`` deposited?

    Yes when it is the same mailbox, or when both are hosted mailboxes of the
    same facility (FINESS, SIRET or SIREN): the hospital's DPI and its
    secretariat may correct each other's documents, another hospital may not.
    """
    try:
        if address_key(sender) == address_key(previous):
            return True
    except ValueError:
        return False
    mine, theirs = get_bal(conn, sender), get_bal(conn, previous)
    if mine is None or theirs is None or not mine.facility_id:
        return False
    return (mine.facility_id_type, mine.facility_id) == (
        theirs.facility_id_type,
        theirs.facility_id,
    )


def _asks_mdn(sender: str, head: bytes) -> bool:
    """The sender asked for an MDN with ``Disposition-Notification-To``, to itself.

    RFC 8098 §2.1: no automatic MDN to an address other than the return path;
    then the sender gets the plain acknowledgement.
    """
    asked = parse_headers(head).get_all("Disposition-Notification-To") or []
    addresses = [a for _, a in getaddresses([str(v) for v in asked]) if a]
    try:
        return len(addresses) == 1 and address_key(addresses[0]) == address_key(sender)
    except ValueError:
        return False


def _with_problem(staged: Staged, problem: Finding) -> Staged:
    return Staged(staged.head, (), problem, staged.as_mdn)


def _subject(title: str, patient: Patient) -> str:
    """The Y-XDM-1 subject; a partial birth date (YYYY or YYYYMM) is left out."""
    birth = patient.birth_date
    try:
        born: date | None = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
    except ValueError:
        born = None
    return xdm_subject(title, patient.birth_family_name, patient.first_given_name, born)
