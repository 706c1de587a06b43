"""Build an IHE XDM package (ITI-32): documents and metadata in, zip bytes out.

Used by the tests, the fan-out and ``mssante dmp export``. The output is a
function of the inputs only (fixed zip timestamps, ids derived by UUIDv5), so
the same export twice gives the same bytes, and :func:`cda.xdm.read_xdm` gives
the metadata back.
"""

from __future__ import annotations

import hashlib
import html
import io
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from cda import xdm
from cda.codes import Code

__all__ = ["XdmDocument", "build_xdm"]

_STAMP = (1980, 1, 1, 0, 0, 0)
_EXTENSIONS = {"text/xml": "XML", "application/pdf": "PDF", "text/plain": "TXT"}
_NSMAP = {"lcm": xdm.NS_LCM, "rim": xdm.NS_RIM}
_DEFAULT_README = "Documents de santé au format IHE XDM (ITI-32).\r\n"


@dataclass(frozen=True)
class XdmDocument:
    """One document and the metadata its DocumentEntry carries."""

    data: bytes
    unique_id: str
    title: str
    type_code: Code
    class_code: Code
    format_code: Code
    confidentiality: tuple[Code, ...]  # first the CDA one, then TRE_A07 flags
    patient_ins: str
    ins_oid: str
    creation_time: str  # HL7 DTM, UTC
    mime_type: str = "text/xml"
    #: entryUUID or uniqueId of the document this one replaces (RPLC association).
    replaces: str | None = None
    entry_uuid: str | None = None  # derived from unique_id when None
    source_patient_info: tuple[str, ...] = ()
    authors: tuple[Mapping[str, tuple[str, ...]], ...] = ()
    facility_type: Code | None = None
    practice_setting: Code | None = None
    event_codes: tuple[Code, ...] = ()
    #: Other slots as written (languageCode, serviceStartTime, legalAuthenticator…).
    slots: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def patient_id(self) -> str:
        return f"{self.patient_ins}^^^&{self.ins_oid}&ISO^NH"

    @property
    def id(self) -> str:
        return self.entry_uuid or _urn(f"entry:{self.unique_id}")


def build_xdm(
    documents: Sequence[XdmDocument],
    *,
    submission_unique_id: str,
    source_id: str,
    submission_time: str,
    intended_recipients: Sequence[str] = (),
    author_institution: str | None = None,
    content_type: Code | None = None,
    title: str = "",
    readme_text: str = _DEFAULT_README,
) -> bytes:
    """A zip with README.TXT, INDEX.HTM and ``IHE_XDM/SUBSET01/`` (one patient)."""
    if not documents:
        raise ValueError("an XDM package carries at least one document")
    patients = {d.patient_id for d in documents}
    if len(patients) != 1:
        raise ValueError(f"one patient per XDM package, got {sorted(patients)}")
    names = [
        f"DOC{n:05d}.{_EXTENSIONS.get(d.mime_type, 'BIN')}" for n, d in enumerate(documents, 1)
    ]
    metadata = _metadata(
        documents,
        names,
        submission_unique_id=submission_unique_id,
        source_id=source_id,
        submission_time=submission_time,
        intended_recipients=intended_recipients,
        author_institution=author_institution,
        content_type=content_type,
        title=title,
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        _write(zf, "README.TXT", readme_text.encode("utf-8"))
        _write(zf, "INDEX.HTM", _index(documents, names, title))
        _write(zf, "IHE_XDM/SUBSET01/METADATA.XML", metadata)
        for name, doc in zip(names, documents, strict=True):
            _write(zf, f"IHE_XDM/SUBSET01/{name}", doc.data)
    return out.getvalue()


def _urn(seed: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_OID, seed)}"


def _write(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_STAMP)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    zf.writestr(info, data)


def _index(documents: Sequence[XdmDocument], names: Sequence[str], title: str) -> bytes:
    links = "".join(
        f'<li><a href="IHE_XDM/SUBSET01/{n}">{html.escape(d.title)}</a></li>'
        for n, d in zip(names, documents, strict=True)
    )
    page = (
        '<html xmlns="http://www.w3.org/1999/xhtml"><head><meta charset="utf-8"/>'
        f"<title>{html.escape(title or 'IHE XDM')}</title></head><body>"
        f'<p><a href="README.TXT">README.TXT</a></p><ul>{links}</ul></body></html>\r\n'
    )
    return page.encode("utf-8")


def _rim(parent: Any, tag: str, **attrs: str) -> Any:
    return etree.SubElement(parent, f"{{{xdm.NS_RIM}}}{tag}", attrs)


def _slot(parent: Any, name: str, values: Sequence[str]) -> None:
    if not values:
        return
    value_list = _rim(_rim(parent, "Slot", name=name), "ValueList")
    for value in values:
        _rim(value_list, "Value").text = value


def _name(parent: Any, value: str) -> None:
    if value:
        _rim(_rim(parent, "Name"), "LocalizedString", value=value)


def _classified(parent: Any, owner: str, scheme: str, node: str, seed: str) -> Any:
    """An ebRIM Classification of ``owner`` under ``scheme`` (the element, for its slots)."""
    return _rim(
        parent,
        "Classification",
        id=_urn(seed),
        classificationScheme=scheme,
        classifiedObject=owner,
        nodeRepresentation=node,
    )


def _classification(parent: Any, owner: str, scheme: str, code: Code, seed: str) -> None:
    cl = _classified(parent, owner, scheme, code.code, seed)
    _slot(cl, "codingScheme", [code.system])
    _name(cl, code.display)


def _author(
    parent: Any, owner: str, scheme: str, slots: Mapping[str, Sequence[str]], seed: str
) -> None:
    cl = _classified(parent, owner, scheme, "", seed)
    for name, values in slots.items():
        _slot(cl, name, values)


def _identifier(parent: Any, owner: str, scheme: str, value: str, name: str) -> None:
    ei = _rim(
        parent,
        "ExternalIdentifier",
        id=_urn(f"{owner}/{name}"),
        identificationScheme=scheme,
        registryObject=owner,
        value=value,
    )
    _name(ei, name)


def _entry(objects: Any, doc: XdmDocument, name: str) -> None:
    eid = doc.id
    eo = _rim(
        objects,
        "ExtrinsicObject",
        id=eid,
        mimeType=doc.mime_type,
        objectType=xdm.DOCUMENT_ENTRY_STABLE,
    )
    _slot(eo, "creationTime", [doc.creation_time])
    _slot(eo, "hash", [hashlib.sha1(doc.data, usedforsecurity=False).hexdigest()])
    _slot(eo, "size", [str(len(doc.data))])
    _slot(eo, "URI", [name])
    _slot(eo, "sourcePatientInfo", doc.source_patient_info)
    for slot_name, values in doc.slots.items():
        _slot(eo, slot_name, values)
    _name(eo, doc.title)
    for n, author in enumerate(doc.authors):
        _author(eo, eid, xdm.DE_AUTHOR, author, f"{eid}/author/{n}")
    _classification(eo, eid, xdm.DE_CLASS_CODE, doc.class_code, f"{eid}/class")
    for n, code in enumerate(doc.confidentiality):
        _classification(eo, eid, xdm.DE_CONFIDENTIALITY_CODE, code, f"{eid}/conf/{n}")
    for n, code in enumerate(doc.event_codes):
        _classification(eo, eid, xdm.DE_EVENT_CODE, code, f"{eid}/event/{n}")
    _classification(eo, eid, xdm.DE_FORMAT_CODE, doc.format_code, f"{eid}/format")
    if doc.facility_type:
        _classification(eo, eid, xdm.DE_FACILITY_TYPE_CODE, doc.facility_type, f"{eid}/facility")
    if doc.practice_setting:
        _classification(
            eo, eid, xdm.DE_PRACTICE_SETTING_CODE, doc.practice_setting, f"{eid}/practice"
        )
    _classification(eo, eid, xdm.DE_TYPE_CODE, doc.type_code, f"{eid}/type")
    _identifier(eo, eid, xdm.DE_PATIENT_ID, doc.patient_id, "XDSDocumentEntry.patientId")
    _identifier(eo, eid, xdm.DE_UNIQUE_ID, doc.unique_id, "XDSDocumentEntry.uniqueId")


def _metadata(
    documents: Sequence[XdmDocument],
    names: Sequence[str],
    *,
    submission_unique_id: str,
    source_id: str,
    submission_time: str,
    intended_recipients: Sequence[str],
    author_institution: str | None,
    content_type: Code | None,
    title: str,
) -> bytes:
    root = etree.Element(f"{{{xdm.NS_LCM}}}SubmitObjectsRequest", nsmap=_NSMAP)
    objects = _rim(root, "RegistryObjectList")
    for doc, name in zip(documents, names, strict=True):
        _entry(objects, doc, name)
    ss = _urn(f"submission:{submission_unique_id}")
    pkg = _rim(objects, "RegistryPackage", id=ss)
    _slot(pkg, "submissionTime", [submission_time])
    _slot(pkg, "intendedRecipient", intended_recipients)
    _name(pkg, title)
    if author_institution:
        slots = {"authorInstitution": [author_institution]}
        _author(pkg, ss, xdm.SS_AUTHOR, slots, f"{ss}/author")
    if content_type:
        _classification(pkg, ss, xdm.SS_CONTENT_TYPE_CODE, content_type, f"{ss}/content")
    _identifier(pkg, ss, xdm.SS_UNIQUE_ID, submission_unique_id, "XDSSubmissionSet.uniqueId")
    _identifier(pkg, ss, xdm.SS_SOURCE_ID, source_id, "XDSSubmissionSet.sourceId")
    patient = documents[0].patient_id
    _identifier(pkg, ss, xdm.SS_PATIENT_ID, patient, "XDSSubmissionSet.patientId")
    _rim(
        objects,
        "Classification",
        id=_urn(f"{ss}/node"),
        classifiedObject=ss,
        classificationNode=xdm.SUBMISSION_SET_NODE,
    )
    for doc in documents:
        assoc = _rim(
            objects,
            "Association",
            id=_urn(f"{ss}/member/{doc.id}"),
            associationType=xdm.HAS_MEMBER,
            sourceObject=ss,
            targetObject=doc.id,
        )
        _slot(assoc, "SubmissionSetStatus", ["Original"])
        if doc.replaces:
            _rim(
                objects,
                "Association",
                id=_urn(f"{doc.id}/rplc/{doc.replaces}"),
                associationType=xdm.RPLC,
                sourceObject=doc.id,
                targetObject=doc.replaces,
            )
    data: bytes = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    return data
