"""What the bridge takes from one message: its XDM packages, each document checked (Y-2).

Pure: message bytes in, :class:`Package` records out, no database and no
store. A package that cannot be read at all (not a zip, traversal, zip bomb,
no METADATA.XML) becomes one package with findings and no document; inside a
readable package every clinical document is judged on its own, so one bad
document never hides its siblings:

* its bytes match the metadata's ``hash`` and ``size`` (:func:`cda.read_xdm`);
* it is a CDA R2 document whose header parses (:func:`cda.parse_cda`);
* the header and its DocumentEntry agree: same unique id, same patient INS
  and OID, same type code (a DPI that mixes up two patients' metadata must
  not file a letter in the wrong record);
* its TRE_A07 visibility codes are known (Y-VIS-1).

Signature entries ride along in the package but are never documents here
(Y-XDM-2). Refusal codes follow Y-ACK-1: 903 for a missing or unusable INS,
905 for incomplete INS traits, 906 for everything else.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from typing import Final

from cda.codes import VISIBILITY_OID, Visibility, parse_visibility
from cda.document import CdaHeader, parse_cda
from cda.findings import Finding, Invalid
from cda.xdm import DocumentEntry, XdmLimits, read_xdm
from policies.attachments import too_many_containers
from policies.envoi_y import forwarded_headers

__all__ = [
    "MAX_PACKAGES",
    "CheckedDocument",
    "Package",
    "ack_code_for",
    "check_package",
    "cross_check",
    "intended_addresses",
    "xdm_attachments",
]

#: More XDM attachments than this in one message: the rest are refused.
MAX_PACKAGES: Final = 20
#: Containers (multipart, message) a bridge message may declare.
MAX_PARTS: Final = 200

ACK_NO_INS: Final = 903
ACK_TRAITS: Final = 905
ACK_OTHER: Final = 906

_PATIENT_ROLE_ID = "ClinicalDocument/recordTarget/patientRole/id"
_PATIENT = "ClinicalDocument/recordTarget/patientRole/patient"
_ENTRY = "METADATA.XML DocumentEntry"
_CDA_TYPES: Final = frozenset({"text/xml", "application/xml", "application/hl7-cda+xml"})
_ZIP_TYPES: Final = frozenset({"application/zip", "application/x-zip-compressed"})


@dataclass(frozen=True)
class CheckedDocument:
    """One clinical document of a package: ready to deposit (``header`` set), or refused."""

    entry_id: str
    unique_id: str
    title: str
    data: bytes
    header: CdaHeader | None
    visibility: frozenset[Visibility] = frozenset()
    findings: tuple[Finding, ...] = ()
    ack_code: int | None = None

    @property
    def ok(self) -> bool:
        return self.header is not None and not self.findings


@dataclass(frozen=True)
class Package:
    """One ``IHE_XDM.ZIP`` attachment as received, and what was found in it."""

    name: str  # the attachment's file name (for the acknowledgement)
    data: bytes  # the zip exactly as received: what the fan-out forwards
    documents: tuple[CheckedDocument, ...]
    intended: tuple[str, ...]  # e-mail addresses of the submission sets' intendedRecipient
    findings: tuple[Finding, ...] = ()  # the package as a whole is unusable

    @property
    def forwardable(self) -> bool:
        """Forwarded only whole and only when every clinical document checked out."""
        return not self.findings and bool(self.documents) and all(d.ok for d in self.documents)


def xdm_attachments(message: bytes, *, max_parts: int = MAX_PARTS) -> list[tuple[str, bytes]]:
    """The zip attachments of ``message``: (file name, decoded bytes), in message order.

    A part counts when its file name ends in ``.zip`` (any case; ANS names it
    ``IHE_XDM.ZIP``) or its type is a zip type. The parser's work is bounded
    as for MSSC-ATT-1: too many containers raise :class:`Invalid`.
    """
    if too_many_containers(message, max_parts):
        raise Invalid([Finding("message", f"at most {max_parts} MIME parts", "more")])
    try:
        root = BytesParser(policy=compat32).parsebytes(message)
    except RecursionError:
        raise Invalid([Finding("message", "a MIME structure of sane depth", "deeper")]) from None
    found: list[tuple[str, bytes]] = []
    for part in _leaves(root):
        name = (part.get_filename() or "").strip()
        if not (name.lower().endswith(".zip") or part.get_content_type() in _ZIP_TYPES):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            found.append((name or "IHE_XDM.ZIP", payload))
    return found


def _leaves(root: Message) -> Iterable[Message]:
    for part in root.walk():
        if not part.is_multipart():
            yield part


def intended_addresses(values: Iterable[str]) -> tuple[str, ...]:
    """The e-mail addresses in XDS ``intendedRecipient`` values (XON|XCN|XTN).

    The address travels in the XTN component ``^^Internet^<address>`` after
    the ``|``; organisation and person components carry no address.
    """
    out: list[str] = []
    for value in values:
        for component in value.split("|"):
            fields = component.split("^")
            if len(fields) >= 4 and fields[2].strip().lower() == "internet":
                address = fields[3].strip()
                if "@" in address and address.lower() not in (a.lower() for a in out):
                    out.append(address)
    return tuple(out)


def ack_code_for(findings: Iterable[Finding]) -> int:
    """The Y-ACK-1 code of a document refused for ``findings``."""
    paths = [f.path for f in findings]
    if any(p.startswith(_PATIENT_ROLE_ID) for p in paths):
        return ACK_NO_INS
    if any(p.startswith(_PATIENT) for p in paths):
        return ACK_TRAITS
    return ACK_OTHER


def cross_check(entry: DocumentEntry, header: CdaHeader) -> list[Finding]:
    """Where the DocumentEntry and the CDA header it describes disagree."""
    findings: list[Finding] = []
    if entry.unique_id.strip() != header.id.unique_id:
        findings.append(
            Finding(f"{_ENTRY}/uniqueId", header.id.unique_id, entry.unique_id.strip() or "nothing")
        )
    patient = header.patient
    if (entry.ins, entry.ins_oid) != (patient.ins, patient.ins_oid):
        # The INS is health data: say which part differs, never the values.
        found = "no INS" if entry.ins is None else "another patient identifier"
        findings.append(Finding(f"{_ENTRY}/patientId", "the INS of the CDA recordTarget", found))
    if entry.type_code is None or entry.type_code.code != header.code.code:
        findings.append(
            Finding(
                f"{_ENTRY}/typeCode",
                header.code.code,
                entry.type_code.code if entry.type_code is not None else "nothing",
            )
        )
    return findings


def _visibility(entry: DocumentEntry) -> tuple[frozenset[Visibility], list[Finding]]:
    flags: set[Visibility] = set()
    findings: list[Finding] = []
    for code in entry.confidentiality:
        if code.system != VISIBILITY_OID:
            continue
        try:
            flags.add(parse_visibility(code.code))
        except ValueError:
            findings.append(
                Finding(
                    f"{_ENTRY}/confidentialityCode",
                    "a TRE_A07 visibility code",
                    repr(code.code[:40]),
                )
            )
    return frozenset(flags), findings


def _document(
    entry: DocumentEntry, data: bytes | None, problems: tuple[Finding, ...], test_mode: bool
) -> CheckedDocument:
    unique_id, title = entry.unique_id.strip(), entry.title

    def refused(findings: Iterable[Finding], code: int | None = None) -> CheckedDocument:
        found = tuple(findings)
        return CheckedDocument(
            entry.id,
            unique_id,
            title,
            data or b"",
            None,
            frozenset(),
            found,
            code or ack_code_for(found),
        )

    if problems or data is None:
        return refused(problems or (Finding(f"{_ENTRY}/URI", "the document", "nothing"),))
    if entry.mime_type.strip().lower() not in _CDA_TYPES:
        return refused(
            [
                Finding(
                    f"{_ENTRY}/mimeType",
                    "a CDA R2 document (text/xml)",
                    entry.mime_type[:60] or "nothing",
                )
            ]
        )
    try:
        header = parse_cda(data, test_mode=test_mode)
    except Invalid as exc:
        return refused(exc.findings)
    visibility, bad_codes = _visibility(entry)
    findings = cross_check(entry, header) + bad_codes
    try:  # the type code goes into X-MSS-CODECDA: nothing may shape a header line
        forwarded_headers([header.code.code], True, False, False)
    except ValueError:
        findings.append(
            Finding("ClinicalDocument/code/@code", "a plain type code", repr(header.code.code[:40]))
        )
    if findings:
        return refused(findings)
    return CheckedDocument(entry.id, unique_id, header.title or title, data, header, visibility)


def check_package(
    name: str, data: bytes, *, limits: XdmLimits | None = None, test_mode: bool = False
) -> Package:
    """Read the XDM zip ``data`` and check each of its clinical documents."""
    try:
        package = read_xdm(data, limits or XdmLimits())
    except Invalid as exc:
        return Package(name, data, (), (), tuple(exc.findings))
    documents: list[CheckedDocument] = []
    intended: list[str] = []
    for content in package.submission_sets:
        intended.extend(content.submission_set.intended_recipients)
        for entry in content.clinical_entries:
            documents.append(
                _document(
                    entry,
                    content.documents.get(entry.id),
                    tuple(content.findings.get(entry.id, ())),
                    test_mode,
                )
            )
    if not documents:
        return Package(
            name,
            data,
            (),
            intended_addresses(intended),
            (Finding("IHE_XDM/SUBSET01/METADATA.XML", "at least one clinical document", "none"),),
        )
    return Package(name, data, tuple(documents), intended_addresses(intended))
