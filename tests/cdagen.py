"""Synthetic French CDA R2 documents for tests (a helper module, not a test module).

No ANS sample carries a reuse licence (reference §8), so tests build their
own: a valid header by default, every field overridable, ``None`` leaving
the element or attribute out.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from typing import Any

from lxml import etree  # type: ignore[import-untyped]
from lxml.builder import ElementMaker  # type: ignore[import-untyped]

from annuaire.ins import ins_key
from cda.build import XdmDocument, build_xdm
from cda.codes import (
    CDA_TYPE_ID_EXTENSION,
    CDA_TYPE_ID_ROOT,
    CONFIDENTIALITY_OID,
    HL7_NS,
    IDNAT_PS_OID,
    IDNAT_STRUCT_OID,
    INS_NIR,
    LOINC_OID,
    TEMPLATE_CISIS_HEADER,
    TEMPLATE_HL7_FRANCE,
    TEMPLATE_XDS_SD,
    VISIBILITY_OID,
    Code,
)

INS_BODY = "1800575123456"
INS = INS_BODY + ins_key(INS_BODY)
DOC_ROOT = "1.2.250.1.213.1.1.9.4242.1"
SET_ROOT = "1.2.250.1.213.1.1.9.4242.0"
AUTHOR_PS_ID = "810001234567"
IPP_ROOT = "1.2.250.1.71.4.2.7.999"
#: "%PDF-1.4" and a trailer: enough to look like a PDF, far from a real one.
TINY_PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

GENDER_OID = "2.16.840.1.113883.5.1"

Id = tuple[str, str | None]


def make_cda(
    *,
    namespace: str = HL7_NS,
    root_name: str = "ClinicalDocument",
    doc_id: Id | None = (DOC_ROOT, None),
    set_id: Id | None = (SET_ROOT, None),
    version: str | None = "1",
    code: str | None = "11490-0",
    code_system: str | None = LOINC_OID,
    code_display: str | None = "Lettre de liaison de sortie",
    title: str | None = "Lettre de liaison de sortie",
    effective_time: str | None = "20240104150527+0100",
    confidentiality: str | None = "N",
    confidentiality_system: str | None = CONFIDENTIALITY_OID,
    ins: str | None = INS,
    ins_oid: str = INS_NIR,
    extra_patient_ids: Sequence[Id] = ((IPP_ROOT, "IPP0001"),),
    birth_family: str | None = "DUPONT",
    birth_family_qualifier: str | None = "BR",
    used_family: str | None = "MARTIN",
    first_given: str | None = "JEANNE",
    given_names: str | None = "JEANNE MARIE",
    birth_time: str | None = "19800515",
    birth_place: str | None = "75056",
    sex: str | None = "F",
    record_target: bool = True,
    author: bool = True,
    author_ids: Sequence[Id] = ((IDNAT_PS_OID, AUTHOR_PS_ID),),
    author_name: tuple[str, str] | None = ("MEDECIN", "PAUL"),
    custodian_id: Id | None = (IDNAT_STRUCT_OID, "1750000001"),
    custodian_name: str | None = "Hôpital de test",
    recipients: Sequence[tuple[Id, str | None]] = (
        ((IDNAT_PS_OID, "810009876543"), "mailto:dr.traitant@test.mssante.fr"),
    ),
    replaces: Id | None = None,
    related_type: str = "RPLC",
    body: str = "structured",
) -> bytes:
    """A CDA R2 document; each argument is one header field (None = absent)."""
    E = ElementMaker(namespace=namespace, nsmap={None: namespace})
    doc = E(root_name)

    def add(parent: Any, name: str, **attrs: str | None) -> Any:
        el = etree.SubElement(parent, f"{{{namespace}}}{name}")
        for key, value in attrs.items():
            if value is not None:
                el.set(key, value)
        return el

    def add_id(parent: Any, name: str, ident: Id | None) -> None:
        if ident is not None:
            add(parent, name, root=ident[0], extension=ident[1])

    add(doc, "realmCode", code="FR")
    add(doc, "typeId", root=CDA_TYPE_ID_ROOT, extension=CDA_TYPE_ID_EXTENSION)
    add(doc, "templateId", root=TEMPLATE_HL7_FRANCE)
    add(doc, "templateId", root=TEMPLATE_CISIS_HEADER)
    if body == "pdf":
        add(doc, "templateId", root=TEMPLATE_XDS_SD)
    add_id(doc, "id", doc_id)
    if code is not None or code_system is not None or code_display is not None:
        add(doc, "code", code=code, codeSystem=code_system, displayName=code_display)
    if title is not None:
        add(doc, "title").text = title
    if effective_time is not None:
        add(doc, "effectiveTime", value=effective_time)
    if confidentiality is not None:
        add(doc, "confidentialityCode", code=confidentiality, codeSystem=confidentiality_system)
    add(doc, "languageCode", code="fr-FR")
    add_id(doc, "setId", set_id)
    if version is not None:
        add(doc, "versionNumber", value=version)
    if record_target:
        patient = {
            "ins": ins,
            "ins_oid": ins_oid,
            "extra_patient_ids": extra_patient_ids,
            "birth_family": birth_family,
            "birth_family_qualifier": birth_family_qualifier,
            "used_family": used_family,
            "first_given": first_given,
            "given_names": given_names,
            "birth_time": birth_time,
            "birth_place": birth_place,
            "sex": sex,
        }
        _record_target(add, doc, patient)
    if author:
        author_el = add(doc, "author")
        add(author_el, "time", value="20240104150000+0100")
        assigned = add(author_el, "assignedAuthor")
        for ident in author_ids:
            add_id(assigned, "id", ident)
        if author_name is not None:
            name = add(add(assigned, "assignedPerson"), "name")
            add(name, "given").text = author_name[1]
            add(name, "family").text = author_name[0]
        add(add(assigned, "representedOrganization"), "name").text = "Service de test"
    org = add(add(add(doc, "custodian"), "assignedCustodian"), "representedCustodianOrganization")
    add_id(org, "id", custodian_id)
    if custodian_name is not None:
        add(org, "name").text = custodian_name
    for ident, telecom in recipients:
        intended = add(add(doc, "informationRecipient", typeCode="PRCP"), "intendedRecipient")
        add_id(intended, "id", ident)
        if telecom is not None:
            add(intended, "telecom", value=telecom)
    if replaces is not None:
        parent = add(add(doc, "relatedDocument", typeCode=related_type), "parentDocument")
        add_id(parent, "id", replaces)
    component = add(doc, "component")
    if body == "pdf":
        text = add(add(component, "nonXMLBody"), "text", mediaType="application/pdf")
        text.set("representation", "B64")
        text.text = base64.b64encode(TINY_PDF).decode("ascii")
    else:
        section = add(add(add(component, "structuredBody"), "component"), "section")
        add(section, "title").text = "Synthèse"
        add(section, "text").text = "Document de test."
    return bytes(etree.tostring(doc, xml_declaration=True, encoding="UTF-8"))


def _record_target(add: Any, doc: Any, p: dict[str, Any]) -> None:
    role = add(add(doc, "recordTarget"), "patientRole")
    if p["ins"] is not None:
        add(role, "id", root=p["ins_oid"], extension=p["ins"])
    for root, extension in p["extra_patient_ids"]:
        add(role, "id", root=root, extension=extension)
    patient = add(role, "patient")
    name = add(patient, "name")
    if p["first_given"] is not None:
        add(name, "given", qualifier="BR").text = p["first_given"]
    if p["given_names"] is not None:
        add(name, "given").text = p["given_names"]
    if p["birth_family"] is not None:
        add(name, "family", qualifier=p["birth_family_qualifier"]).text = p["birth_family"]
    if p["used_family"] is not None:
        add(name, "family", qualifier="SP").text = p["used_family"]
    if p["sex"] is not None:
        # HL7 v3 AdministrativeGender code system
        add(patient, "administrativeGenderCode", code=p["sex"], codeSystem=GENDER_OID)
    if p["birth_time"] is not None:
        add(patient, "birthTime", value=p["birth_time"])
    if p["birth_place"] is not None:
        county = add(add(add(add(patient, "birthplace"), "place"), "addr"), "county")
        county.text = p["birth_place"]


def xdm_document(
    cda: bytes,
    *,
    unique_id: str,
    flags: Sequence[str] = (),
    type_code: str = "11490-0",
    ins: str = INS,
    ins_oid: str = INS_NIR,
    title: str = "Lettre de liaison de sortie",
) -> XdmDocument:
    """The DocumentEntry metadata that goes with ``cda`` (the CDA's own values by default)."""
    return XdmDocument(
        data=cda,
        unique_id=unique_id,
        title=title,
        type_code=Code(type_code, LOINC_OID, "Lettre de liaison"),
        class_code=Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        format_code=Code("urn:ihe:iti:xds-sd:pdf:2008", "1.3.6.1.4.1.19376.1.2.3"),
        confidentiality=(
            Code("N", CONFIDENTIALITY_OID, "Normal"),
            *(Code(flag, VISIBILITY_OID) for flag in flags),
        ),
        patient_ins=ins,
        ins_oid=ins_oid,
        creation_time="20240104150527",
    )


def xdm_package(*documents: XdmDocument, intended: Sequence[str] = ()) -> bytes:
    """An IHE_XDM.ZIP of ``documents``, ``intended`` being the recipients' addresses."""
    return build_xdm(
        list(documents),
        submission_unique_id="1.2.250.1.999.2."
        + str(int(hashlib.sha256(documents[0].unique_id.encode()).hexdigest()[:8], 16)),
        source_id="1.2.250.1.999.3",
        submission_time="20240104150600",
        intended_recipients=[f"^^Internet^{address}" for address in intended],
    )
