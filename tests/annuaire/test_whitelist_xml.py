"""The national whitelist file: safe parsing, quirks of the real file, round trip."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire.dn import DN, dn_from_x509, parse_dn
from annuaire.whitelist_xml import (
    NAMESPACE,
    WhitelistEntry,
    WhitelistError,
    normalise_domain,
    parse_whitelist,
    render_entries,
    render_whitelist,
)

GENERATED = datetime(2025, 3, 13, 14, 54, 10, tzinfo=UTC)
DN_CHU = "CN=mx.chu-x.fr,OU=1750000012,O=CHU X,ST=Paris (75),C=FR"


def entry(domain: str, dn: str = DN_CHU, **kw: object) -> WhitelistEntry:
    return WhitelistEntry(domain=normalise_domain(domain), dn=parse_dn(dn), **kw)  # type: ignore[arg-type]


def domaine(nom: str, dn: str, extra: str = "") -> str:
    return (
        f"<Domaine><Nom>{nom}</Nom><Description>d</Description>"
        f"<DNCertificatOperateur>{dn}</DNCertificatOperateur>"
        "<ResponsableContact>r@x.fr</ResponsableContact><SupportContact>s@x.fr</SupportContact>"
        f"<DateMAJ>2025-03-01T10:00:00Z</DateMAJ>{extra}</Domaine>\n"
    )


def document(body: str, *, ns: bool = True, close: bool = True) -> bytes:
    xmlns = f' xmlns="{NAMESPACE}"' if ns else ""
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<ListeBlancheMSSante{xmlns}>\n"
        "<DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>\n"
        f"<ListeDomaines>\n{body}"
    )
    if close:
        text += "</ListeDomaines>\n</ListeBlancheMSSante>\n"
    return text.encode("utf-8")


def many(count: int, bad: int = 0) -> str:
    rows = [domaine(f"d{i}.mssante.fr", DN_CHU) for i in range(count - bad)]
    rows += [domaine(f"bad_{i}..fr", DN_CHU) for i in range(bad)]
    return "".join(rows)


QUIRKY = document(
    domaine("hôpital-exemple.mssante.fr", DN_CHU)
    + domaine("UC-CMP.mssante.fr", 'CN=mx.limoges.fr,OU=1,O="C H U  DE  LIMOGES",ST=HV,C=FR')
    + domaine("ch-y.mssante.fr", "CN=mx.y.fr,OU=2,O=CH\u00a0Y,L=Lyon,C=FR")
    + domaine("ch-y.mssante.fr", "CN=mx2.y.fr")
    + domaine("ch-y.mssante.fr", "CN=mx3.y.fr,O=CH &amp; Co,C=FR")
    + domaine(" chu-x.mssante.fr. ", "C=FR,ST=Paris (75),O=CHU X,OU=1750000012,CN=mx.chu-x.fr")
)


def test_quirks_of_the_real_file() -> None:
    parsed = parse_whitelist(QUIRKY)
    assert parsed.generated_at == GENERATED
    assert not parsed.truncated
    assert parsed.warnings == ()
    domains = [e.domain for e in parsed.entries]
    assert domains == [
        "xn--hpital-exemple-0ob.mssante.fr",
        "uc-cmp.mssante.fr",
        "ch-y.mssante.fr",
        "ch-y.mssante.fr",
        "ch-y.mssante.fr",
        "chu-x.mssante.fr",
    ]
    first = parsed.entries[0]
    assert first.description == "d"
    assert first.responsible_contact == "r@x.fr"
    assert first.support_contact == "s@x.fr"
    assert first.updated_at == datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert parsed.entries[1].dn.attributes[2] == ("O", "C H U  DE  LIMOGES")
    assert parsed.entries[4].dn.attributes[1] == ("O", "CH & Co")


def test_whitelist_dn_pairs_with_peer_certificate_subject() -> None:
    # covers: TS-2
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    peer = dn_from_x509(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
                x509.NameAttribute(NameOID.LOCALITY_NAME, "Lyon"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ch y"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "2"),
                x509.NameAttribute(NameOID.COMMON_NAME, "mx.y.fr"),
            ]
        )
    )
    parsed = parse_whitelist(QUIRKY)
    allowed = {(e.domain, e.dn) for e in parsed.entries}
    assert ("ch-y.mssante.fr", peer) in allowed  # NBSP, case and order do not matter
    assert ("uc-cmp.mssante.fr", peer) not in allowed
    # the same DN written the national way: several domains may share it
    chu = parse_dn(DN_CHU)
    assert {e.domain for e in parsed.entries if e.dn == chu} == {
        "xn--hpital-exemple-0ob.mssante.fr",
        "chu-x.mssante.fr",
    }


def test_duplicate_pairs_are_deduplicated_with_one_warning() -> None:
    # covers: TS-2
    body = (
        domaine("a.mssante.fr", DN_CHU)
        + domaine("A.mssante.fr", "C=FR,ST=Paris&#xA0;(75),O=chu x,OU=1750000012,CN=mx.chu-x.fr")
        + domaine("a.mssante.fr", DN_CHU)
        + domaine("a.mssante.fr", "CN=other.fr")
    )
    parsed = parse_whitelist(document(body))
    assert [str(e.dn) for e in parsed.entries] == [DN_CHU, "CN=other.fr"]
    assert parsed.warnings == ("2 duplicate (domain, DN) pairs ignored (first kept)",)


def test_no_namespace_is_accepted() -> None:
    parsed = parse_whitelist(document(domaine("a.mssante.fr", DN_CHU), ns=False))
    assert [e.domain for e in parsed.entries] == ["a.mssante.fr"]


def test_prefixed_namespace_and_unknown_elements() -> None:
    data = (
        f'<lb:ListeBlancheMSSante xmlns:lb="{NAMESPACE}"><lb:ListeDomaines>'
        "<lb:Domaine><lb:Nom>a.fr</lb:Nom><lb:DNCertificatOperateur>CN=a"
        "</lb:DNCertificatOperateur><lb:Nouveau>x</lb:Nouveau><Nom>ignored.fr</Nom>"
        "<!-- comment --></lb:Domaine></lb:ListeDomaines></lb:ListeBlancheMSSante>"
    ).encode()
    parsed = parse_whitelist(data)
    assert [(e.domain, str(e.dn)) for e in parsed.entries] == [("a.fr", "CN=a")]
    assert parsed.generated_at is None
    assert parsed.warnings == ("no DateDeGeneration",)


def test_round_trip_through_render() -> None:
    entries = (
        entry("hôpital-exemple.mssante.fr", DN_CHU, description="CHU X — messagerie"),
        entry("uc-cmp.mssante.fr", 'O="C H U  DE  LIMOGES",CN=a\\,b'),
        entry("uc-cmp.mssante.fr", "CN=mx.y.fr,O=CH\u00a0Y+L=Lyon,C=FR"),
        entry(
            "ch-z.mssante.fr",
            "CN=z",
            description="  a < b & c > d\r\n",
            responsible_contact="r@z.fr",
            support_contact="+33 1 00 00 00 00",
            updated_at=datetime(2024, 12, 31, 23, 59, 59, 123456, tzinfo=UTC),
        ),
    )
    data = render_whitelist(entries, GENERATED)
    parsed = parse_whitelist(data)
    assert parsed.entries == entries
    assert [e.dn.rdns for e in parsed.entries] == [e.dn.rdns for e in entries]
    assert parsed.generated_at == GENERATED
    assert (parsed.truncated, parsed.warnings) == (False, ())
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert f'<ListeBlancheMSSante xmlns="{NAMESPACE}">'.encode() in data


def test_render_entries_gives_namespaced_domaine_elements() -> None:
    entries = [entry("a.mssante.fr"), entry("b.mssante.fr", "CN=b")]
    fragment = render_entries(entries)
    assert fragment.count(f'<Domaine xmlns="{NAMESPACE}">'.encode()) == 2
    assert render_entries([]) == b""
    wrapped = (
        f'<ListeBlancheMSSante xmlns="{NAMESPACE}"><ListeDomaines>'.encode()
        + fragment
        + b"</ListeDomaines></ListeBlancheMSSante>"
    )
    assert parse_whitelist(wrapped).entries == tuple(entries)


def test_render_refuses_what_xml_cannot_carry() -> None:
    with pytest.raises(WhitelistError, match=r"entry #1 \(a.fr\)"):
        render_whitelist([entry("a.fr", description="bell\x07")], GENERATED)
    with pytest.raises(WhitelistError, match="timezone-aware"):
        render_whitelist([entry("a.fr")], datetime(2025, 1, 1))
    with pytest.raises(WhitelistError, match="not a WhitelistEntry"):
        render_entries(["a.fr"])  # type: ignore[list-item]


def test_entry_invariants() -> None:
    with pytest.raises(WhitelistError, match="not normalised"):
        WhitelistEntry("A.fr", parse_dn("CN=a"))
    with pytest.raises(WhitelistError, match="timezone-aware"):
        WhitelistEntry("a.fr", parse_dn("CN=a"), updated_at=datetime(2025, 1, 1))
    with pytest.raises(WhitelistError, match="must be a DN"):
        WhitelistEntry("a.fr", "CN=a")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("UC-CMP.mssante.fr", "uc-cmp.mssante.fr"),
        ("hôpital-exemple.mssante.fr", "xn--hpital-exemple-0ob.mssante.fr"),
        ("xn--hpital-exemple-0ob.mssante.fr", "xn--hpital-exemple-0ob.mssante.fr"),
        (" a.fr. ", "a.fr"),
        ("ÉCOLE.fr", "xn--cole-9oa.fr"),
    ],
)
def test_normalise_domain(text: str, expected: str) -> None:
    assert normalise_domain(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty domain"),
        ("localhost", "at least two labels"),
        ("a..fr", "invalid label"),
        ("-a.fr", "invalid label"),
        ("a_b.fr", "invalid label"),
        ("a b.fr", "invalid label"),
        ("10.0.0.1", "numeric label"),
        ("xn--zz-.fr", "invalid"),
        ("a" * 64 + ".fr", "invalid label"),
        (".".join(["a" * 60] * 5), "longer than 253"),
        ("x" * 2000, "longer than 1024"),
    ],
)
def test_invalid_domains(text: str, message: str) -> None:
    with pytest.raises(WhitelistError, match=message):
        normalise_domain(text)


# --- truncation -------------------------------------------------------------------------


def test_missing_both_closing_tags_is_accepted_as_truncated() -> None:
    data = document(many(3), close=False)
    parsed = parse_whitelist(data)
    assert parsed.truncated
    assert len(parsed.entries) == 3
    assert parsed.warnings == (
        "file ends without </ListeDomaines></ListeBlancheMSSante> after Domaine #3; "
        "accepted because every Domaine that started is complete",
    )
    assert parse_whitelist(data.rstrip()).truncated  # no final newline either


def test_missing_root_closing_tag_only_is_accepted_as_truncated() -> None:
    data = document(many(2), close=False) + b"</ListeDomaines>\n"
    parsed = parse_whitelist(data)
    assert parsed.truncated and len(parsed.entries) == 2
    assert "without </ListeBlancheMSSante> after Domaine #2" in parsed.warnings[0]


def test_truncated_inside_a_domaine_is_refused() -> None:
    full = document(many(3), close=False)
    for cut in (b"<Description>", b"</Nom>", b"<DateMAJ>2025"):
        end = full.rindex(cut) + len(cut)
        with pytest.raises(WhitelistError, match=r"truncated inside Domaine #3"):
            parse_whitelist(full[:end])


@pytest.mark.parametrize(
    "tail",
    [b"<Dom", b"<Domaine", b"</Domai", b"</ListeDomai", b"</ListeDomaines>\n</ListeBlanche"],
)
def test_truncated_mid_tag_is_refused(tail: bytes) -> None:
    data = document(many(2), close=False) + tail
    with pytest.raises(WhitelistError, match="truncated"):
        parse_whitelist(data)


def test_cut_inside_last_end_tag_names_the_domaine() -> None:
    data = document(many(2), close=False).rstrip()[:-3]  # "...</Domai"
    with pytest.raises(WhitelistError, match="truncated inside Domaine #2"):
        parse_whitelist(data)


def test_truncated_before_any_domaine_is_refused() -> None:
    with pytest.raises(WhitelistError, match="truncated before any Domaine"):
        parse_whitelist(document("", close=False))


def test_trailing_garbage_after_root_is_refused() -> None:
    with pytest.raises(WhitelistError, match="not XML"):
        parse_whitelist(document(many(1)) + b"<x/>")


# --- hostile and broken input ----------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ListeBlancheMSSante><ListeDomaines><Domaine><Nom>&lol9;</Nom>
<DNCertificatOperateur>CN=a</DNCertificatOperateur></Domaine></ListeDomaines>
</ListeBlancheMSSante>"""


def test_billion_laughs_is_refused() -> None:
    started = time.perf_counter()
    with pytest.raises(WhitelistError, match="DOCTYPE not allowed"):
        parse_whitelist(BILLION_LAUGHS)
    assert time.perf_counter() - started < 0.5


def test_external_entity_is_refused_and_nothing_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    payloads = [
        f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<ListeBlancheMSSante><ListeDomaines><Domaine><Nom>&xxe;</Nom></Domaine>"
        "</ListeDomaines></ListeBlancheMSSante>",
        f'<!DOCTYPE ListeBlancheMSSante SYSTEM "file://{secret}"><ListeBlancheMSSante/>',
        '<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><r/>',
        '<?xml version="1.0"?>\n<!doctype r><r/>',
        "<r/><!ENTITY x 'y'>",
    ]
    for payload in payloads:
        with pytest.raises(WhitelistError, match="not allowed") as info:
            parse_whitelist(payload.encode())
        assert "TOP-SECRET" not in str(info.value)


def test_parser_itself_refuses_a_doctype_the_precheck_missed(tmp_path: Path) -> None:
    """Defence in depth: without the byte scan, lxml still expands and reads nothing."""
    from annuaire.whitelist_xml import _Reader

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT")
    data = (
        f'<!DOCTYPE ListeBlancheMSSante [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        "<ListeBlancheMSSante><ListeDomaines><Domaine><Nom>&xxe;</Nom></Domaine>"
        "</ListeDomaines></ListeBlancheMSSante>"
    ).encode()
    reader = _Reader(10)
    with pytest.raises(WhitelistError, match="DOCTYPE not allowed"):
        reader.run(data)
    assert reader.raw == []


def test_undeclared_entity_reference_is_refused() -> None:
    data = document(domaine("&xxe;", DN_CHU))
    with pytest.raises(WhitelistError, match=r"entity reference &xxe; not allowed"):
        parse_whitelist(data)


def test_non_ascii_compatible_encodings_are_refused() -> None:
    doctype = '<?xml version="1.0" encoding="UTF-7"?>+ADw-!DOCTYPE r+AD4-<r/>'
    with pytest.raises(WhitelistError, match="encoding 'UTF-7' not accepted"):
        parse_whitelist(doctype.encode("ascii"))
    utf16 = document(many(1)).decode().replace("UTF-8", "UTF-16").encode("utf-16")
    with pytest.raises(WhitelistError, match="not XML"):
        parse_whitelist(utf16)
    latin1 = document(domaine("a.fr", "CN=Hôpital")).replace(b"UTF-8", b"ISO-8859-1")
    parsed = parse_whitelist(latin1.decode("utf-8").encode("latin-1"))
    assert parsed.entries[0].dn.attributes == (("CN", "Hôpital"),)
    assert parse_whitelist(b"\xef\xbb\xbf" + document(many(1))).entries


@pytest.mark.parametrize(
    "data",
    [b"", b"   \n", b"hello", b'{"json": true}', b"%PDF-1.7", b"<", b"<a", b"<a><b></a>"],
)
def test_not_xml(data: bytes) -> None:
    with pytest.raises(WhitelistError, match="not XML"):
        parse_whitelist(data)


def test_malformed_in_the_middle() -> None:
    body = many(2) + "<Domaine><Nom a=1>x</Nom></Domaine>" + many(2)
    with pytest.raises(WhitelistError, match="not XML"):
        parse_whitelist(document(body))


def test_wrong_root() -> None:
    with pytest.raises(
        WhitelistError, match="root element is ListeNoire, expected ListeBlancheMSSante"
    ):
        parse_whitelist(b"<ListeNoire><ListeDomaines/></ListeNoire>")
    with pytest.raises(WhitelistError, match=r"root element is \{urn:x\}ListeBlancheMSSante"):
        parse_whitelist(b'<ListeBlancheMSSante xmlns="urn:x"/>')


def test_empty_list() -> None:
    with pytest.raises(WhitelistError, match="no Domaine entries"):
        parse_whitelist(document(""))
    with pytest.raises(WhitelistError, match="no Domaine entries"):
        parse_whitelist(f'<ListeBlancheMSSante xmlns="{NAMESPACE}"/>'.encode())


def test_domaine_outside_liste_domaines() -> None:
    data = f'<ListeBlancheMSSante xmlns="{NAMESPACE}"><Domaine/></ListeBlancheMSSante>'
    with pytest.raises(WhitelistError, match="Domaine element outside ListeDomaines"):
        parse_whitelist(data.encode())


def test_one_invalid_entry_is_skipped_with_a_warning() -> None:
    body = many(10) + domaine("bad..fr", DN_CHU) + many(9).replace("d", "e")
    parsed = parse_whitelist(document(body))
    assert len(parsed.entries) == 19
    assert len(parsed.warnings) == 1
    assert parsed.warnings[0].startswith("Domaine #11 skipped: domain 'bad..fr'")


def test_invalid_dn_and_missing_fields_are_skipped() -> None:
    body = (
        many(30)
        + domaine("a.fr", 'O="unterminated')
        + "<Domaine><Nom>b.fr</Nom></Domaine>"
        + domaine("c.fr", "CN=c", extra="<Nom>again.fr</Nom>")
    )
    parsed = parse_whitelist(document(body))
    assert len(parsed.entries) == 30
    assert parsed.warnings == (
        "Domaine #31 skipped: DNCertificatOperateur 'O=\"unterminated': "
        "unterminated quoted value starting at offset 2",
        "Domaine #32 skipped: missing DNCertificatOperateur",
        "Domaine #33 skipped: 2 Nom elements",
    )


def test_twelve_percent_invalid_refuses_the_file() -> None:
    with pytest.raises(WhitelistError, match=r"12 of 100 Domaine entries are invalid \(over 10%\)"):
        parse_whitelist(document(many(100, bad=12)))
    assert len(parse_whitelist(document(many(100, bad=10))).entries) == 90


def test_warnings_are_bounded() -> None:
    parsed = parse_whitelist(document(many(2000, bad=150)))
    assert len(parsed.warnings) == 101
    assert parsed.warnings[-1] == "... and 50 more warnings"


def test_date_forms() -> None:
    body = domaine("a.fr", "CN=a").replace("2025-03-01T10:00:00Z", "2025-03-01T11:00:00+01:00")
    body += domaine("b.fr", "CN=a").replace("2025-03-01T10:00:00Z", "2025-03-01T10:00:00")
    body += domaine("c.fr", "CN=a").replace("2025-03-01T10:00:00Z", " ")
    body += domaine("d.fr", "CN=a").replace("2025-03-01T10:00:00Z", "0001-01-01T00:00:00+01:00")
    parsed = parse_whitelist(document(body + many(6)))
    ten = datetime(2025, 3, 1, 10, tzinfo=UTC)
    assert [e.updated_at for e in parsed.entries[:4]] == [ten, ten, None, None]
    assert parsed.warnings == (
        "Domaine #4: DateMAJ '0001-01-01T00:00:00+01:00' is not an ISO 8601 date; "
        "kept without date",
    )


def test_bad_dates_are_warnings_not_errors() -> None:
    body = domaine("a.fr", "CN=a").replace("2025-03-01T10:00:00Z", "hier")
    data = document(body).replace(b"2025-03-13T14:54:10Z", b"13/03/2025")
    parsed = parse_whitelist(data)
    assert parsed.entries[0].updated_at is None
    assert parsed.generated_at is None
    assert parsed.warnings == (
        "DateDeGeneration '13/03/2025' is not ISO 8601",
        "Domaine #1: DateMAJ 'hier' is not an ISO 8601 date; kept without date",
    )


def test_size_and_count_limits() -> None:
    data = document(many(20))
    with pytest.raises(WhitelistError, match=f"file larger than {len(data) - 1} bytes"):
        parse_whitelist(data, max_bytes=len(data) - 1)
    assert parse_whitelist(data, max_bytes=len(data)).entries
    with pytest.raises(WhitelistError, match="more than 19 Domaine entries"):
        parse_whitelist(data, max_entries=19)
    long_description = domaine("a.fr", "CN=a").replace(">d<", ">" + "x" * 5000 + "<")
    parsed = parse_whitelist(document(many(20) + long_description))
    assert "Description longer than 4096" in parsed.warnings[0]


def test_national_size_file_parses_well_under_a_second() -> None:
    dns = [
        parse_dn(f"CN=mx{i}.op.fr,OU={1750000000 + i},O=OPERATEUR {i},ST=Paris (75),C=FR")
        for i in range(300)
    ]
    when = datetime(2025, 1, 1, tzinfo=UTC)
    entries = [
        WhitelistEntry(f"d{i % 5000}.mssante.fr", dns[i % 300], "Établissement", "r", "s", when)
        for i in range(6500)
    ]
    data = render_whitelist(entries, GENERATED)
    started = time.process_time()  # CPU time: other jobs on the machine do not count
    parsed = parse_whitelist(data)
    elapsed = time.process_time() - started
    assert len(parsed.entries) == 6500
    assert parsed.warnings == ()
    assert elapsed < 1.0, f"{elapsed:.2f}s"


_LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff")
    | st.sampled_from("\t\n\r"),
    max_size=20,
)
_ENTRIES = st.lists(
    st.builds(
        WhitelistEntry,
        domain=st.lists(_LABEL, min_size=1, max_size=3).map(lambda ls: ".".join([*ls, "fr"])),
        dn=st.sampled_from(
            [parse_dn(DN_CHU), parse_dn('O="C H U  DE  LIMOGES",CN=x'), DN.of(("CN", "a\u00a0b"))]
        ),
        description=_XML_TEXT,
        responsible_contact=_XML_TEXT,
        support_contact=_XML_TEXT,
        updated_at=st.none()
        | st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
        ),
    ),
    min_size=1,
    max_size=5,
    unique_by=lambda e: (e.domain, e.dn.key),
)


@settings(max_examples=40, deadline=None)
@given(_ENTRIES)
def test_render_then_parse_round_trips(entries: list[WhitelistEntry]) -> None:
    parsed = parse_whitelist(render_whitelist(entries, GENERATED))
    assert parsed.entries == tuple(entries)
    assert parsed.warnings == ()
