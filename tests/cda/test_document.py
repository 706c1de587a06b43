# covers: Y-3, Y-INS-1, Y-VIS-1
"""CDA R2 header parsing: every finding reported at once, INS rules, safe XML."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire.ins import ins_key
from cda.codes import (
    INS_C_LEGACY,
    INS_NIA,
    INS_NIR,
    INS_NIR_DEMO,
    INS_NIR_TEST,
    TRE_A05_OID,
    Confidentiality,
    Visibility,
    accepted_ins_oids,
    parse_visibility,
)
from cda.document import InstanceIdentifier, parse_cda, parse_hl7_ts
from cda.findings import Finding, Invalid

from cdagen import AUTHOR_PS_ID, DOC_ROOT, INS, INS_BODY, IPP_ROOT, SET_ROOT, make_cda

DOC = "ClinicalDocument"
ROLE = f"{DOC}/recordTarget/patientRole"
PATIENT = f"{ROLE}/patient"


def findings(data: bytes, *, test_mode: bool = False) -> list[Finding]:
    with pytest.raises(Invalid) as info:
        parse_cda(data, test_mode=test_mode)
    return info.value.findings


def paths(data: bytes, *, test_mode: bool = False) -> list[str]:
    return [f.path for f in findings(data, test_mode=test_mode)]


# --- a valid document ----------------------------------------------------------


@pytest.mark.parametrize("body", ["structured", "pdf"])
def test_valid_document_is_parsed_fully(body: str) -> None:
    header = parse_cda(make_cda(body=body))
    assert header.id == InstanceIdentifier(DOC_ROOT)
    assert header.id.unique_id == DOC_ROOT
    assert header.set_id.root == SET_ROOT
    assert header.version == 1
    assert (header.code.code, header.code.display) == ("11490-0", "Lettre de liaison de sortie")
    assert header.title == "Lettre de liaison de sortie"
    assert header.confidentiality is Confidentiality.NORMAL
    p = header.patient
    assert (p.ins, p.ins_oid) == (INS, INS_NIR)
    assert p.birth_family_name == "DUPONT"
    assert p.first_given_name == "JEANNE"
    assert p.given_names == ("JEANNE", "MARIE")
    assert (p.birth_date, p.birth_place, p.sex) == ("19800515", "75056", "F")
    assert p.other_ids == (InstanceIdentifier(IPP_ROOT, "IPP0001"),)
    assert header.author.ps_id == AUTHOR_PS_ID
    assert header.author.name is not None and header.author.name.family == "MEDECIN"
    assert header.author.organization == "Service de test"
    assert header.custodian.name == "Hôpital de test"
    assert header.recipients[0].telecoms == ("mailto:dr.traitant@test.mssante.fr",)
    assert header.replaces is None


def test_unique_id_with_extension_uses_caret() -> None:
    header = parse_cda(make_cda(doc_id=("1.2.250.1.999", "DOC42")))
    assert header.id.unique_id == "1.2.250.1.999^DOC42"


def test_tre_a05_type_code_is_accepted() -> None:
    header = parse_cda(make_cda(code="SYNTH", code_system=TRE_A05_OID, code_display="VSM"))
    assert header.code.system == TRE_A05_OID


def test_effective_time_offset_is_converted() -> None:
    header = parse_cda(make_cda(effective_time="20240104150527+0100"))
    assert header.effective_time.utcoffset() is not None
    assert header.effective_time.astimezone(UTC) == datetime(2024, 1, 4, 14, 5, 27, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("20240630235959-0230", datetime(2024, 7, 1, 2, 29, 59, tzinfo=UTC)),
        ("202401041505+0000", datetime(2024, 1, 4, 15, 5, tzinfo=UTC)),
        ("20240104150527.25+0100", datetime(2024, 1, 4, 14, 5, 27, 250000, tzinfo=UTC)),
    ],
)
def test_hl7_timestamps(value: str, utc: datetime) -> None:
    assert parse_hl7_ts(value).astimezone(UTC) == utc


@pytest.mark.parametrize("value", ["20240104150527", "2024", "20241304120000+0100", "x+0100"])
def test_bad_hl7_timestamps(value: str) -> None:
    with pytest.raises(ValueError):
        parse_hl7_ts(value)
    assert paths(make_cda(effective_time=value)) == [f"{DOC}/effectiveTime/@value"]


def test_replacement_is_parsed() -> None:
    header = parse_cda(make_cda(version="2", replaces=("1.2.250.1.213.1.1.9.4242.0", "v1")))
    assert header.version == 2
    assert header.replaces == InstanceIdentifier("1.2.250.1.213.1.1.9.4242.0", "v1")
    assert header.replaces.unique_id == "1.2.250.1.213.1.1.9.4242.0^v1"


def test_other_related_documents_are_not_replacements() -> None:
    assert parse_cda(make_cda(replaces=("1.2.3", None), related_type="APND")).replaces is None


# --- missing and invalid fields ----------------------------------------------------


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"doc_id": None}, f"{DOC}/id"),
        ({"doc_id": ("not an oid", None)}, f"{DOC}/id/@root"),
        ({"set_id": None}, f"{DOC}/setId"),
        ({"version": None}, f"{DOC}/versionNumber"),
        ({"version": "0"}, f"{DOC}/versionNumber/@value"),
        ({"version": "-1"}, f"{DOC}/versionNumber/@value"),
        ({"version": "deux"}, f"{DOC}/versionNumber/@value"),
        ({"code": None, "code_system": None, "code_display": None}, f"{DOC}/code"),
        ({"code": None}, f"{DOC}/code/@code"),
        ({"code_system": "1.2.3"}, f"{DOC}/code/@codeSystem"),
        ({"code_display": None}, f"{DOC}/code/@displayName"),
        ({"code": "LDL"}, f"{DOC}/code/@code"),
        ({"title": None}, f"{DOC}/title"),
        ({"title": "   "}, f"{DOC}/title"),
        ({"effective_time": None}, f"{DOC}/effectiveTime"),
        ({"confidentiality": None}, f"{DOC}/confidentialityCode"),
        ({"confidentiality": "INVISIBLE_PATIENT"}, f"{DOC}/confidentialityCode/@code"),
        ({"confidentiality_system": "1.2.3"}, f"{DOC}/confidentialityCode/@codeSystem"),
        ({"record_target": False}, f"{DOC}/recordTarget"),
        ({"author": False}, f"{DOC}/author"),
        ({"author_ids": ()}, f"{DOC}/author/assignedAuthor/id"),
        (
            {"custodian_id": None},
            f"{DOC}/custodian/assignedCustodian/representedCustodianOrganization/id",
        ),
        (
            {"custodian_name": None},
            f"{DOC}/custodian/assignedCustodian/representedCustodianOrganization/name",
        ),
        ({"replaces": (None, None)}, f"{DOC}/relatedDocument/parentDocument/id/@root"),
    ],
)
def test_each_missing_or_invalid_field_is_a_finding(override: dict[str, object], path: str) -> None:
    assert paths(make_cda(**override)) == [path]  # type: ignore[arg-type]


def test_several_problems_are_all_reported() -> None:
    data = make_cda(
        set_id=None, version="0", title="x" * 200, confidentiality="Z", sex=None, author=False
    )
    assert paths(data) == [
        f"{DOC}/setId",
        f"{DOC}/versionNumber/@value",
        f"{DOC}/title",
        f"{DOC}/confidentialityCode/@code",
        f"{PATIENT}/administrativeGenderCode",
        f"{DOC}/author",
    ]


def test_not_a_clinical_document() -> None:
    assert findings(make_cda(namespace="urn:example")) == [
        Finding(DOC, f"a {DOC} in the urn:hl7-org:v3 namespace", "urn:example:ClinicalDocument")
    ]
    assert paths(make_cda(root_name="Document")) == [DOC]


def test_duplicated_single_element_is_a_finding() -> None:
    data = make_cda().replace(b"<versionNumber", b'<versionNumber value="1"/><versionNumber', 1)
    assert findings(data) == [Finding(f"{DOC}/versionNumber", "exactly one element", "2")]


# --- title (Y-3) -------------------------------------------------------------------------


def test_title_of_128_characters_is_kept_whole() -> None:
    assert parse_cda(make_cda(title="é" * 128)).title == "é" * 128


def test_title_of_129_characters_is_refused_not_truncated() -> None:
    [finding] = findings(make_cda(title="é" * 129))
    assert finding.path == f"{DOC}/title"
    assert "never truncated" in finding.expected
    assert finding.found == "129 characters"


# --- INS (Y-INS-1) -------------------------------------------------------------------------


def test_accepted_ins_oids_by_mode() -> None:
    assert accepted_ins_oids(test_mode=False) == {INS_NIR, INS_NIA}
    assert accepted_ins_oids(test_mode=True) == {INS_NIR, INS_NIA, INS_NIR_TEST, INS_NIR_DEMO}
    assert INS_C_LEGACY not in accepted_ins_oids(test_mode=True)


def test_nia_is_accepted() -> None:
    body = "3800575123456"
    assert parse_cda(make_cda(ins=body + ins_key(body), ins_oid=INS_NIA)).patient.ins_oid == INS_NIA


@pytest.mark.parametrize("test_mode", [False, True])
def test_ins_c_is_refused_in_every_mode(test_mode: bool) -> None:
    found = findings(make_cda(ins_oid=INS_C_LEGACY), test_mode=test_mode)
    assert found[0] == Finding(
        f"{ROLE}/id", "an INS (NIR or NIA); the legacy INS-C is refused", f"INS-C {INS_C_LEGACY}"
    )
    assert found[1:] == [Finding(f"{ROLE}/id", "exactly one INS id (NIR or NIA)", "0")]


@pytest.mark.parametrize("oid", [INS_NIR_TEST, INS_NIR_DEMO])
def test_test_and_demo_nir_only_in_test_mode(oid: str) -> None:
    assert f"{ROLE}/id" in paths(make_cda(ins_oid=oid))
    assert parse_cda(make_cda(ins_oid=oid), test_mode=True).patient.ins_oid == oid


def test_ans_test_nir_in_test_mode() -> None:
    header = parse_cda(make_cda(ins="279035121518989", ins_oid=INS_NIR_TEST), test_mode=True)
    assert header.patient.ins == "279035121518989"


def test_unknown_oid_in_the_ins_arc_is_refused() -> None:
    assert findings(make_cda(ins_oid="1.2.250.1.213.1.4.5"))[0].expected == (
        "a known INS OID (NIR or NIA)"
    )


def test_bad_ins_key_is_refused_without_quoting_the_matricule() -> None:
    bad = INS_BODY + f"{(int(ins_key(INS_BODY)) % 97) + 1:02d}"
    [finding] = findings(make_cda(ins=bad))
    assert finding.path == f"{ROLE}/id/@extension"
    assert INS_BODY not in str(finding)


def test_missing_ins_is_one_finding() -> None:
    assert findings(make_cda(ins=None, first_given=None)) == [
        Finding(f"{ROLE}/id", "exactly one INS id (NIR or NIA)", "0")
    ]


def test_two_ins_are_refused() -> None:
    body = "3800575123456"
    data = make_cda(extra_patient_ids=[(INS_NIA, body + ins_key(body))])
    assert findings(data) == [Finding(f"{ROLE}/id", "exactly one INS id (NIR or NIA)", "2")]


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ({"birth_family": None}, f"{PATIENT}/name/family"),
        ({"first_given": None}, f"{PATIENT}/name/given"),
        ({"given_names": None}, f"{PATIENT}/name/given"),
        ({"birth_time": None}, f"{PATIENT}/birthTime"),
        ({"birth_time": "1980-05-15"}, f"{PATIENT}/birthTime/@value"),
        ({"birth_place": None}, f"{PATIENT}/birthplace/place/addr/county"),
        ({"birth_place": "Paris"}, f"{PATIENT}/birthplace/place/addr/county"),
        ({"sex": None}, f"{PATIENT}/administrativeGenderCode"),
        ({"sex": "X"}, f"{PATIENT}/administrativeGenderCode/@code"),
    ],
)
def test_each_missing_trait_is_one_finding(override: dict[str, object], path: str) -> None:
    assert paths(make_cda(**override)) == [path]  # type: ignore[arg-type]


def test_all_six_traits_missing_give_six_findings() -> None:
    data = make_cda(
        birth_family=None,
        used_family=None,
        first_given=None,
        given_names=None,
        birth_time=None,
        birth_place=None,
        sex=None,
    )
    assert len(findings(data)) == 6


def test_unqualified_family_is_the_birth_name_but_a_used_name_is_not() -> None:
    header = parse_cda(make_cda(birth_family_qualifier=None))
    assert header.patient.birth_family_name == "DUPONT"
    assert paths(make_cda(birth_family=None)) == [f"{PATIENT}/name/family"]  # SP is left


def test_corsican_birth_place_and_partial_birth_date() -> None:
    patient = parse_cda(make_cda(birth_place="2A004", birth_time="1980")).patient
    assert (patient.birth_place, patient.birth_date) == ("2A004", "1980")


# --- hostile input ---------------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol3;</title></ClinicalDocument>"""


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS])
def test_entity_payloads_are_refused(payload: bytes) -> None:
    [finding] = findings(payload)
    assert finding.path == DOC
    assert "root:" not in str(finding) and "lollol" not in str(finding)


def test_oversize_is_refused_before_parsing() -> None:
    data = make_cda()
    with pytest.raises(Invalid) as info:
        parse_cda(data, max_size=len(data) - 1)
    assert info.value.findings == [
        Finding(DOC, f"at most {len(data) - 1} bytes", f"{len(data)} bytes")
    ]
    with pytest.raises(Invalid):
        parse_cda(b" " * (30 * 1024 * 1024 + 1))


def test_malformed_xml_is_refused() -> None:
    assert paths(make_cda()[:-20]) == [DOC]


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_raise_only_invalid(data: bytes) -> None:
    with contextlib.suppress(Invalid):
        parse_cda(data)


_VALID = make_cda()


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(_VALID)),
    st.integers(0, 200),
    st.binary(max_size=20),
    st.booleans(),
)
def test_mangled_documents_raise_only_invalid(
    start: int, length: int, insert: bytes, test_mode: bool
) -> None:
    data = _VALID[:start] + insert + _VALID[start + length :]
    try:
        parse_cda(data, test_mode=test_mode)
    except Invalid as exc:
        assert exc.findings


# --- visibility codes (Y-VIS-1) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "flag"),
    [
        ("INVISIBLE_PATIENT", Visibility.INVISIBLE_PATIENT),
        ("INVISIBLE_REPRESENTANTS_LEGAUX", Visibility.INVISIBLE_REPRESENTANTS_LEGAUX),
        ("INVISIBLE_REP_LEGAUX", Visibility.INVISIBLE_REPRESENTANTS_LEGAUX),
        (" MASQUE_PS ", Visibility.MASQUE_PS),
    ],
)
def test_visibility_codes(code: str, flag: Visibility) -> None:
    assert parse_visibility(code) is flag


def test_visibility_alias_is_emitted_in_tre_a07_form() -> None:
    assert str(parse_visibility("INVISIBLE_REP_LEGAUX")) == "INVISIBLE_REPRESENTANTS_LEGAUX"


@pytest.mark.parametrize("code", ["N", "MASQUE_PT", "MASQUE_PSOCIAL", "masque_ps", ""])
def test_other_visibility_codes_are_refused(code: str) -> None:
    with pytest.raises(ValueError):
        parse_visibility(code)
