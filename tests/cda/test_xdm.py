# covers: Y-2, Y-XDM-2
"""Reading and building IHE XDM packages: round trip, hostile archives, per-document checks."""

import hashlib
import io
import os
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cda.build import XdmDocument, build_xdm
from cda.findings import Finding, Invalid
from cda.xdm import (
    RPLC,
    SIGNATURE_CLASS_CODE,
    ZIP,
    Code,
    XdmLimits,
    XdmPackage,
    read_xdm,
)

INS = "279035121518989"
INS_OID = "1.2.250.1.213.1.4.10"
META = "IHE_XDM/SUBSET01/METADATA.XML"
MIB = 1024 * 1024
DEFAULT_LIMITS = XdmLimits()
NO_DOCTYPE = Finding(META, "no DOCTYPE (entities and DTDs are refused)", "a DOCTYPE")


def document(n: int = 1, **changes: object) -> XdmDocument:
    fields: dict[str, object] = {
        "data": f"<ClinicalDocument n='{n}'/>".encode(),
        "unique_id": f"1.2.250.1.999.1.{n}",
        "title": f"Compte rendu {n}",
        "type_code": Code("11502-2", "2.16.840.1.113883.6.1", "CR d'examens biologiques"),
        "class_code": Code("10", "1.2.250.1.213.1.1.4.1", "Compte rendu"),
        "format_code": Code("urn:ihe:lab:xd-lab:2008", "1.3.6.1.4.1.19376.1.2.3"),
        "confidentiality": (
            Code("N", "2.16.840.1.113883.5.25", "Normal"),
            Code("MASQUE_PS", "1.2.250.1.213.1.1.4.13"),
        ),
        "patient_ins": INS,
        "ins_oid": INS_OID,
        "creation_time": "20240104150527",
    }
    fields.update(changes)
    return XdmDocument(**fields)  # type: ignore[arg-type]


def package(*docs: XdmDocument, **kwargs: object) -> bytes:
    options: dict[str, object] = {
        "submission_unique_id": "1.2.250.1.999.2.1",
        "source_id": "1.2.250.1.999.3",
        "submission_time": "20240104150600",
    }
    options.update(kwargs)
    return build_xdm(list(docs) or [document()], **options)  # type: ignore[arg-type]


def members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def zip_of(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names on purpose
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return out.getvalue()


def rezip(
    data: bytes,
    *,
    rename: Callable[[str], str] = lambda n: n,
    replace: dict[str, bytes] | None = None,
    drop: tuple[str, ...] = (),
    extra: list[tuple[str | zipfile.ZipInfo, bytes]] | None = None,
) -> bytes:
    replace = replace or {}
    kept: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        (rename(n), replace.get(n, b)) for n, b in members(data) if n not in drop
    ]
    return zip_of(kept + (extra or []))


def edit_metadata(data: bytes, old: bytes, new: bytes) -> bytes:
    meta = dict(members(data))[META]
    assert old in meta
    return rezip(data, replace={META: meta.replace(old, new)})


def sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def refused(data: bytes, limits: XdmLimits = DEFAULT_LIMITS) -> list[Finding]:
    with pytest.raises(Invalid) as caught:
        read_xdm(data, limits)
    return caught.value.findings


def hostile(name: str | zipfile.ZipInfo, data: bytes = b"x") -> bytes:
    """A valid package plus one hostile member."""
    return rezip(package(), extra=[(name, data)])


# ----------------------------------------------------------------- round trip


def test_round_trip_gives_back_the_metadata() -> None:
    first = document(
        1,
        source_patient_info=("PID-5|DUPONT^Marie^^^^^L", "PID-7|19790315", "PID-8|F"),
        authors=(
            {"authorPerson": ("801234567897^MARTIN^Paul^^^^^^&1.2.250.1.71.4.2.1&ISO^D^^^IDNPS",)},
        ),
        practice_setting=Code("ETABLISSEMENT", "1.2.250.1.213.1.1.4.9"),
        facility_type=Code("SA01", "1.2.250.1.71.4.2.4"),
        slots={"languageCode": ("fr-FR",)},
    )
    second = document(2, mime_type="application/pdf", data=b"%PDF-1.4 ...", replaces="urn:uuid:old")
    recipients = ("Centre^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750000001",)
    data = package(
        first,
        second,
        intended_recipients=recipients,
        title="Envoi",
        content_type=Code("04", "1.2.250.1.213.2.2"),
        author_institution="Labo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750000002",
    )

    pkg = read_xdm(data)

    assert pkg.root == ""
    [content] = pkg.submission_sets
    assert content.folder == "IHE_XDM/SUBSET01/"
    ss = content.submission_set
    assert (ss.unique_id, ss.source_id, ss.submission_time, ss.title) == (
        "1.2.250.1.999.2.1",
        "1.2.250.1.999.3",
        "20240104150600",
        "Envoi",
    )
    assert ss.patient_id == f"{INS}^^^&{INS_OID}&ISO^NH"
    assert ss.intended_recipients == recipients
    assert ss.content_type == Code("04", "1.2.250.1.213.2.2")
    assert ss.authors[0]["authorInstitution"] == (
        "Labo^^^^^&1.2.250.1.71.4.2.2&ISO^IDNST^^^1750000002",
    )

    e1, e2 = content.entries
    assert (e1.id, e1.unique_id, e1.title) == (first.id, first.unique_id, first.title)
    assert (e1.ins, e1.ins_oid, e1.patient_id) == (INS, INS_OID, first.patient_id)
    assert e1.type_code == first.type_code
    assert e1.class_code == first.class_code
    assert e1.format_code == first.format_code
    assert e1.confidentiality == first.confidentiality
    assert e1.creation_time == "20240104150527"
    assert e1.hash == hashlib.sha1(first.data).hexdigest()
    assert e1.size == str(len(first.data))
    assert e1.uri == "DOC00001.XML"
    assert e1.source_patient_info == first.source_patient_info
    assert e1.authors == first.authors
    assert (e1.practice_setting, e1.facility_type) == (first.practice_setting, first.facility_type)
    assert e1.slots["languageCode"] == ("fr-FR",)
    assert (e2.uri, e2.mime_type) == ("DOC00002.PDF", "application/pdf")

    assert content.documents == {first.id: first.data, second.id: second.data}
    assert content.findings == {}
    kinds = sorted((a.kind, a.source, a.target) for a in content.associations)
    assert kinds == sorted(
        [
            ("HasMember", ss.id, first.id),
            ("HasMember", ss.id, second.id),
            ("RPLC", second.id, "urn:uuid:old"),
        ]
    )
    assert [a.type for a in content.associations if a.kind == "RPLC"] == [RPLC]


def test_build_is_deterministic_and_has_the_iti32_layout() -> None:
    assert package(document(1), document(2)) == package(document(1), document(2))
    names = [n for n, _ in members(package(document(1), document(2)))]
    assert names == [
        "README.TXT",
        "INDEX.HTM",
        META,
        "IHE_XDM/SUBSET01/DOC00001.XML",
        "IHE_XDM/SUBSET01/DOC00002.XML",
    ]


def test_build_refuses_two_patients() -> None:
    with pytest.raises(ValueError, match="one patient"):
        package(document(1), document(2, patient_ins="180036012345678"))


def test_signature_entry_is_read_but_not_clinical() -> None:
    signature = document(
        9,
        class_code=Code(SIGNATURE_CLASS_CODE, "URN"),
        type_code=Code("E1762", "ASTM"),
        format_code=Code("http://www.w3.org/2000/09/xmldsig#", "URN"),
    )
    [content] = read_xdm(package(document(1), signature)).submission_sets
    assert [e.id for e in content.entries] == [document(1).id, signature.id]
    assert [e.id for e in content.clinical_entries] == [document(1).id]
    assert signature.id in content.documents


# ------------------------------------------------------------ lenient layout


def test_a_top_folder_above_ihe_xdm_is_accepted() -> None:
    pkg = read_xdm(rezip(package(), rename=lambda n: f"BJC/{n}"))
    assert pkg.root == "BJC/"
    [content] = pkg.submission_sets
    assert content.folder == "BJC/IHE_XDM/SUBSET01/"
    assert content.documents == {document().id: document().data}


def test_uri_with_backslash_and_other_case_is_resolved() -> None:
    data = edit_metadata(
        package(document(1), document(2)), b"DOC00001.XML", b"subset01\\doc00001.xml"
    )
    data = edit_metadata(data, b"DOC00002.XML", b".\\Doc00002.Xml")
    [content] = read_xdm(data).submission_sets
    assert content.findings == {}
    assert set(content.documents) == {document(1).id, document(2).id}


def test_member_names_are_matched_case_insensitively() -> None:
    data = rezip(package(), rename=str.lower)
    [content] = read_xdm(data).submission_sets
    assert content.documents == {document().id: document().data}


def test_hash_mismatch_is_found_without_hiding_good_siblings() -> None:
    good, bad_hash, bad_size = document(1), document(2), document(3)
    data = package(good, bad_hash, bad_size)
    tampered2 = bad_hash.data.replace(b"2", b"7")
    tampered3 = bad_size.data + b" "
    data = rezip(
        data,
        replace={
            "IHE_XDM/SUBSET01/DOC00002.XML": tampered2,
            "IHE_XDM/SUBSET01/DOC00003.XML": tampered3,
        },
    )
    [content] = read_xdm(data).submission_sets
    assert content.documents == {good.id: good.data}
    assert content.findings == {
        bad_hash.id: (
            Finding(
                "IHE_XDM/SUBSET01/DOC00002.XML",
                f"SHA-1 {sha(bad_hash.data)} (METADATA.XML hash)",
                f"SHA-1 {sha(tampered2)}",
            ),
        ),
        bad_size.id: (
            Finding(
                "IHE_XDM/SUBSET01/DOC00003.XML",
                f"SHA-1 {sha(bad_size.data)} (METADATA.XML hash)",
                f"SHA-1 {sha(tampered3)}",
            ),
            Finding(
                "IHE_XDM/SUBSET01/DOC00003.XML",
                f"{len(bad_size.data)} bytes (METADATA.XML size)",
                f"{len(tampered3)} bytes",
            ),
        ),
    }


def test_hash_is_compared_case_insensitively() -> None:
    doc = document()
    digest = hashlib.sha1(doc.data).hexdigest().encode()
    data = edit_metadata(package(doc), digest, digest.upper())
    [content] = read_xdm(data).submission_sets
    assert content.findings == {}


def test_unresolvable_uri_is_a_finding_for_that_entry() -> None:
    data = edit_metadata(package(document(1), document(2)), b"DOC00002.XML", b"NOPE.XML")
    [content] = read_xdm(data).submission_sets
    where = f'{META}/ExtrinsicObject[@id="{document(2).id}"]/URI'
    assert content.findings == {
        document(2).id: (Finding(where, "the name of a document in the archive", "'NOPE.XML'"),)
    }
    assert list(content.documents) == [document(1).id]


def test_uri_cannot_climb_out_of_the_archive() -> None:
    data = edit_metadata(package(), b"DOC00001.XML", b"../../DOC00001.XML")
    [content] = read_xdm(data).submission_sets
    [finding] = content.findings[document().id]
    assert finding.found == "'../../DOC00001.XML'"


# -------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("../x", "a '..' component"),
        ("IHE_XDM/../../x", "a '..' component"),
        ("/etc/x", "an absolute path"),
        ("..\\x", "a '..' component"),
        ("\\windows\\x", "an absolute path"),
        ("C:/x", "a drive letter"),
        ("c:x", "a drive letter"),
    ],
)
def test_unsafe_member_names_are_refused(name: str, problem: str) -> None:
    assert refused(hostile(name)) == [Finding(name, "a relative path inside the archive", problem)]


def test_symlink_member_is_refused() -> None:
    link = zipfile.ZipInfo("IHE_XDM/SUBSET01/LINK.XML")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert refused(hostile(link, b"/etc/passwd")) == [
        Finding("IHE_XDM/SUBSET01/LINK.XML", "a regular file or folder", "a symbolic link")
    ]


def test_duplicate_names_are_refused_case_and_separator_insensitively() -> None:
    assert refused(hostile("ihe_xdm\\subset01\\doc00001.xml")) == [
        Finding(
            "ihe_xdm\\subset01\\doc00001.xml",
            "a unique name (case-insensitive)",
            "also IHE_XDM/SUBSET01/DOC00001.XML",
        )
    ]
    assert refused(hostile("README.TXT")) == [
        Finding("README.TXT", "a unique name (case-insensitive)", "also README.TXT")
    ]


def test_too_many_entries_are_refused() -> None:
    data = rezip(package(), extra=[(f"IHE_XDM/SUBSET01/X{n:04d}", b"") for n in range(200)])
    assert refused(data) == [Finding(ZIP, "at most 200 entries", "204 entries")]


def test_oversize_entry_is_refused_before_reading() -> None:
    data = hostile("IHE_XDM/SUBSET01/BIG.BIN", os.urandom(20000))
    limits = XdmLimits(max_entry_size=10000)
    assert refused(data, limits) == [
        Finding("IHE_XDM/SUBSET01/BIG.BIN", "at most 10000 bytes", "20000 bytes declared")
    ]


def test_total_size_over_cap_is_refused() -> None:
    data = rezip(package(), extra=[(f"IHE_XDM/SUBSET01/R{n}", os.urandom(8000)) for n in range(3)])
    limits = XdmLimits(max_entry_size=10000, max_total_size=20000)
    [finding] = refused(data, limits)
    assert (finding.path, finding.expected) == (ZIP, "at most 20000 bytes uncompressed in all")


def test_zip_bomb_is_refused_by_its_compression_ratio() -> None:
    zeros = bytes(5 * MIB)
    data = hostile("IHE_XDM/SUBSET01/BOMB.XML", zeros)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        compressed = zf.getinfo("IHE_XDM/SUBSET01/BOMB.XML").compress_size
    assert refused(data) == [
        Finding(
            "IHE_XDM/SUBSET01/BOMB.XML",
            "a compression ratio of at most 100",
            f"{5 * MIB} bytes from {compressed}",
        )
    ]


def _set_declared_size(data: bytes, name: str, size: int) -> bytes:
    """Patch the central directory's uncompressed size of ``name`` (a lying header)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", out, at + 28)[0]
        if out[at + 46 : at + 46 + name_len] == name.encode():
            struct.pack_into("<I", out, at + 24, size)
            return bytes(out)
        at = out.find(b"PK\x01\x02", at + 4)
    raise AssertionError(name)


def test_lying_size_header_is_refused_while_reading() -> None:
    data = _set_declared_size(package(), META, 10)
    [finding] = refused(data)
    assert (finding.path, finding.expected) == (META, "a readable zip member")
    assert finding.found.startswith("BadZipFile: Bad CRC-32")


def test_lying_header_cannot_smuggle_a_bomb() -> None:
    # Declares 10 bytes, inflates to 5 MiB: only the declared bytes come out, and the CRC fails.
    data = edit_metadata(package(), b"DOC00001.XML", b"BOMB.XML")
    data = rezip(data, extra=[("IHE_XDM/SUBSET01/BOMB.XML", bytes(5 * MIB))])
    data = _set_declared_size(data, "IHE_XDM/SUBSET01/BOMB.XML", 10)
    [finding] = refused(data)
    assert finding.path == "IHE_XDM/SUBSET01/BOMB.XML"
    assert finding.found.startswith("BadZipFile: Bad CRC-32")


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04" + bytes(40)])
def test_not_a_zip_is_refused(data: bytes) -> None:
    assert refused(data) == [Finding(ZIP, "a zip archive", "BadZipFile: File is not a zip file")]


def test_missing_ihe_xdm_folder_is_refused() -> None:
    data = zip_of([("README.TXT", b"r"), ("INDEX.HTM", b"i"), ("DOC.XML", b"d")])
    expected = "one IHE_XDM/ folder, at the root or under one top folder"
    assert refused(data) == [Finding(ZIP, expected, "none")]


def test_missing_readme_and_index_are_refused() -> None:
    data = rezip(package(), drop=("README.TXT", "INDEX.HTM"))
    assert refused(data) == [
        Finding("INDEX.HTM", "present (ITI-32)", "missing"),
        Finding("README.TXT", "present (ITI-32)", "missing"),
    ]


def test_missing_metadata_is_refused() -> None:
    data = rezip(package(), drop=(META,))
    assert refused(data) == [
        Finding("IHE_XDM/<folder>/METADATA.XML", "one METADATA.XML per submission set", "none")
    ]


def test_metadata_with_an_external_entity_is_refused() -> None:
    meta = dict(members(package()))[META]
    xxe = b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    evil = meta.replace(b"?>", b"?>" + xxe, 1)
    assert refused(rezip(package(), replace={META: evil})) == [NO_DOCTYPE]


def test_billion_laughs_is_refused() -> None:
    lol = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    evil = f'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY lol0 "lol">{lol}]><l>&lol9;</l>'
    # libxml2 stops the amplification itself; the DOCTYPE check would refuse it anyway.
    [finding] = refused(rezip(package(), replace={META: evil.encode()}))
    assert finding.path == META
    assert finding == NO_DOCTYPE or finding.expected == "well-formed XML"


def test_malformed_metadata_is_refused() -> None:
    [finding] = refused(rezip(package(), replace={META: b"<a><b></a>"}))
    assert (finding.path, finding.expected) == (META, "well-formed XML")


def test_metadata_of_another_kind_is_refused() -> None:
    assert refused(rezip(package(), replace={META: b"<html/>"})) == [
        Finding(META, "lcm:SubmitObjectsRequest", "html")
    ]


# -------------------------------------------------------------- property


def _mutations() -> st.SearchStrategy[bytes]:
    valid = package(document(1), document(2))
    return st.lists(
        st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ).map(lambda edits: _apply(valid, edits))


def _apply(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[at] = value
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=2048), _mutations()))
def test_arbitrary_bytes_only_ever_raise_invalid(data: bytes) -> None:
    try:
        result = read_xdm(data)
    except Invalid as exc:
        assert exc.findings
    else:
        assert isinstance(result, XdmPackage)
