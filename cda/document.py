"""The French CDA R2 header, read and checked in one pass (Y-3, Y-INS-1).

The bridge deposits a document and forwards it only if its header says which
document it is (id, setId, versionNumber, replaced version), for whom (one
qualified INS and its six traits) and from whom. :func:`parse_cda` reports
*every* problem it sees in one :class:`~cda.findings.Invalid`, so the sender's
acknowledgement lists them all instead of one per round trip.

Only the header rules the bridge acts on are checked here, in Python over the
parsed tree: the ANS schematrons are XSLT 2 and lxml cannot run them.
Findings never quote the INS matricule (a health identity; acks travel far).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from annuaire import InsError, validate_ins
from cda.codes import (
    CONFIDENTIALITY_OID,
    HL7_NS,
    IDNAT_PS_OID,
    INS_C_LEGACY,
    INS_OID_ARC,
    INS_OIDS,
    LOINC_OID,
    TEST_INS_OIDS,
    TRE_A05_OID,
    Code,
    Confidentiality,
    accepted_ins_oids,
)
from cda.findings import Finding, Invalid
from cda.xml import DEFAULT_MAX_XML, parse_xml

__all__ = [
    "TITLE_MAX",
    "Author",
    "CdaHeader",
    "Code",
    "Custodian",
    "InstanceIdentifier",
    "Patient",
    "PersonName",
    "Recipient",
    "parse_cda",
    "parse_hl7_ts",
]

#: DMP limit on a title; a longer one is refused, never cut (Y-3).
TITLE_MAX = 128

_NS = {"h": HL7_NS}
_DOC = "ClinicalDocument"
_PATIENT_ROLE = f"{_DOC}/recordTarget/patientRole"
_PATIENT = f"{_PATIENT_ROLE}/patient"

_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+")
_UUID = re.compile(r"[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")
_LOINC = re.compile(r"[0-9]{1,7}-[0-9]")
_TS = re.compile(
    r"(?P<y>[0-9]{4})(?P<mo>[0-9]{2})(?P<d>[0-9]{2})"
    r"(?:(?P<h>[0-9]{2})(?:(?P<mi>[0-9]{2})(?:(?P<s>[0-9]{2})(?:\.(?P<f>[0-9]{1,4}))?)?)?)?"
    r"(?P<tz>[+-][0-9]{4})?"
)
_BIRTH_DATE = re.compile(r"[0-9]{4}([0-9]{2}([0-9]{2})?)?")
_COG = re.compile(r"[0-9]{5}|2[AB][0-9]{3}")
_SEXES = frozenset("MFU")

T = TypeVar("T")


# --- records ------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceIdentifier:
    """An HL7 II: an OID (or UUID) root, optionally qualified by an extension."""

    root: str
    extension: str | None = None

    @property
    def unique_id(self) -> str:
        """The XDS uniqueId form: ``root^extension``, or the root alone."""
        return f"{self.root}^{self.extension}" if self.extension else self.root


@dataclass(frozen=True)
class PersonName:
    family: str | None
    given: tuple[str, ...] = ()


@dataclass(frozen=True)
class Patient:
    """The patient as the INS identifies it, with the six INS traits (Y-INS-1).

    ``birth_date`` stays in its HL7 form (YYYY[MM[DD]]): the national register
    holds partial birth dates, which a ``date`` cannot.
    """

    ins: str
    ins_oid: str
    birth_family_name: str
    first_given_name: str
    given_names: tuple[str, ...]
    birth_date: str
    birth_place: str  # COG code of the birth commune (or 99xxx country)
    sex: str  # M, F or U
    other_ids: tuple[InstanceIdentifier, ...] = ()  # IPP and other local ids


@dataclass(frozen=True)
class Author:
    ids: tuple[InstanceIdentifier, ...]
    name: PersonName | None  # None for a device author
    ps_id: str | None  # idNatPS ("8" + RPPS) when an id has that root
    organization: str | None


@dataclass(frozen=True)
class Custodian:
    id: InstanceIdentifier
    name: str


@dataclass(frozen=True)
class Recipient:
    ids: tuple[InstanceIdentifier, ...]
    telecoms: tuple[str, ...]
    name: PersonName | None
    organization: str | None


@dataclass(frozen=True)
class CdaHeader:
    id: InstanceIdentifier
    set_id: InstanceIdentifier
    version: int
    code: Code
    title: str
    effective_time: datetime  # timezone-aware
    confidentiality: Confidentiality
    patient: Patient
    authors: tuple[Author, ...]
    custodian: Custodian
    recipients: tuple[Recipient, ...]
    replaces: InstanceIdentifier | None  # relatedDocument RPLC parentDocument/id

    @property
    def author(self) -> Author:
        """The first author: the one XDS metadata and replace checks compare with."""
        return self.authors[0]


# --- public helpers -------------------------------------------------------------


def parse_hl7_ts(value: str) -> datetime:
    """An HL7 TS ``YYYYMMDD[hh[mm[ss[.ffff]]]]±hhmm`` as an aware datetime.

    The offset is required: XDS creationTime is UTC, and a local time
    without an offset cannot be converted. Raises ValueError otherwise.
    """
    m = _TS.fullmatch(value.strip())
    if m is None:
        raise ValueError("not an HL7 timestamp YYYYMMDD[hh[mm[ss[.ffff]]]]±hhmm")
    tz = m["tz"]
    if tz is None:
        raise ValueError("no timezone offset (±hhmm)")
    hours, minutes = int(tz[1:3]), int(tz[3:5])
    if hours > 14 or minutes > 59:
        raise ValueError(f"timezone offset out of range: {tz}")
    sign = -1 if tz[0] == "-" else 1
    offset = timezone(sign * timedelta(hours=hours, minutes=minutes))
    fraction = m["f"] or ""
    return datetime(
        int(m["y"]),
        int(m["mo"]),
        int(m["d"]),
        int(m["h"] or 0),
        int(m["mi"] or 0),
        int(m["s"] or 0),
        int(fraction.ljust(6, "0")) if fraction else 0,
        tzinfo=offset,
    )


def parse_cda(
    data: bytes, *, test_mode: bool = False, max_size: int = DEFAULT_MAX_XML
) -> CdaHeader:
    """The header of the CDA R2 document ``data``, or Invalid with every finding.

    ``test_mode`` accepts the test and demo NIR OIDs (never the INS-C).
    """
    root = parse_xml(data, where=_DOC, max_size=max_size)
    if root.tag != f"{{{HL7_NS}}}{_DOC}":
        raise Invalid([Finding(_DOC, f"a {_DOC} in the {HL7_NS} namespace", _tag(root))])
    return _Reader(root, test_mode).header()


# --- the reader -------------------------------------------------------------------


def _tag(el: Any) -> str:
    tag = el.tag if isinstance(el.tag, str) else "a non-element node"
    return tag.replace("{", "").replace("}", ":") if "}" in tag else f"{tag} (no namespace)"


def _text(el: Any) -> str:
    return "".join(el.itertext()).strip()


def _need(value: T | None) -> T:
    """A value the reader found; only called once no finding was recorded."""
    assert value is not None
    return value


class _Reader:
    """Walks the header once, collecting findings instead of stopping at the first."""

    def __init__(self, root: Any, test_mode: bool) -> None:
        self.root = root
        self.test_mode = test_mode
        self.findings: list[Finding] = []

    def bad(self, path: str, expected: str, found: str) -> None:
        self.findings.append(Finding(path, expected, found))

    def header(self) -> CdaHeader:
        doc_id = self.ii(self.one(self.root, "id", _DOC), f"{_DOC}/id")
        set_id = self.ii(self.one(self.root, "setId", _DOC), f"{_DOC}/setId")
        version = self.version()
        code = self.code()
        title = self.title()
        effective = self.effective_time()
        confidentiality = self.confidentiality()
        patient = self.patient()
        authors = self.authors()
        custodian = self.custodian()
        recipients = self.recipients()
        replaces = self.replaces()
        if self.findings:
            raise Invalid(self.findings)
        return CdaHeader(
            id=_need(doc_id),
            set_id=_need(set_id),
            version=_need(version),
            code=_need(code),
            title=_need(title),
            effective_time=_need(effective),
            confidentiality=_need(confidentiality),
            patient=_need(patient),
            authors=authors,
            custodian=_need(custodian),
            recipients=recipients,
            replaces=replaces,
        )

    # -- generic pieces

    def one(self, parent: Any, name: str, where: str) -> Any | None:
        """The single child ``name`` of ``parent``; a finding when none or several."""
        found = parent.findall(f"h:{name}", _NS)
        if len(found) != 1:
            self.bad(f"{where}/{name}", "exactly one element", f"{len(found)}")
            return None
        return found[0]

    def attr(self, el: Any, name: str, path: str, expected: str) -> str | None:
        value = (el.get(name) or "").strip()
        if not value:
            self.bad(f"{path}/@{name}", expected, "nothing")
            return None
        return value

    def ii(self, el: Any | None, path: str) -> InstanceIdentifier | None:
        if el is None:
            return None
        root = self.attr(el, "root", path, "an OID or UUID")
        if root is None:
            return None
        if not (_OID.fullmatch(root) or _UUID.fullmatch(root)):
            self.bad(f"{path}/@root", "an OID or UUID", repr(root[:80]))
            return None
        extension = el.get("extension")
        return InstanceIdentifier(root, extension.strip() or None if extension else None)

    def ids(self, parent: Any, path: str) -> tuple[InstanceIdentifier, ...]:
        found = (self.ii(el, f"{path}/id") for el in parent.findall("h:id", _NS))
        return tuple(i for i in found if i is not None)

    def name(self, el: Any | None) -> PersonName | None:
        if el is None:
            return None
        family = el.find("h:family", _NS)
        given = tuple(t for g in el.findall("h:given", _NS) if (t := _text(g)))
        return PersonName(_text(family) or None if family is not None else None, given)

    # -- document identity

    def version(self) -> int | None:
        el = self.one(self.root, "versionNumber", _DOC)
        if el is None:
            return None
        path = f"{_DOC}/versionNumber"
        value = self.attr(el, "value", path, "a positive integer")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or int(value) < 1:
            self.bad(f"{path}/@value", "a positive integer", repr(value[:40]))
            return None
        return int(value)

    def code(self) -> Code | None:
        el = self.one(self.root, "code", _DOC)
        if el is None:
            return None
        path = f"{_DOC}/code"
        code = self.attr(el, "code", path, "a document type code (JDV_J07)")
        system = self.attr(el, "codeSystem", path, f"LOINC {LOINC_OID} or TRE_A05 {TRE_A05_OID}")
        display = self.attr(el, "displayName", path, "the type code's label")
        if system is not None and system not in (LOINC_OID, TRE_A05_OID):
            self.bad(f"{path}/@codeSystem", f"LOINC {LOINC_OID} or TRE_A05 {TRE_A05_OID}", system)
            return None
        if code is not None and system == LOINC_OID and not _LOINC.fullmatch(code):
            self.bad(f"{path}/@code", "a LOINC code (digits-check digit)", repr(code[:40]))
            return None
        if code is None or system is None or display is None:
            return None
        return Code(code, system, display)

    def title(self) -> str | None:
        el = self.one(self.root, "title", _DOC)
        if el is None:
            return None
        title = _text(el)
        if not title:
            self.bad(f"{_DOC}/title", "a non-empty title", "an empty title")
            return None
        if len(title) > TITLE_MAX:
            expected = f"at most {TITLE_MAX} characters (never truncated)"
            self.bad(f"{_DOC}/title", expected, f"{len(title)} characters")
            return None
        return title

    def effective_time(self) -> datetime | None:
        el = self.one(self.root, "effectiveTime", _DOC)
        if el is None:
            return None
        path = f"{_DOC}/effectiveTime"
        value = self.attr(el, "value", path, "an HL7 timestamp with offset")
        if value is None:
            return None
        try:
            return parse_hl7_ts(value)
        except ValueError as exc:  # also datetime's own range errors
            self.bad(f"{path}/@value", "an HL7 timestamp YYYYMMDDhhmmss±hhmm", str(exc))
            return None

    def confidentiality(self) -> Confidentiality | None:
        el = self.one(self.root, "confidentialityCode", _DOC)
        if el is None:
            return None
        path = f"{_DOC}/confidentialityCode"
        code = self.attr(el, "code", path, "N, R or V")
        system = el.get("codeSystem")
        if system != CONFIDENTIALITY_OID:
            self.bad(f"{path}/@codeSystem", CONFIDENTIALITY_OID, repr(system))
        if code is None:
            return None
        try:
            value = Confidentiality(code)
        except ValueError:
            self.bad(f"{path}/@code", "N, R or V", repr(code[:40]))
            return None
        return value if system == CONFIDENTIALITY_OID else None

    def replaces(self) -> InstanceIdentifier | None:
        related = [
            el for el in self.root.findall("h:relatedDocument", _NS) if el.get("typeCode") == "RPLC"
        ]
        path = f"{_DOC}/relatedDocument"
        if not related:
            return None
        if len(related) > 1:
            self.bad(path, "at most one relatedDocument typeCode=RPLC", f"{len(related)}")
            return None
        parent = self.one(related[0], "parentDocument", path)
        if parent is None:
            return None
        return self.ii(
            self.one(parent, "id", f"{path}/parentDocument"), f"{path}/parentDocument/id"
        )

    # -- patient

    def patient(self) -> Patient | None:
        target = self.one(self.root, "recordTarget", _DOC)
        role = None if target is None else self.one(target, "patientRole", f"{_DOC}/recordTarget")
        if role is None:
            return None
        ins = self.ins(role)
        person = self.one(role, "patient", _PATIENT_ROLE)
        if person is None:
            return None
        claims_ins = any(
            (el.get("root") or "").strip().startswith(INS_OID_ARC)
            for el in role.findall("h:id", _NS)
        )
        # The traits qualify an INS: without one, "no INS" is the finding that matters.
        traits = self.traits(person) if claims_ins else None
        if ins is None or traits is None:
            return None
        matricule, oid, others = ins
        family, first, givens, birth, place, sex = traits
        return Patient(matricule, oid, family, first, givens, birth, place, sex, others)

    def ins(self, role: Any) -> tuple[str, str, tuple[InstanceIdentifier, ...]] | None:
        path = f"{_PATIENT_ROLE}/id"
        accepted = accepted_ins_oids(test_mode=self.test_mode)
        candidates: list[Any] = []
        others: list[InstanceIdentifier] = []
        for el in role.findall("h:id", _NS):
            root = (el.get("root") or "").strip()
            if not root.startswith(INS_OID_ARC):
                ii = self.ii(el, path)
                if ii is not None:
                    others.append(ii)
            elif root == INS_C_LEGACY:
                self.bad(path, "an INS (NIR or NIA); the legacy INS-C is refused", f"INS-C {root}")
            elif root in TEST_INS_OIDS and root not in accepted:
                self.bad(path, "a production INS OID (test/demo NIR in test mode only)", root)
            elif root not in INS_OIDS:
                self.bad(path, "a known INS OID (NIR or NIA)", root)
            else:
                candidates.append(el)
        if len(candidates) != 1:
            self.bad(path, "exactly one INS id (NIR or NIA)", f"{len(candidates)}")
            return None
        el = candidates[0]
        try:
            matricule = validate_ins(el.get("extension") or "")
        except InsError as exc:
            self.bad(f"{path}/@extension", "a valid INS matricule", str(exc))
            return None
        return matricule, el.get("root").strip(), tuple(others)

    def traits(self, person: Any) -> tuple[str, str, tuple[str, ...], str, str, str] | None:
        """The six INS traits, one finding per missing or malformed trait."""
        names = person.findall("h:name", _NS)
        families = [f for n in names for f in n.findall("h:family", _NS)]
        givens = [g for n in names for g in n.findall("h:given", _NS)]
        birth_family = _first_text(
            [f for f in families if f.get("qualifier") == "BR"]
            or [f for f in families if not f.get("qualifier")]
        )
        first_given = _first_text([g for g in givens if g.get("qualifier") == "BR"])
        given_list = tuple(w for g in givens if not g.get("qualifier") for w in _text(g).split())
        birth = self.trait(person, "birthTime", "value", _BIRTH_DATE.fullmatch, "YYYY[MM[DD]]")
        place_el = person.find("h:birthplace/h:place/h:addr/h:county", _NS)
        place = _text(place_el) if place_el is not None else ""
        sex = self.trait(person, "administrativeGenderCode", "code", _SEXES.__contains__, "M/F/U")
        ok = True
        if not birth_family:
            self.bad(f"{_PATIENT}/name/family", "the birth family name (qualifier BR)", "nothing")
            ok = False
        if not first_given:
            self.bad(
                f"{_PATIENT}/name/given", "the first birth given name (qualifier BR)", "nothing"
            )
            ok = False
        if not given_list:
            self.bad(f"{_PATIENT}/name/given", "the list of birth given names", "nothing")
            ok = False
        if not _COG.fullmatch(place):
            found = repr(place[:20]) if place else "nothing"
            self.bad(f"{_PATIENT}/birthplace/place/addr/county", "a COG code (5 chars)", found)
            ok = False
        if not (ok and birth and sex):
            return None
        return birth_family, first_given, given_list, _need(birth), place, _need(sex)

    def trait(
        self, person: Any, name: str, attr: str, check: Callable[[str], object], shape: str
    ) -> str | None:
        el = person.find(f"h:{name}", _NS)
        path = f"{_PATIENT}/{name}"
        if el is None:
            self.bad(path, f"{name} ({shape})", "nothing")
            return None
        value = (el.get(attr) or "").strip()
        if not check(value):
            self.bad(f"{path}/@{attr}", shape, repr(value[:20]) if value else "nothing")
            return None
        return value

    # -- participants

    def authors(self) -> tuple[Author, ...]:
        path = f"{_DOC}/author"
        elements = self.root.findall("h:author", _NS)
        if not elements:
            self.bad(path, "at least one author", "none")
        authors = []
        for el in elements:
            assigned = self.one(el, "assignedAuthor", path)
            if assigned is None:
                continue
            where = f"{path}/assignedAuthor"
            ids = self.ids(assigned, where)
            if not ids:
                self.bad(f"{where}/id", "at least one author id", "none")
                continue
            ps_id = next((i.extension for i in ids if i.root == IDNAT_PS_OID), None)
            person = assigned.find("h:assignedPerson/h:name", _NS)
            org = assigned.find("h:representedOrganization/h:name", _NS)
            authors.append(Author(ids, self.name(person), ps_id, _opt_text(org)))
        return tuple(authors)

    def custodian(self) -> Custodian | None:
        path = f"{_DOC}/custodian/assignedCustodian/representedCustodianOrganization"
        org = self.root.find(
            "h:custodian/h:assignedCustodian/h:representedCustodianOrganization", _NS
        )
        if org is None:
            self.bad(path, "the custodian organisation", "nothing")
            return None
        ident = self.ii(self.one(org, "id", path), f"{path}/id")
        name = _opt_text(org.find("h:name", _NS))
        if not name:
            self.bad(f"{path}/name", "the custodian's name", "nothing")
        if ident is None or not name:
            return None
        return Custodian(ident, name)

    def recipients(self) -> tuple[Recipient, ...]:
        path = f"{_DOC}/informationRecipient/intendedRecipient"
        result = []
        for el in self.root.findall("h:informationRecipient/h:intendedRecipient", _NS):
            telecoms = tuple(v for t in el.findall("h:telecom", _NS) if (v := t.get("value")))
            person = el.find("h:informationRecipient/h:name", _NS)
            org = el.find("h:receivedOrganization/h:name", _NS)
            ids = self.ids(el, path)
            result.append(Recipient(ids, telecoms, self.name(person), _opt_text(org)))
        return tuple(result)


def _first_text(elements: list[Any]) -> str:
    return next((t for e in elements if (t := _text(e))), "")


def _opt_text(el: Any | None) -> str | None:
    return (_text(el) or None) if el is not None else None
