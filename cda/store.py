"""The DMP-like document store: a patient's record fed by the envoi-en-Y bridge.

Pure functions over a SQLAlchemy connection, inside the caller's transaction,
with the CDA bytes in the message's :class:`~mssante.store.BlobStore` and the
time passed in (Y-3 to Y-7):

* :func:`deposit` files one parsed CDA: new, a new version that supersedes
  the current one (by ``setId`` and ``versionNumber``, or by its RPLC
  ``parentDocument/id``), the same ``id`` again (a no-op), or a refusal with
  findings and the Y-ACK-1 code for the sender's acknowledgement.
* :func:`documents` lists a record as a professional or the patient sees it.
* :func:`set_visibility`, :func:`set_opposition` change flags; :func:`run_timers`
  fires the Y-5 delays; :func:`audit_trail` is what the patient can read (Y-6).

Superseded versions are never deleted: they stay readable with
``include_superseded``. The audit entries name the patient by
:func:`mssante.logs.pseudonym` of the INS and the document by its row id and a
hash of its unique id, never by title or INS.

Y-5 delays are calendar months from the deposit (UTC), the end of the month
when the day does not exist (31 January + 1 month = 28 or 29 February): the
reference says "J+1 month", and counting 30 days would drift from what the
patient is told. A new version restarts them from its own deposit.
"""

from __future__ import annotations

import calendar
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, Row, delete, insert, select, update

from annuaire.ins import validate_ins
from cda.codes import INS_C_LEGACY, Visibility, accepted_ins_oids
from cda.document import CdaHeader
from cda.findings import Finding, Invalid
from mssante import audit
from mssante.audit import AuditEntry
from mssante.logs import pseudonym
from mssante.schema import audit_log, dmp_documents, dmp_oppositions
from mssante.store import BlobRef, BlobStore

__all__ = [
    "ACK_NOT_AUTHOR",
    "ACK_NOT_LATEST",
    "ACK_NO_INS",
    "ACK_OTHER",
    "AUTO_VISIBLE_MONTHS",
    "NOTIFY_MONTHS",
    "TIMER_ACTOR",
    "DepositResult",
    "DocumentRecord",
    "TimerReport",
    "add_months",
    "audit_trail",
    "deposit",
    "documents",
    "get_document",
    "is_opposed",
    "run_timers",
    "set_opposition",
    "set_visibility",
]

#: Y-ACK-1 codes the store decides (902, 904, 905 belong to patient resolution).
ACK_NOT_LATEST = 900  # replacing a version that is not the latest
ACK_NOT_AUTHOR = 901  # replacing another author's (organisation's) document
ACK_NO_INS = 903  # patient ids but no qualified INS
ACK_OTHER = 906

#: Y-5 delays, in calendar months after the deposit.
NOTIFY_MONTHS = 1
AUTO_VISIBLE_MONTHS = 3
#: The actor of the audit entries the timers write.
TIMER_ACTOR = "dmp-timer"

CURRENT = "current"
SUPERSEDED = "superseded"

_PATIENT_ID = "ClinicalDocument/recordTarget/patientRole/id"
_DOC_ID = "ClinicalDocument/id"
_VERSION = "ClinicalDocument/versionNumber"
_RPLC = "ClinicalDocument/relatedDocument/parentDocument/id"
_VISIBILITY = "DocumentEntry/confidentialityCode (TRE_A07)"

View = Literal["professional", "patient"]
DepositKind = Literal["deposited", "replaced", "duplicate", "refused"]


# --- records ------------------------------------------------------------------


@dataclass(frozen=True)
class DocumentRecord:
    id: int
    unique_id: str
    set_id: str
    version: int
    ins: str
    ins_oid: str
    type_code: str
    type_system: str
    title: str
    blob: BlobRef
    author: str
    status: str  # current, superseded
    superseded_by: int | None
    visibility: frozenset[Visibility]
    deposited_at: datetime
    visible_since: datetime | None
    patient_notified_at: datetime | None


@dataclass(frozen=True)
class DepositResult:
    """What happened to one document; ``ack_code`` is set on refusals only."""

    kind: DepositKind
    document_id: int | None = None  # the new row, or the existing one for a duplicate
    replaced_id: int | None = None
    findings: tuple[Finding, ...] = ()
    ack_code: int | None = None


@dataclass(frozen=True)
class TimerReport:
    notified: tuple[int, ...] = ()  # document ids whose patient notice fell due
    made_visible: tuple[int, ...] = ()  # document ids made visible automatically
    patients_notified: int = 0  # calls to ``notify`` (one per patient per run)


# --- helpers ------------------------------------------------------------------


def add_months(at: datetime, months: int) -> datetime:
    """``at`` plus calendar months, clamped to the last day of a shorter month."""
    years, month0 = divmod(at.month - 1 + months, 12)
    year, month = at.year + years, month0 + 1
    day = min(at.day, calendar.monthrange(year, month)[1])
    return at.replace(year=year, month=month, day=day)


def _flags(row: Row[Any]) -> frozenset[Visibility]:
    flags = set()
    if row.invisible_patient:
        flags.add(Visibility.INVISIBLE_PATIENT)
    if row.invisible_legal_reps:
        flags.add(Visibility.INVISIBLE_REPRESENTANTS_LEGAUX)
    if row.masked_ps:
        flags.add(Visibility.MASQUE_PS)
    return frozenset(flags)


def _record(row: Row[Any]) -> DocumentRecord:
    return DocumentRecord(
        id=row.id,
        unique_id=row.unique_id,
        set_id=row.set_id,
        version=row.version,
        ins=row.ins,
        ins_oid=row.ins_oid,
        type_code=row.type_code,
        type_system=row.type_system,
        title=row.title,
        blob=BlobRef(row.blob_sha256, row.size),
        author=row.author,
        status=row.status,
        superseded_by=row.superseded_by,
        visibility=_flags(row),
        deposited_at=row.deposited_at,
        visible_since=row.visible_since,
        patient_notified_at=row.patient_notified_at,
    )


def _flag_values(visibility: frozenset[Visibility]) -> dict[str, bool]:
    return {
        "invisible_patient": Visibility.INVISIBLE_PATIENT in visibility,
        "invisible_legal_reps": Visibility.INVISIBLE_REPRESENTANTS_LEGAUX in visibility,
        "masked_ps": Visibility.MASQUE_PS in visibility,
    }


def _flag_text(visibility: Iterable[Visibility]) -> str:
    return ",".join(sorted(v.value for v in visibility))


def _forbidden_combination(visibility: frozenset[Visibility]) -> Finding | None:
    if Visibility.INVISIBLE_PATIENT in visibility and Visibility.MASQUE_PS in visibility:
        return Finding(
            _VISIBILITY,
            "not both invisible to the patient and masked to professionals (Y-4)",
            "INVISIBLE_PATIENT and MASQUE_PS",
        )
    return None


def _by_unique_id(conn: Connection, unique_id: str) -> Row[Any] | None:
    return conn.execute(
        select(dmp_documents).where(dmp_documents.c.unique_id == unique_id)
    ).one_or_none()


def _trace(
    conn: Connection,
    now: datetime,
    action: str,
    actor: str,
    target: str,
    *,
    outcome: str = "ok",
    details: Mapping[str, audit.Scalar] | None = None,
) -> None:
    """One audit entry about a patient's record (Y-6); ``target`` is the INS pseudonym."""
    audit.record(
        conn,
        at=now,
        actor=actor,
        action=action,
        target_kind="patient",
        target=target,
        outcome=outcome,
        details=details,
    )


def is_opposed(conn: Connection, ins: str) -> bool:
    """Whether the patient opposed feeding their record (Y-7)."""
    found = conn.execute(
        select(dmp_oppositions.c.ins).where(dmp_oppositions.c.ins == validate_ins(ins))
    ).first()
    return found is not None


# --- deposit ------------------------------------------------------------------


def deposit(
    conn: Connection,
    store: BlobStore,
    header: CdaHeader,
    data: bytes,
    *,
    visibility: frozenset[Visibility],
    author: str,
    now: datetime,
    test_mode: bool = False,
    may_replace: Callable[[str], bool] | None = None,
) -> DepositResult:
    """File the CDA ``data`` (whose parsed header is ``header``) in its patient's record.

    ``may_replace`` is asked, with the ``author`` of the version a new one
    would replace, whether this ``author`` may replace it (the same author or
    their organisation, else 901); None lets anyone replace (the operator).

    ``author`` is who deposits it (idNatPS or the sending mailbox): the one
    professional who still sees it when it is masked. Refusals leave the
    record unchanged; every outcome is audited as ``dmp.deposit``. Raises
    Invalid only when a concurrent transaction replaced the same version
    first: the caller's transaction must then roll back.
    """
    unique_id = header.id.unique_id
    patient = header.patient
    target = pseudonym(patient.ins)
    base: dict[str, audit.Scalar] = {
        "unique_id_hash": pseudonym(unique_id),
        "version": header.version,
    }

    def refuse(code: int, *findings: Finding) -> DepositResult:
        _trace(
            conn,
            now,
            "dmp.deposit",
            author,
            target,
            outcome="refused",
            details={**base, "ack_code": code, "reason": findings[0].expected[:120]},
        )
        return DepositResult("refused", findings=findings, ack_code=code)

    # A qualified INS (Y-1, Y-INS-1): parse_cda checks this too, but the store
    # must not depend on how its caller parsed.
    if patient.ins_oid not in accepted_ins_oids(test_mode=test_mode):
        found = "INS-C" if patient.ins_oid == INS_C_LEGACY else f"OID {patient.ins_oid}"
        return refuse(
            ACK_NO_INS, Finding(_PATIENT_ID, "a qualified INS (NIR or NIA) for the record", found)
        )
    ins = validate_ins(patient.ins)

    sha256 = hashlib.sha256(data).hexdigest()
    existing = _by_unique_id(conn, unique_id)
    if existing is not None:
        if existing.blob_sha256 == sha256 and existing.ins == ins:
            _trace(
                conn,
                now,
                "dmp.deposit",
                author,
                target,
                outcome="duplicate",
                details={**base, "document": existing.id},
            )
            return DepositResult("duplicate", document_id=existing.id)
        return refuse(
            ACK_OTHER,
            Finding(_DOC_ID, "a new id, or the same document again", "an id already deposited"),
        )

    forbidden = _forbidden_combination(visibility)
    if forbidden is not None:
        return refuse(ACK_OTHER, forbidden)

    if is_opposed(conn, ins):
        return refuse(
            ACK_OTHER,
            Finding(
                _PATIENT_ID,
                "a patient who accepts deposits in their record (Y-7)",
                "the patient opposed feeding their record",
            ),
        )

    replaced = _replacement_target(conn, header, ins)
    if isinstance(replaced, tuple):
        return refuse(*replaced)
    if replaced is not None and may_replace is not None and not may_replace(replaced.author):
        return refuse(
            ACK_NOT_AUTHOR,
            Finding(
                "ClinicalDocument/setId",
                "a new version from the author of the current one, or their organisation",
                "another sender",
            ),
        )

    ref = store.put(data)
    document_id = int(
        conn.execute(
            insert(dmp_documents)
            .values(
                unique_id=unique_id,
                set_id=header.set_id.unique_id,
                version=header.version,
                ins=ins,
                ins_oid=patient.ins_oid,
                type_code=header.code.code,
                type_system=header.code.system,
                title=header.title,
                blob_sha256=ref.sha256,
                size=ref.size,
                author=author,
                status=CURRENT,
                superseded_by=None,
                deposited_at=now,
                visible_since=None,
                patient_notified_at=None,
                **_flag_values(visibility),
            )
            .returning(dmp_documents.c.id)
        ).scalar_one()
    )
    if replaced is not None:
        # Only a current row moves: a concurrent replacement of the same
        # version has already moved it, and this one must fail (900).
        moved = conn.execute(
            update(dmp_documents)
            .where(dmp_documents.c.id == replaced.id, dmp_documents.c.status == CURRENT)
            .values(status=SUPERSEDED, superseded_by=document_id)
        ).rowcount
        if moved != 1:
            raise Invalid([Finding(_RPLC, "the latest version", "a version replaced concurrently")])
    kind: DepositKind = "deposited" if replaced is None else "replaced"
    details: dict[str, audit.Scalar] = {**base, "document": document_id}
    if replaced is not None:
        details["replaced"] = replaced.id
    if visibility:
        details["flags"] = _flag_text(visibility)
    _trace(conn, now, "dmp.deposit", author, target, outcome=kind, details=details)
    return DepositResult(
        kind, document_id=document_id, replaced_id=None if replaced is None else replaced.id
    )


def _replacement_target(
    conn: Connection, header: CdaHeader, ins: str
) -> Row[Any] | tuple[int, Finding] | None:
    """The current row ``header`` supersedes, None for a new document, or a refusal."""
    set_id = header.set_id.unique_id
    if header.replaces is not None:
        target = _by_unique_id(conn, header.replaces.unique_id)
        if target is None:
            return ACK_OTHER, Finding(_RPLC, "the id of a deposited document", "an unknown id")
        if target.ins != ins:
            return ACK_OTHER, Finding(
                _RPLC, "a document of the same patient", "another patient's document"
            )
        if target.status != CURRENT:
            return ACK_NOT_LATEST, Finding(
                _RPLC, "the latest version of the document", "a superseded version"
            )
        if target.set_id != set_id:
            return ACK_OTHER, Finding(
                "ClinicalDocument/setId", "the setId of the replaced document", "another setId"
            )
    else:
        target = conn.execute(
            select(dmp_documents).where(
                dmp_documents.c.set_id == set_id, dmp_documents.c.status == CURRENT
            )
        ).first()
        if target is None:
            return None
        if target.ins != ins:
            return ACK_OTHER, Finding(
                "ClinicalDocument/setId",
                "a setId of the same patient's documents",
                "another patient's setId",
            )
    if header.version <= target.version:
        return ACK_NOT_LATEST, Finding(
            _VERSION,
            f"a version above the latest one ({target.version})",
            str(header.version),
        )
    return target


# --- reading ------------------------------------------------------------------


def _visible(row: Row[Any] | DocumentRecord, view: View, reader: str | None) -> bool:
    flags = row.visibility if isinstance(row, DocumentRecord) else _flags(row)
    if view == "patient":
        return Visibility.INVISIBLE_PATIENT not in flags
    # Y-4 also lets the treating doctor see a masked document: not known here yet.
    return Visibility.MASQUE_PS not in flags or (reader is not None and reader == row.author)


def documents(
    conn: Connection,
    ins: str,
    *,
    view: View,
    reader: str | None = None,
    include_superseded: bool = False,
    now: datetime | None = None,
) -> list[DocumentRecord]:
    """The patient's documents as ``view`` sees them, oldest deposit first.

    The patient does not see documents still invisible to them; professionals
    do not see masked ones unless ``reader`` is the author. With a ``reader``
    (and ``now``) the consultation is audited as ``dmp.read``.
    """
    ins = validate_ins(ins)
    stmt = select(dmp_documents).where(dmp_documents.c.ins == ins)
    if not include_superseded:
        stmt = stmt.where(dmp_documents.c.status == CURRENT)
    rows = conn.execute(stmt.order_by(dmp_documents.c.deposited_at, dmp_documents.c.id))
    found = [_record(r) for r in rows if _visible(r, view, reader)]
    if reader is not None:
        if now is None:
            raise ValueError("an audited read needs the time: pass now")
        _trace(
            conn,
            now,
            "dmp.read",
            reader,
            pseudonym(ins),
            details={"view": view, "count": len(found)},
        )
    return found


def get_document(
    conn: Connection,
    store: BlobStore,
    document_id: int,
    *,
    view: View,
    reader: str,
    now: datetime,
) -> tuple[DocumentRecord, bytes] | None:
    """One document and its CDA bytes if ``view``/``reader`` may see it, else None.

    Audited as ``dmp.read`` either way (outcome ``denied`` when hidden), so the
    patient's trail shows every consultation attempt.
    """
    row = conn.execute(select(dmp_documents).where(dmp_documents.c.id == document_id)).first()
    if row is None:
        return None
    record = _record(row)
    allowed = _visible(record, view, reader)
    _trace(
        conn,
        now,
        "dmp.read",
        reader,
        pseudonym(record.ins),
        outcome="ok" if allowed else "denied",
        details={"view": view, "document": record.id},
    )
    return (record, store.read(record.blob.sha256)) if allowed else None


# --- changes ------------------------------------------------------------------


def set_visibility(
    conn: Connection,
    document_id: int,
    visibility: frozenset[Visibility],
    *,
    actor: str,
    now: datetime,
) -> DocumentRecord:
    """Set the document's visibility flags; audited as ``dmp.visibility``.

    Raises Invalid for the forbidden combination, or for hiding from the
    patient a document they may already have seen; LookupError when there is
    no such document. Making it visible to the patient sets ``visible_since``
    and cancels the Y-5 timers.
    """
    row = conn.execute(select(dmp_documents).where(dmp_documents.c.id == document_id)).first()
    if row is None:
        raise LookupError(f"no DMP document {document_id}")
    forbidden = _forbidden_combination(visibility)
    if forbidden is not None:
        raise Invalid([forbidden])
    values = _flag_values(visibility)
    if values["invisible_patient"] and not row.invisible_patient:
        raise Invalid(
            [
                Finding(
                    _VISIBILITY,
                    "INVISIBLE_PATIENT only at deposit",
                    "a document already visible to the patient",
                )
            ]
        )
    before = _flags(row)
    if before == visibility:
        return _record(row)
    changes: dict[str, Any] = dict(values)
    if row.invisible_patient and not values["invisible_patient"]:
        changes["visible_since"] = now
    conn.execute(update(dmp_documents).where(dmp_documents.c.id == row.id).values(**changes))
    _trace(
        conn,
        now,
        "dmp.visibility",
        actor,
        pseudonym(row.ins),
        details={"document": row.id, "before": _flag_text(before), "flags": _flag_text(visibility)},
    )
    updated = conn.execute(select(dmp_documents).where(dmp_documents.c.id == row.id)).one()
    return _record(updated)


def set_opposition(conn: Connection, ins: str, opposed: bool, *, actor: str, now: datetime) -> bool:
    """Record or lift the patient's opposition (Y-7); whether it changed (audited then)."""
    ins = validate_ins(ins)
    if is_opposed(conn, ins) == opposed:
        return False
    if opposed:
        conn.execute(insert(dmp_oppositions).values(ins=ins, since=now, recorded_by=actor))
    else:
        conn.execute(delete(dmp_oppositions).where(dmp_oppositions.c.ins == ins))
    _trace(
        conn,
        now,
        "dmp.opposition",
        actor,
        pseudonym(ins),
        outcome="opposed" if opposed else "lifted",
    )
    return True


# --- Y-5 timers -----------------------------------------------------------------


def run_timers(
    conn: Connection, now: datetime, *, notify: Callable[[str], None] | None = None
) -> TimerReport:
    """Fire the due Y-5 delays of current documents still invisible to the patient.

    At deposit + 1 month the patient gets one generic notice (``notify`` is
    called with the INS, once per patient per run, and ``patient_notified_at``
    set, audited ``dmp.notify``); at + 3 months the document becomes visible
    (audited ``dmp.visibility`` by ``dmp-timer``), with the notice too if it
    never went. Each happens once however often this runs. ``notify`` runs
    inside the caller's transaction: it should enqueue, not send, so that a
    rollback leaves the notice due again.
    """
    # No calendar arithmetic in SQL: fetch from a bound below one month.
    candidates = conn.execute(
        select(dmp_documents)
        .where(
            dmp_documents.c.invisible_patient.is_(True),
            dmp_documents.c.status == CURRENT,
            dmp_documents.c.deposited_at <= now - timedelta(days=28),
        )
        .order_by(dmp_documents.c.deposited_at, dmp_documents.c.id)
    ).all()
    notified: list[int] = []
    made_visible: list[int] = []
    patients: list[str] = []
    for row in candidates:
        visible_due = now >= add_months(row.deposited_at, AUTO_VISIBLE_MONTHS)
        notice_due = now >= add_months(row.deposited_at, NOTIFY_MONTHS)
        changes: dict[str, Any] = {}
        if notice_due and row.patient_notified_at is None:
            changes["patient_notified_at"] = now
        if visible_due:
            changes.update(invisible_patient=False, visible_since=now)
        if not changes:
            continue
        still = [dmp_documents.c.id == row.id, dmp_documents.c.invisible_patient.is_(True)]
        if "patient_notified_at" in changes:
            still.append(dmp_documents.c.patient_notified_at.is_(None))
        moved = conn.execute(update(dmp_documents).where(*still).values(**changes)).rowcount
        if moved != 1:
            continue  # another run got there first
        target = pseudonym(row.ins)
        if "patient_notified_at" in changes:
            notified.append(row.id)
            if row.ins not in patients:
                patients.append(row.ins)
            _trace(conn, now, "dmp.notify", TIMER_ACTOR, target, details={"document": row.id})
        if visible_due:
            made_visible.append(row.id)
            _trace(
                conn,
                now,
                "dmp.visibility",
                TIMER_ACTOR,
                target,
                details={
                    "document": row.id,
                    "before": _flag_text(_flags(row)),
                    "flags": _flag_text(_flags(row) - {Visibility.INVISIBLE_PATIENT}),
                },
            )
    if notify is not None:
        for ins in patients:
            notify(ins)
    return TimerReport(tuple(notified), tuple(made_visible), len(patients) if notify else 0)


# --- Y-6 trail ------------------------------------------------------------------


def audit_trail(conn: Connection, ins: str, *, patient_view: bool = False) -> list[AuditEntry]:
    """The ``dmp.*`` audit entries about the patient's record, oldest first (Y-6).

    With ``patient_view`` the entries about documents still invisible to the
    patient are left out, so the trail does not reveal them early.
    """
    ins = validate_ins(ins)
    rows = conn.execute(
        select(audit_log)
        .where(
            audit_log.c.target_kind == "patient",
            audit_log.c.target == pseudonym(ins),
            audit_log.c.action.like("dmp.%"),
        )
        .order_by(audit_log.c.at, audit_log.c.id)
    )
    entries = [
        AuditEntry(
            r.id, r.at, r.actor, r.action, r.target_kind, r.target, r.outcome, json.loads(r.details)
        )
        for r in rows
    ]
    if not patient_view:
        return entries
    hidden = set(
        conn.execute(
            select(dmp_documents.c.id).where(
                dmp_documents.c.ins == ins, dmp_documents.c.invisible_patient.is_(True)
            )
        ).scalars()
    )
    return [
        e for e in entries if not ({e.details.get("document"), e.details.get("replaced")} & hidden)
    ]
