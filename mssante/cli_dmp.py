"""`mssante dmp …`: the embedded DMP document store on the command line (Y-3 to Y-7).

The operator sees every document of a record, whatever its visibility flags
(``list`` honours ``--view``; ``show`` and ``export`` do not, so that a masked
document can still be managed), and every consultation is audited in the
patient's trail (Y-6) under the actor ``cli:<user>``. Titles are printed (the
operator may read them) but never written to the audit log.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mssante import config as cfg
from mssante.cli import EXIT_FAILED, CommandError
from mssante.cli_annuaire import DirectoryCommandError, _actor, _now

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cda.codes import Visibility
    from cda.store import DocumentRecord
    from mssante.app import Runtime
    from mssante.cli import Commands

#: --flag → the TRE_A07 flag it sets (the values are Visibility members' values).
_FLAG_OPTIONS = {
    "invisible_patient": "INVISIBLE_PATIENT",
    "invisible_legal_reps": "INVISIBLE_REPRESENTANTS_LEGAUX",
    "masked_ps": "MASQUE_PS",
}
#: XDS classCode of an exported document: TRE_A03 "10" (compte rendu). The
#: store keeps no class code and the ASS_X04 type → class table is not here.
_CLASS_CODE = ("10", "1.2.250.1.213.1.1.4.1", "Compte rendu")
#: TRE_A11 (IHE) formatCodes: level-1 documents by embedded media type.
_IHE_FORMAT_OID = "1.3.6.1.4.1.19376.1.2.3"
_LEVEL1_FORMATS = {
    "application/pdf": "urn:ihe:iti:xds-sd:pdf:2008",
    "text/plain": "urn:ihe:iti:xds-sd:text:2008",
}
_DEFAULT_FORMAT = "urn:ihe:iti:xds:2017:mimeTypeSufficient"


def _ins(value: str) -> str:
    """A valid INS, or exit 2 with one line."""
    from annuaire.ins import validate_ins

    try:
        return validate_ins(value)
    except ValueError as exc:
        raise DirectoryCommandError(f"invalid INS: {exc}") from None


@contextmanager
def _runtime(args: argparse.Namespace) -> Iterator[Runtime]:
    from mssante.app import Runtime

    runtime = Runtime.open(cfg.load(cfg.resolve_data_dir(args.data_dir)))
    try:
        yield runtime
    finally:
        runtime.db.dispose()


def _flags(visibility: frozenset[Visibility]) -> str:
    return ",".join(sorted(v.value for v in visibility)) or "-"


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(conn: Connection, document_id: int) -> DocumentRecord:
    """Document ``document_id`` whatever its flags, or exit 1 when there is none.

    No document is both invisible to the patient and masked to professionals
    (Y-4), so it is in one of the two views.
    """
    from sqlalchemy import select

    from cda import store as dmp
    from mssante.schema import dmp_documents

    ins = conn.execute(
        select(dmp_documents.c.ins).where(dmp_documents.c.id == document_id)
    ).scalar_one_or_none()
    if ins is None:
        raise CommandError(f"no DMP document {document_id}", EXIT_FAILED)
    views: tuple[Literal["professional", "patient"], ...] = ("professional", "patient")
    for view in views:
        for record in dmp.documents(conn, ins, view=view, include_superseded=True):
            if record.id == document_id:
                return record
    raise CommandError(f"no DMP document {document_id}", EXIT_FAILED)  # pragma: no cover


def _audit_patient(conn: Connection, action: str, record: DocumentRecord, **details: Any) -> None:
    """An entry in the patient's trail (Y-6): the INS pseudonym, never the title."""
    from mssante import audit
    from mssante.logs import pseudonym

    audit.record(
        conn,
        at=_now(),
        actor=_actor(),
        action=action,
        target_kind="patient",
        target=pseudonym(record.ins),
        details={**details, "document": record.id},
    )


# --------------------------------------------------------------------------- commands


def cmd_dmp_list(args: argparse.Namespace) -> int:
    from cda import store as dmp

    ins = _ins(args.ins)
    with _runtime(args) as runtime, runtime.db.transaction() as conn:
        records = dmp.documents(
            conn,
            ins,
            view=args.view,
            reader=_actor(),
            include_superseded=args.all,
            now=_now(),
        )
    for r in records:
        print(
            f"{r.id}\t{r.status}\tv{r.version}\t{r.type_code}\t"
            f"{r.deposited_at.astimezone(UTC):%Y-%m-%d}\t{_flags(r.visibility)}\t{r.title}"
        )
    if not records:
        print(f"(no documents in the {args.view} view)")
    return 0


def cmd_dmp_show(args: argparse.Namespace) -> int:
    with _runtime(args) as runtime, runtime.db.transaction() as conn:
        r = _record(conn, args.id)
        _audit_patient(conn, "dmp.read", r, view="operator")
    shown: dict[str, object] = {
        "id": r.id,
        "unique_id": r.unique_id,
        "set_id": r.set_id,
        "version": r.version,
        "status": r.status,
        "superseded_by": r.superseded_by,
        "ins": r.ins,
        "ins_oid": r.ins_oid,
        "type_code": f"{r.type_code} ({r.type_system})",
        "title": r.title,
        "author": r.author,
        "visibility": _flags(r.visibility),
        "deposited_at": _when(r.deposited_at),
        "visible_since": _when(r.visible_since) if r.visible_since else None,
        "patient_notified_at": _when(r.patient_notified_at) if r.patient_notified_at else None,
        "size": r.blob.size,
        "sha256": r.blob.sha256,
    }
    for key, value in shown.items():
        print(f"{key}: {'-' if value is None else value}")
    return 0


def cmd_dmp_set_visibility(args: argparse.Namespace) -> int:
    from cda import store as dmp
    from cda.codes import Visibility
    from cda.findings import Invalid

    changes = {k: getattr(args, k) for k in _FLAG_OPTIONS if getattr(args, k) is not None}
    if not changes:
        raise DirectoryCommandError(
            "set-visibility: give --invisible-patient, --invisible-legal-reps or --masked-ps"
        )
    with _runtime(args) as runtime, runtime.db.transaction() as conn:
        current = _record(conn, args.id)
        flags = set(current.visibility)
        for option, answer in changes.items():
            flag = Visibility(_FLAG_OPTIONS[option])
            (flags.add if answer == "yes" else flags.discard)(flag)
        try:
            updated = dmp.set_visibility(
                conn, current.id, frozenset(flags), actor=_actor(), now=_now()
            )
        except Invalid as exc:
            raise CommandError(f"set-visibility refused: {exc}", EXIT_FAILED) from None
    print(f"document {updated.id}: {_flags(updated.visibility)}")
    return 0


def _format_code(data: bytes) -> str:
    """The XDS formatCode of a stored CDA: level 1 by its embedded media type."""
    from cda.codes import HL7_NS
    from cda.xml import parse_xml

    try:
        root = parse_xml(data, where="ClinicalDocument")
    except ValueError:
        return _DEFAULT_FORMAT
    text = root.find(f"{{{HL7_NS}}}component/{{{HL7_NS}}}nonXMLBody/{{{HL7_NS}}}text")
    media = "" if text is None else (text.get("mediaType") or "")
    return _LEVEL1_FORMATS.get(media, _DEFAULT_FORMAT)


def _xdm_of(record: DocumentRecord, data: bytes, *, domain: str, now: datetime) -> bytes:
    from cda.build import XdmDocument, build_xdm
    from cda.codes import CONFIDENTIALITY_OID, IDNAT_PS_OID, VISIBILITY_OID, Code
    from cda.document import parse_cda

    header = parse_cda(data, test_mode=True)  # already accepted once: the OIDs are known
    authors: tuple[dict[str, tuple[str, ...]], ...] = ()
    ps = header.author
    if ps.ps_id:
        family = (ps.name.family or "") if ps.name else ""
        given = ps.name.given[0] if ps.name and ps.name.given else ""
        xcn = f"{ps.ps_id}^{family}^{given}^^^^^^&{IDNAT_PS_OID}&ISO^D^^^IDNPS"
        authors = ({"authorPerson": (xcn,)},)
    confidentiality = (
        Code(header.confidentiality.value, CONFIDENTIALITY_OID),
        *(Code(v.value, VISIBILITY_OID) for v in sorted(record.visibility)),
    )
    document = XdmDocument(
        data=data,
        unique_id=record.unique_id,
        title=record.title,
        type_code=Code(record.type_code, record.type_system, header.code.display),
        class_code=Code(*_CLASS_CODE),
        format_code=Code(_format_code(data), _IHE_FORMAT_OID),
        confidentiality=confidentiality,
        patient_ins=record.ins,
        ins_oid=record.ins_oid,
        creation_time=header.effective_time.astimezone(UTC).strftime("%Y%m%d%H%M%S"),
        authors=authors,
    )
    stamp = now.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    submission = uuid.uuid5(uuid.NAMESPACE_OID, f"dmp-export:{record.unique_id}:{stamp}")
    return build_xdm(
        [document],
        submission_unique_id=f"2.25.{submission.int}",
        source_id=f"2.25.{uuid.uuid5(uuid.NAMESPACE_DNS, domain).int}",
        submission_time=stamp,
        title=record.title,
    )


def cmd_dmp_export(args: argparse.Namespace) -> int:
    out = Path(args.out)
    now = _now()
    with _runtime(args) as runtime, runtime.db.transaction() as conn:
        record = _record(conn, args.id)
        data = runtime.store.read(record.blob.sha256)
        package = _xdm_of(record, data, domain=runtime.config.node.domain, now=now)
        try:
            out.write_bytes(package)
        except OSError as exc:
            raise CommandError(f"cannot write {out}: {exc.strerror}", EXIT_FAILED) from None
        _audit_patient(conn, "dmp.export", record, size=len(package))
    print(f"wrote {out} ({len(package)} bytes, document {record.id})")
    return 0


def cmd_dmp_opposition(args: argparse.Namespace) -> int:
    from cda import store as dmp

    ins = _ins(args.ins)
    opposed = args.opposed
    with _runtime(args) as runtime, runtime.db.transaction() as conn:
        changed = dmp.set_opposition(conn, ins, opposed, actor=_actor(), now=_now())
    state = "opposed to deposits" if opposed else "accepting deposits"
    print(f"{'now' if changed else 'already'} {state}")
    return 0


def cmd_dmp_trail(args: argparse.Namespace) -> int:
    from cda import store as dmp

    ins = _ins(args.ins)
    with _runtime(args) as runtime, runtime.db.read() as conn:
        entries = dmp.audit_trail(conn, ins, patient_view=args.patient_view)
    for e in entries:
        details = " ".join(f"{k}={v}" for k, v in e.details.items())
        print(f"{_when(e.at)} {e.actor} {e.action} {e.outcome} {details}".rstrip())
    if not entries:
        print("(no entries)")
    return 0


# --------------------------------------------------------------------------- parser


def register(commands: Commands) -> None:
    dmp = commands.group("dmp", "the patients' DMP document store (envoi en Y)")

    p = dmp.add("list", cmd_dmp_list, "a patient's documents as a view sees them")
    p.add_argument("--ins", required=True)
    p.add_argument("--view", choices=["professional", "patient"], default="professional")
    p.add_argument("--all", action="store_true", help="include superseded versions")

    p = dmp.add("show", cmd_dmp_show, "one document's metadata (any visibility)")
    p.add_argument("id", type=int)

    p = dmp.add("set-visibility", cmd_dmp_set_visibility, "change a document's flags (Y-4)")
    p.add_argument("id", type=int)
    for option in _FLAG_OPTIONS:
        p.add_argument(f"--{option.replace('_', '-')}", dest=option, choices=["yes", "no"])

    p = dmp.add("export", cmd_dmp_export, "write a document as an IHE XDM zip")
    p.add_argument("id", type=int)
    p.add_argument("--out", required=True, metavar="FILE")

    p = dmp.add("oppose", cmd_dmp_opposition, "record the patient's opposition (Y-7)")
    p.add_argument("ins")
    p.set_defaults(opposed=True)
    p = dmp.add("unoppose", cmd_dmp_opposition, "lift the patient's opposition (Y-7)")
    p.add_argument("ins")
    p.set_defaults(opposed=False)

    p = dmp.add("trail", cmd_dmp_trail, "the audit trail of a patient's record (Y-6)")
    p.add_argument("--ins", required=True)
    p.add_argument(
        "--patient-view", action="store_true", help="as the patient sees it (hides invisible)"
    )
