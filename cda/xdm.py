"""Read an IHE XDM package (ITI-32 ``IHE_XDM.ZIP``): bytes in, typed records out.

The zip comes from another system by mail, so it is hostile until proved
otherwise. Every member name and declared size is checked before any member is
read (traversal, absolute paths, symlinks, duplicates, entry count, sizes,
compression ratio), the caps are enforced again on the bytes actually
inflated, and nothing is ever written to disk. A problem with the package
itself raises :class:`~cda.findings.Invalid`; a problem with one document
(hash, size, URI) is a per-entry finding, so one bad document does not hide
its good siblings (Y-XDM-2).
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cda.codes import Code
from cda.findings import Finding, Invalid
from cda.xml import parse_xml

__all__ = [
    "ZIP",
    "Association",
    "Code",
    "DocumentEntry",
    "SubmissionSet",
    "SubmissionSetContent",
    "XdmLimits",
    "XdmPackage",
    "parse_ins_cx",
    "read_xdm",
]

# ebRIM 3.0 namespaces of METADATA.XML.
NS_LCM = "urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"
NS_RIM = "urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0"

# UUIDs fixed by IHE ITI Technical Framework Vol. 3 (XDS metadata, §4.2.5);
# identical in every XDS/XDM stack.
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"
DOCUMENT_ENTRY_STABLE = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
# DocumentEntry classification schemes.
DE_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
DE_CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
DE_CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
DE_EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
DE_FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
DE_FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
DE_PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
DE_TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
# DocumentEntry identification schemes.
DE_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DE_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"
# SubmissionSet classification and identification schemes.
SS_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
SS_CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SS_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SS_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SS_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"
# Association types.
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
RPLC = "urn:ihe:iti:2007:AssociationType:RPLC"
XFRM = "urn:ihe:iti:2007:AssociationType:XFRM"
APND = "urn:ihe:iti:2007:AssociationType:APND"
XFRM_RPLC = "urn:ihe:iti:2007:AssociationType:XFRM_RPLC"
SIGNS = "urn:ihe:iti:2007:AssociationType:signs"
#: classCode of an IHE DSG signature document: accepted, never forwarded (Y-XDM-2).
SIGNATURE_CLASS_CODE = "urn:oid:1.3.6.1.4.1.19376.1.2.1.1.1"

#: The ``path`` of findings about the archive as a whole.
ZIP = "IHE_XDM.ZIP"

_MIB = 1024 * 1024
_CHUNK = 64 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")
_INS_CX = re.compile(r"^([^^&]+)\^\^\^&([0-9]+(?:\.[0-9]+)*)&ISO\^NH$")
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    KeyError,
    IndexError,
)


@dataclass(frozen=True)
class XdmLimits:
    """Caps that keep a hostile archive from costing more than a legitimate one."""

    max_entries: int = 200
    max_entry_size: int = 30 * _MIB
    max_total_size: int = 60 * _MIB
    max_ratio: float = 100.0  # uncompressed / compressed, per entry
    #: Below this size a high ratio is harmless (a short, repetitive README).
    ratio_floor: int = 64 * 1024


Slots = Mapping[str, tuple[str, ...]]


@dataclass(frozen=True)
class Association:
    """An ebRIM association; ``kind`` is the last part of the type (HasMember, RPLC…)."""

    id: str
    type: str
    source: str
    target: str

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]


@dataclass(frozen=True)
class SubmissionSet:
    id: str
    unique_id: str
    source_id: str
    patient_id: str
    submission_time: str
    intended_recipients: tuple[str, ...]  # raw XON / XCN / XTN values
    title: str
    content_type: Code | None = None
    authors: tuple[Slots, ...] = ()  # raw slots of each author classification


@dataclass(frozen=True)
class DocumentEntry:
    id: str  # ``ExtrinsicObject@id``: the entryUUID or a symbolic id
    unique_id: str
    patient_id: str  # CX, ``<matricule>^^^&<OID>&ISO^NH``
    ins: str | None  # matricule parsed from ``patient_id``; None if not an INS CX
    ins_oid: str | None
    mime_type: str
    title: str
    class_code: Code | None
    type_code: Code | None
    format_code: Code | None
    confidentiality: tuple[Code, ...]
    creation_time: str
    hash: str
    size: str  # as written; checked against the member, never trusted
    uri: str
    source_patient_info: tuple[str, ...]
    authors: tuple[Slots, ...]
    event_codes: tuple[Code, ...] = ()
    facility_type: Code | None = None
    practice_setting: Code | None = None
    object_type: str = DOCUMENT_ENTRY_STABLE
    slots: Slots = field(default_factory=dict)  # every slot, raw

    @property
    def is_signature(self) -> bool:
        return self.class_code is not None and self.class_code.code == SIGNATURE_CLASS_CODE


@dataclass(frozen=True)
class SubmissionSetContent:
    """One ``IHE_XDM/<folder>/``: its metadata, the documents that checked out, the rest."""

    folder: str  # zip path of the folder, with a trailing "/"
    submission_set: SubmissionSet
    entries: tuple[DocumentEntry, ...]
    associations: tuple[Association, ...]
    documents: Mapping[str, bytes]  # entry id → bytes, only for entries without findings
    findings: Mapping[str, tuple[Finding, ...]]  # entry id → what is wrong with it

    @property
    def clinical_entries(self) -> tuple[DocumentEntry, ...]:
        """Entries to deposit and forward: not signatures (by classCode or ``signs``)."""
        signers = {a.source for a in self.associations if a.kind == "signs"}
        return tuple(e for e in self.entries if not e.is_signature and e.id not in signers)


@dataclass(frozen=True)
class XdmPackage:
    root: str  # "" or the one top folder above IHE_XDM/, with a trailing "/"
    submission_sets: tuple[SubmissionSetContent, ...]


def parse_ins_cx(cx: str) -> tuple[str, str] | None:
    """``(matricule, oid)`` of a ``<matricule>^^^&<OID>&ISO^NH`` patientId, else None."""
    m = _INS_CX.match(cx.strip())
    return (m.group(1), m.group(2)) if m else None


def read_xdm(data: bytes, limits: XdmLimits = XdmLimits()) -> XdmPackage:
    """The package in ``data``; :class:`Invalid` if the archive itself is unusable."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
    except _ZIP_ERRORS as exc:
        raise Invalid([Finding(ZIP, "a zip archive", _why(exc))]) from None
    with zf:
        members = _check_members(infos, limits)
        reader = _Reader(zf, limits)
        root = _find_root(members)
        _require(members, root)
        sets = [
            _read_subset(reader, members, root, path)
            for path in sorted(_metadata_paths(members, root))
        ]
        return XdmPackage(root=root, submission_sets=tuple(sets))


# --------------------------------------------------------------------------- zip


def _norm(name: str) -> str:
    return name.replace("\\", "/")


def _key(name: str) -> str:
    return _norm(name).rstrip("/").lower()


def _check_members(infos: list[zipfile.ZipInfo], limits: XdmLimits) -> dict[str, zipfile.ZipInfo]:
    """Files by lower-cased normalised name, once every name and size is acceptable."""
    if len(infos) > limits.max_entries:
        found = f"{len(infos)} entries"
        raise Invalid([Finding(ZIP, f"at most {limits.max_entries} entries", found)])
    findings: list[Finding] = []
    seen: dict[str, str] = {}
    files: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename
        problem = _name_problem(name)
        if problem:
            findings.append(Finding(name, "a relative path inside the archive", problem))
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            findings.append(Finding(name, "a regular file or folder", "a symbolic link"))
            continue
        key = _key(name)
        if key in seen:
            findings.append(Finding(name, "a unique name (case-insensitive)", f"also {seen[key]}"))
            continue
        seen[key] = name
        if info.flag_bits & 0x1:
            findings.append(Finding(name, "an unencrypted member", "an encrypted member"))
            continue
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            findings.append(
                Finding(name, "stored or deflated", f"compression method {info.compress_type}")
            )
            continue
        if info.file_size > limits.max_entry_size:
            found = f"{info.file_size} bytes declared"
            findings.append(Finding(name, f"at most {limits.max_entry_size} bytes", found))
            continue
        if _ratio_too_high(info.file_size, info.compress_size, limits):
            findings.append(_ratio_finding(name, info.file_size, info.compress_size, limits))
            continue
        total += info.file_size
        if not info.is_dir():
            files[key] = info
    if total > limits.max_total_size:
        expected = f"at most {limits.max_total_size} bytes uncompressed in all"
        findings.append(Finding(ZIP, expected, f"{total} bytes declared"))
    if findings:
        raise Invalid(findings)
    return files


def _name_problem(name: str) -> str:
    norm = _norm(name)
    if not norm:
        return "an empty name"
    if any(ord(c) < 32 for c in norm):
        return "a control character"
    if norm.startswith("/"):
        return "an absolute path"
    if _DRIVE.match(norm):
        return "a drive letter"
    if ".." in norm.split("/"):
        return "a '..' component"
    return ""


def _ratio_too_high(size: int, compressed: int, limits: XdmLimits) -> bool:
    return size > limits.ratio_floor and size / max(compressed, 1) > limits.max_ratio


def _ratio_finding(name: str, size: int, compressed: int, limits: XdmLimits) -> Finding:
    expected = f"a compression ratio of at most {limits.max_ratio:g}"
    return Finding(name, expected, f"{size} bytes from {compressed}")


class _Reader:
    """Reads members into memory, enforcing the caps on the bytes actually inflated."""

    def __init__(self, zf: zipfile.ZipFile, limits: XdmLimits) -> None:
        self._zf = zf
        self._limits = limits
        self._total = 0
        self._cache: dict[str, bytes] = {}

    def read(self, info: zipfile.ZipInfo) -> bytes:
        if info.filename in self._cache:
            return self._cache[info.filename]
        limits = self._limits
        cap = min(limits.max_entry_size, limits.max_total_size - self._total)
        out = bytearray()
        try:
            with self._zf.open(info) as fh:
                while chunk := fh.read(_CHUNK):
                    out += chunk
                    if len(out) > cap:
                        break
        except _ZIP_ERRORS as exc:
            raise Invalid([Finding(info.filename, "a readable zip member", _why(exc))]) from None
        if len(out) > limits.max_entry_size:
            expected = f"at most {limits.max_entry_size} bytes"
            raise Invalid([Finding(info.filename, expected, "more when inflated")])
        if len(out) > cap:
            expected = f"at most {limits.max_total_size} bytes uncompressed in all"
            raise Invalid([Finding(ZIP, expected, "more when inflated")])
        if _ratio_too_high(len(out), info.compress_size, limits):
            raise Invalid([_ratio_finding(info.filename, len(out), info.compress_size, limits)])
        self._total += len(out)
        self._cache[info.filename] = bytes(out)
        return self._cache[info.filename]


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# ------------------------------------------------------------------------ layout


def _find_root(members: Mapping[str, zipfile.ZipInfo]) -> str:
    """``""`` or ``"<top>/"``: where ``IHE_XDM/`` is; one place only."""
    roots: set[str] = set()
    for info in members.values():
        parts = _norm(info.filename).split("/")
        for depth in (0, 1):
            if len(parts) > depth + 1 and parts[depth].lower() == "ihe_xdm":
                roots.add("/".join(parts[:depth]) + "/" if depth else "")
                break
    if len(roots) != 1:
        expected = "one IHE_XDM/ folder, at the root or under one top folder"
        found = ", ".join(sorted(f"{r}IHE_XDM/" for r in roots)) or "none"
        raise Invalid([Finding(ZIP, expected, found)])
    return roots.pop()


def _require(members: Mapping[str, zipfile.ZipInfo], root: str) -> None:
    missing = [
        Finding(f"{root}{name}", "present (ITI-32)", "missing")
        for name in ("INDEX.HTM", "README.TXT")
        if f"{root}{name}".lower() not in members
    ]
    if missing:
        raise Invalid(missing)


def _metadata_paths(members: Mapping[str, zipfile.ZipInfo], root: str) -> list[str]:
    base = f"{root}ihe_xdm/".lower()
    paths = [
        _norm(info.filename)
        for key, info in members.items()
        if key.startswith(base)
        and key.count("/") == base.count("/") + 1
        and key.endswith("/metadata.xml")
    ]
    if not paths:
        where = f"{root}IHE_XDM/<folder>/METADATA.XML"
        raise Invalid([Finding(where, "one METADATA.XML per submission set", "none")])
    return paths


# ---------------------------------------------------------------------- metadata


def _q(tag: str) -> str:
    return f"{{{NS_RIM}}}{tag}"


def _slots(el: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for slot in el.findall(_q("Slot")):
        values = tuple(
            (v.text or "").strip() for v in slot.iterfind(f"{_q('ValueList')}/{_q('Value')}")
        )
        name = slot.get("name", "")
        out[name] = out.get(name, ()) + values
    return out


def _first(slots: Slots, name: str) -> str:
    values = slots.get(name, ())
    return values[0] if values else ""


def _name(el: Any) -> str:
    ls = el.find(f"{_q('Name')}/{_q('LocalizedString')}")
    return "" if ls is None else str(ls.get("value", ""))


def _code(cl: Any) -> Code:
    scheme = _first(_slots(cl), "codingScheme")
    return Code(cl.get("nodeRepresentation", ""), scheme, _name(cl))


class _Index:
    """Classifications and external identifiers by the object they qualify.

    Producers put them inside the object or beside it in the RegistryObjectList;
    ``classifiedObject`` / ``registryObject`` (or the parent) says which.
    """

    def __init__(self, root: Any) -> None:
        self.classifications: dict[str, list[Any]] = {}
        self.identifiers: dict[str, dict[str, str]] = {}
        for cl in root.iter(_q("Classification")):
            owner = cl.get("classifiedObject") or cl.getparent().get("id", "")
            self.classifications.setdefault(owner, []).append(cl)
        for ei in root.iter(_q("ExternalIdentifier")):
            owner = ei.get("registryObject") or ei.getparent().get("id", "")
            ids = self.identifiers.setdefault(owner, {})
            ids.setdefault(ei.get("identificationScheme", ""), ei.get("value", ""))

    def codes(self, owner: str, scheme: str) -> list[Code]:
        return [
            _code(cl)
            for cl in self.classifications.get(owner, [])
            if cl.get("classificationScheme") == scheme
        ]

    def code(self, owner: str, scheme: str) -> Code | None:
        codes = self.codes(owner, scheme)
        return codes[0] if codes else None

    def authors(self, owner: str, scheme: str) -> tuple[Slots, ...]:
        return tuple(
            _slots(cl)
            for cl in self.classifications.get(owner, [])
            if cl.get("classificationScheme") == scheme
        )

    def ident(self, owner: str, scheme: str) -> str:
        return self.identifiers.get(owner, {}).get(scheme, "")


def _read_subset(
    reader: _Reader, members: Mapping[str, zipfile.ZipInfo], root: str, path: str
) -> SubmissionSetContent:
    meta = parse_xml(reader.read(members[_key(path)]), where=path)
    if meta.tag != f"{{{NS_LCM}}}SubmitObjectsRequest":
        raise Invalid([Finding(path, "lcm:SubmitObjectsRequest", str(meta.tag))])
    index = _Index(meta)
    subset = _submission_set(meta, index, path)
    folder = path[: -len("METADATA.XML")]
    entries: list[DocumentEntry] = []
    documents: dict[str, bytes] = {}
    findings: dict[str, tuple[Finding, ...]] = {}
    for eo in meta.iter(_q("ExtrinsicObject")):
        entry = _entry(eo, index)
        entries.append(entry)
        found, data = _check_document(reader, members, root, folder, path, entry)
        if found:
            findings[entry.id] = tuple(found)
        elif data is not None:
            documents[entry.id] = data
    associations = tuple(
        Association(
            id=a.get("id", ""),
            type=a.get("associationType", ""),
            source=a.get("sourceObject", ""),
            target=a.get("targetObject", ""),
        )
        for a in meta.iter(_q("Association"))
    )
    return SubmissionSetContent(
        folder=folder,
        submission_set=subset,
        entries=tuple(entries),
        associations=associations,
        documents=documents,
        findings=findings,
    )


def _submission_set(meta: Any, index: _Index, path: str) -> SubmissionSet:
    marked = {
        cl.get("classifiedObject", "")
        for cl in meta.iter(_q("Classification"))
        if cl.get("classificationNode") == SUBMISSION_SET_NODE
    }
    packages = [
        p
        for p in meta.iter(_q("RegistryPackage"))
        if p.get("id", "") in marked or index.ident(p.get("id", ""), SS_UNIQUE_ID)
    ]
    if len(packages) != 1:
        found = f"{len(packages)}"
        raise Invalid([Finding(path, "one SubmissionSet RegistryPackage", found)])
    pkg = packages[0]
    pid = pkg.get("id", "")
    slots = _slots(pkg)
    return SubmissionSet(
        id=pid,
        unique_id=index.ident(pid, SS_UNIQUE_ID),
        source_id=index.ident(pid, SS_SOURCE_ID),
        patient_id=index.ident(pid, SS_PATIENT_ID),
        submission_time=_first(slots, "submissionTime"),
        intended_recipients=slots.get("intendedRecipient", ()),
        title=_name(pkg),
        content_type=index.code(pid, SS_CONTENT_TYPE_CODE),
        authors=index.authors(pid, SS_AUTHOR),
    )


def _entry(eo: Any, index: _Index) -> DocumentEntry:
    eid = eo.get("id", "")
    slots = _slots(eo)
    patient = index.ident(eid, DE_PATIENT_ID)
    ins = parse_ins_cx(patient)
    return DocumentEntry(
        id=eid,
        unique_id=index.ident(eid, DE_UNIQUE_ID),
        patient_id=patient,
        ins=ins[0] if ins else None,
        ins_oid=ins[1] if ins else None,
        mime_type=eo.get("mimeType", ""),
        title=_name(eo),
        class_code=index.code(eid, DE_CLASS_CODE),
        type_code=index.code(eid, DE_TYPE_CODE),
        format_code=index.code(eid, DE_FORMAT_CODE),
        confidentiality=tuple(index.codes(eid, DE_CONFIDENTIALITY_CODE)),
        creation_time=_first(slots, "creationTime"),
        hash=_first(slots, "hash"),
        size=_first(slots, "size"),
        uri=_first(slots, "URI"),
        source_patient_info=slots.get("sourcePatientInfo", ()),
        authors=index.authors(eid, DE_AUTHOR),
        event_codes=tuple(index.codes(eid, DE_EVENT_CODE)),
        facility_type=index.code(eid, DE_FACILITY_TYPE_CODE),
        practice_setting=index.code(eid, DE_PRACTICE_SETTING_CODE),
        object_type=eo.get("objectType", ""),
        slots=slots,
    )


def _check_document(
    reader: _Reader,
    members: Mapping[str, zipfile.ZipInfo],
    root: str,
    folder: str,
    meta_path: str,
    entry: DocumentEntry,
) -> tuple[list[Finding], bytes | None]:
    """The entry's bytes if its URI resolves and its hash and size match (Y-XDM-2)."""
    here = f'{meta_path}/ExtrinsicObject[@id="{entry.id}"]'
    info = _resolve(members, root, folder, entry.uri)
    if info is None:
        found = repr(entry.uri) if entry.uri else "no URI slot"
        return [Finding(f"{here}/URI", "the name of a document in the archive", found)], None
    data = reader.read(info)
    findings: list[Finding] = []
    actual = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    if not re.fullmatch(r"[0-9A-Fa-f]{40}", entry.hash):
        found = repr(entry.hash) if entry.hash else "no hash slot"
        findings.append(Finding(f"{here}/hash", "a SHA-1 in 40 hex digits", found))
    elif entry.hash.lower() != actual:
        expected = f"SHA-1 {entry.hash.lower()} (METADATA.XML hash)"
        findings.append(Finding(info.filename, expected, f"SHA-1 {actual}"))
    if not entry.size.isdigit():
        found = repr(entry.size) if entry.size else "no size slot"
        findings.append(Finding(f"{here}/size", "a size in bytes", found))
    elif int(entry.size) != len(data):
        expected = f"{int(entry.size)} bytes (METADATA.XML size)"
        findings.append(Finding(info.filename, expected, f"{len(data)} bytes"))
    return findings, None if findings else data


def _resolve(
    members: Mapping[str, zipfile.ZipInfo], root: str, folder: str, uri: str
) -> zipfile.ZipInfo | None:
    """The member ``uri`` names: from the subset folder, then IHE_XDM/, then the root."""
    rel = _norm(uri.strip())
    while rel.startswith("./"):
        rel = rel[2:]
    if not rel or _name_problem(rel):
        return None
    for base in (folder, f"{root}IHE_XDM/", root):
        info = members.get(f"{base}{rel}".lower())
        if info is not None:
            return info
    return None
