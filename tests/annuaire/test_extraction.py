"""The national MSSanté extraction: reading, repairing, refusing, writing, faking.

All data here is synthetic (annuaire.synthetic or hand-written fake values).
"""

from __future__ import annotations

import collections
import dataclasses
import re
import sys
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire import extraction
from annuaire.extraction import (
    DEFAULT_HEADER,
    ExtractionFileError,
    ExtractionRecord,
    HeaderError,
    Malformed,
    format_extraction,
    open_extraction,
    read_extraction,
)
from annuaire.synthetic import _luhn_valid, synthetic_extraction, write_synthetic_file

WIDTH = len(DEFAULT_HEADER)


def line(cols: dict[str, str], header: tuple[str, ...] = DEFAULT_HEADER) -> str:
    """A data line in ``header`` order from {column name: value}."""
    unknown = set(cols) - set(header)
    assert not unknown, unknown
    return "|".join(cols.get(name, "") for name in header)


def doc(*rows: str, header: tuple[str, ...] = DEFAULT_HEADER) -> list[str]:
    return ["|".join(header) + "\n", *(r + "\n" for r in rows)]


DR = {
    "Type de BAL": "per",
    "Adresse BAL": "Jeanne.Fictive@Medecin.MSSante.FR",
    "Type Identifiant PP": "8",
    "Identifiant PP": "10000000008",
    "Identification nationale PP": "810000000008",
    "Civilité d'exercice": "DR",
    "Nom d'exercice": "FICTIVE",
    "Prénom d'exercice": "Jeanne",
    "Code Profession": "10",
    "Libellé Profession": "Médecin",
    "Code savoir-faire": "SM54",
    "Libellé savoir-faire": "Médecine générale (SM)",
    "Numéro Voie (Ligne 4)": "12",
    "Indice répétition voie (Ligne 4)": "B",
    "Code type de voie (Ligne 4)": "R",
    "Libellé type de voie (Ligne 4)": "RUE",
    "Libellé Voie (Ligne 4)": "DES EXEMPLES",
    "Bureau cedex (Ligne 6)": "75013 PARIS",
    "Code postal": "75013",
    "Département": "75",
    "Pays": "FRANCE",
}
ORG = {
    "Type de BAL": "ORG",
    "Adresse BAL": "accueil@ch-exemple.ara.mssante.fr",
    "Type identifiant structure": "1",
    "Identification Structure": "1260000005",
    "Raison Sociale structure BAL": "CENTRE HOSPITALIER EXEMPLE",
    "Complément point géographique (Ligne 3)": "BATIMENT A",
    "Libellé Voie (Ligne 4)": "1 AVENUE FICTIVE",
    "Mention distribution (Ligne 5)": "CS 10001",
    "Bureau cedex (Ligne 6)": "20000 AJACCIO CEDEX 1",
    "Code postal": "20000",
    "Département": "2A",
}


def read_all(lines: list[str]) -> tuple[list[ExtractionRecord], extraction.ExtractionReader]:
    reader = read_extraction(lines)
    return list(reader), reader


# --------------------------------------------------------------------------
# Header matched by name
# --------------------------------------------------------------------------


def test_default_header_maps_every_column():
    header = read_extraction(doc()).header
    assert None not in header.fields
    assert header.unknown == ()


# covers: ANN-2
def test_record_fields_and_normalisation():
    (record, _), _ = read_all(doc(line(DR), line(ORG)))
    assert record.bal_type == "PER"
    assert record.address == "Jeanne.Fictive@medecin.mssante.fr"  # local part kept
    assert record.person_national_id == "810000000008"
    assert (record.last_name, record.first_name, record.civility) == ("FICTIVE", "Jeanne", "DR")
    assert record.specialty_code == "SM54"
    assert record.address_lines == ("12 B RUE DES EXEMPLES",)
    assert (record.postal_code, record.city, record.department) == ("75013", "PARIS", "75")
    assert record.service is None and record.organisation_name is None  # "" -> None
    assert record.line_number == 2 and record.extra == ()
    assert record.domain == "medecin.mssante.fr"


def test_organisation_address_lines_and_cedex_city():
    (_, org), _ = read_all(doc(line(DR), line(ORG)))
    assert org.address_lines == ("BATIMENT A", "1 AVENUE FICTIVE", "CS 10001")
    assert (org.postal_code, org.city, org.department) == ("20000", "AJACCIO CEDEX 1", "2A")
    assert org.facility_id == "1260000005" and org.person_id is None


# covers: ANN-2
def test_reordered_columns_and_unknown_column_kept_in_extra():
    header = (*reversed(DEFAULT_HEADER), "Nouvelle colonne ANS")
    cols = {**DR, "Nouvelle colonne ANS": "valeur"}
    (record,), reader = read_all(doc(line(cols, header), header=header))
    (expected,), _ = read_all(doc(line(DR)))
    assert dataclasses.replace(record, extra=()) == expected
    assert record.extra == (("Nouvelle colonne ANS", "valeur"),)
    assert reader.header.unknown == ("Nouvelle colonne ANS",)


# covers: ANN-2
def test_only_required_columns():
    header = ("Adresse BAL", "Type de BAL")
    (record,), _ = read_all(doc("a@b.mssante.fr|ORG", header=header))
    assert record == ExtractionRecord(bal_type="ORG", address="a@b.mssante.fr")


# covers: ANN-2
def test_missing_required_column_is_a_header_error_listing_what_was_found():
    header = tuple(n for n in DEFAULT_HEADER if n != "Adresse BAL")
    with pytest.raises(HeaderError, match="Adresse BAL") as info:
        read_extraction(doc(header=header))
    assert "'Type de BAL'" in str(info.value) and "found 31 column(s)" in str(info.value)
    with pytest.raises(HeaderError, match=re.escape("separator must be '|'")):
        read_extraction(["Type de BAL;Adresse BAL\n"])
    with pytest.raises(HeaderError, match="empty"):
        read_extraction([])


# covers: ANN-2
def test_header_spelling_variants_bom_and_structure_bal_suffixes():
    header = (
        "\ufeff  TYPE DE  bal ",
        "Adresse BAL",
        "Nom d’exercice",
        "Prenom d'exercice",
        "Catégorie professionnelle",
        "Libellé Voie (Ligne 4) structure BAL",
        "Ligne acheminement structure BAL",
        "Code postal structure BAL",
        "Pays structure BAL",
    )
    text = "PER|x@y.mssante.fr|FICTIF|Léa|C|3 RUE UNE|97400 SAINT-DENIS|97400|FRANCE"
    (record,), reader = read_all(doc(text, header=header))
    assert None not in reader.header.fields
    assert (record.last_name, record.first_name, record.profession_category_code) == (
        "FICTIF",
        "Léa",
        "C",
    )
    assert record.address_lines == ("3 RUE UNE",)
    assert (record.postal_code, record.city, record.country) == ("97400", "SAINT-DENIS", "FRANCE")


def test_values_are_nfc_and_city_from_line6_without_postal_column():
    header = ("Type de BAL", "Adresse BAL", "Nom d'exercice", "Bureau cedex (Ligne 6)")
    decomposed = "BE\u0301NARD"
    (record,), _ = read_all(doc(f"PER|a@b.fr|{decomposed}|20137 PORTO-VECCHIO", header=header))
    assert record.last_name == "BÉNARD"
    assert (record.postal_code, record.city) == ("20137", "PORTO-VECCHIO")
    (record,), _ = read_all(doc("PER|a@b.fr||PARIS CEDEX", header=header))
    assert (record.postal_code, record.city) == (None, "PARIS CEDEX")


# --------------------------------------------------------------------------
# Multi-line records and malformed lines
# --------------------------------------------------------------------------


# covers: ANN-2
def test_record_broken_over_physical_lines_is_joined():
    text = line({**ORG, "Service de rattachement": "Service de\nsoins\nintensifs"})
    parts = text.split("\n")
    assert len(parts) == 3
    records, reader = read_all([doc()[0], *(p + "\n" for p in parts), line(DR) + "\n"])
    assert [r.bal_type for r in records] == ["ORG", "PER"]
    assert records[0].service == "Service de soins intensifs"
    assert [r.line_number for r in records] == [2, 5]
    assert reader.stats == extraction.ExtractionStats(
        physical_lines=5, records=2, malformed=0, multi_line_records=1
    )


def test_truncated_line_is_not_glued_to_the_next_record():
    truncated = "|".join(line(DR).split("|")[:10])
    records, reader = read_all(doc(truncated, line(ORG)))
    assert [r.bal_type for r in records] == ["ORG"]
    assert reader.malformed == (Malformed(2, f"expected {WIDTH} fields, found 10", truncated[:80]),)


def test_record_over_five_physical_lines_is_malformed():
    broken = line({**ORG, "Service de rattachement": "a\nb\nc\nd\ne\nf"}).split("\n")
    records, reader = read_all([doc()[0], *(p + "\n" for p in broken), line(DR) + "\n"])
    assert [r.bal_type for r in records] == ["PER"]
    assert reader.stats.malformed >= 1
    assert "over 5 physical lines" in reader.malformed[0].reason
    assert reader.malformed[0].line_number == 2


# covers: ANN-2
def test_malformed_records_are_reported_with_line_numbers_and_not_fatal():
    bad = [
        line(DR) + "|surplus",
        line({**DR, "Adresse BAL": ""}),
        line({**DR, "Adresse BAL": "jeanne.fictive.medecin.mssante.fr"}),
        line({**DR, "Adresse BAL": "@medecin.mssante.fr"}),
        line({**DR, "Adresse BAL": "jeanne fictive@medecin.mssante.fr"}),
        line({**DR, "Type de BAL": "XYZ"}),
        line({**DR, "Type de BAL": ""}),
        line({**DR, "Nom d'exercice": "N" * 1025}),
        "",  # blank lines are skipped, not malformed
    ]
    seen: list[Malformed] = []
    reader = read_extraction(doc(line(ORG), *bad, line(DR)), on_malformed=seen.append)
    records = list(reader)
    assert [r.bal_type for r in records] == ["ORG", "PER"]
    assert [m.line_number for m in seen] == list(range(3, 11))
    reasons = [m.reason for m in seen]
    assert reasons == [
        f"expected {WIDTH} fields, found {WIDTH + 1}",
        "missing mailbox address",
        "address without '@'",
        "address with an empty local part or domain",
        "address contains whitespace",
        "unknown BAL type 'XYZ'",
        "missing BAL type",
        'field "Nom d\'exercice" over 1024 characters',
    ]
    assert all(len(m.excerpt) <= 80 for m in seen)
    assert reader.malformed == ()  # given to the callback, not collected
    assert reader.stats.malformed == 8 and reader.stats.records == 2


def test_trailing_separator_and_crlf_are_tolerated():
    records, reader = read_all([doc()[0], line(DR) + "|\r\n"])
    assert len(records) == 1 and reader.stats.malformed == 0


def test_progress_is_called_every_n_records(monkeypatch):
    assert extraction.PROGRESS_EVERY == 10_000
    monkeypatch.setattr(extraction, "PROGRESS_EVERY", 100)  # same code path, 100x fewer rows
    calls: list[int] = []
    rows = (line({**ORG, "Adresse BAL": f"bal{i}@ch.mssante.fr"}) for i in range(205))
    reader = read_extraction([doc()[0], *(r + "\n" for r in rows)], progress=calls.append)
    assert sum(1 for _ in reader) == 205
    assert calls == [100, 200]


# --------------------------------------------------------------------------
# Opening files: encoding, over-long lines, ZIP safety
# --------------------------------------------------------------------------


def write_bytes(path: Path, *rows: bytes) -> Path:
    path.write_bytes(b"".join(r + b"\n" for r in rows))
    return path


def test_plain_file_with_bom_and_a_cp1252_line(tmp_path):
    header = "|".join(DEFAULT_HEADER).encode("utf-8")
    good = line(DR).encode("utf-8")
    latin = line({**DR, "Adresse BAL": "h@x.fr", "Prénom d'exercice": "Hélène"}).encode("cp1252")
    path = write_bytes(tmp_path / "extraction.csv", b"\xef\xbb\xbf" + header, good, latin)
    with open_extraction(path) as source:
        records = list(read_extraction(source))
    assert [r.first_name for r in records] == ["Jeanne", "Hélène"]
    assert source.decode_fallbacks == 1
    assert source.warnings == ("extraction.csv line 3: not UTF-8, decoded as cp1252",)


def test_over_long_physical_line_is_cut_and_reported(tmp_path):
    header = "|".join(DEFAULT_HEADER).encode()
    huge = b"PER|" + b"x" * (1024 * 1024)
    path = write_bytes(tmp_path / "e.txt", header, huge, line(DR).encode())
    with open_extraction(path) as source:
        reader = read_extraction(source)
        records = list(reader)
    assert [r.bal_type for r in records] == ["PER"]
    assert reader.malformed[0].line_number == 2
    assert reader.malformed[0].reason == "record over 65536 characters"


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def extraction_bytes() -> bytes:
    return "".join(doc(line(DR), line(ORG))).encode()


# covers: ANN-2
def test_zip_with_one_member_is_streamed(tmp_path):
    path = make_zip(
        tmp_path / "Extraction_Correspondance_MSSante_202401010000.zip",
        {
            "data/": b"",
            "data/Extraction_Correspondance_MSSante_202401010000.txt": extraction_bytes(),
        },
    )
    with open_extraction(path) as source:
        assert [r.bal_type for r in read_extraction(source)] == ["PER", "ORG"]
    assert not list(tmp_path.glob("data*"))  # nothing extracted to disk


# covers: ANN-2
@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"a.txt": b"x", "b.txt": b"y"}, "exactly one file in the archive, found 2"),
        ({}, "exactly one file in the archive, found 0"),
        ({"../evil.txt": b"x"}, "absolute path or '..'"),
        ({"ok/../../evil.txt": b"x"}, "absolute path or '..'"),
        ({"/etc/evil.txt": b"x"}, "absolute path or '..'"),
        ({"C:\\evil.txt": b"x"}, "absolute path or '..'"),
        ({"bomb.txt": b"a" * (4 * 1024 * 1024)}, "compression ratio of"),
    ],
)
def test_dangerous_zips_are_refused_with_a_clear_error(tmp_path, members, message):
    path = make_zip(tmp_path / "e.zip", members)
    if members:
        assert set(zipfile.ZipFile(path).namelist()) == set(members)  # stored as given
    with pytest.raises(ExtractionFileError, match=message), open_extraction(path):
        pass


def test_zip_member_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(extraction, "MAX_UNCOMPRESSED", 100)
    path = make_zip(tmp_path / "e.zip", {"e.txt": extraction_bytes()})
    with pytest.raises(ExtractionFileError, match="over the 100-byte limit"), open_extraction(path):
        pass


def test_not_a_zip_and_missing_file(tmp_path):
    path = tmp_path / "e.zip"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(ExtractionFileError, match="not a valid ZIP"), open_extraction(path):
        pass
    with (
        pytest.raises(ExtractionFileError, match="cannot be read"),
        open_extraction(tmp_path / "absent.txt"),
    ):
        pass


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

_WORDS = st.text(alphabet="abcdefXYZéèçàÉÔ'-0123456789", min_size=1, max_size=8)
_SAFE = st.lists(_WORDS, min_size=1, max_size=3).map(" ".join)  # stripped, no '|'
_OPT = st.none() | _SAFE
_LOCAL = st.text(alphabet="abcdefxyzABC0123456789.-", min_size=1, max_size=12)
_DOMAIN = st.text(alphabet="abcdefxyz0123456789-", min_size=1, max_size=12)
_CITY = st.lists(st.text(alphabet="ABCDÉ-", min_size=1, max_size=8), min_size=1, max_size=2)
_SIMPLE = tuple(
    f.name
    for f in dataclasses.fields(ExtractionRecord)
    if f.name
    not in ("bal_type", "address", "address_lines", "postal_code", "city", "extra", "line_number")
)


@st.composite
def records(draw: st.DrawFn) -> ExtractionRecord:
    return ExtractionRecord(
        bal_type=draw(st.sampled_from(sorted(extraction.BAL_TYPES))),
        address=f"{draw(_LOCAL)}@{draw(_DOMAIN)}.mssante.fr",
        address_lines=tuple(draw(st.lists(_SAFE, max_size=4))),
        postal_code=draw(st.none() | st.integers(0, 99_999).map("{:05d}".format)),
        city=draw(st.none() | _CITY.map(" ".join)),
        **{name: draw(_OPT) for name in _SIMPLE},
    )


# covers: ANN-2
@settings(max_examples=60, deadline=None)
@given(st.lists(records(), max_size=5))
def test_format_then_parse_gives_the_same_records(items):
    lines = list(format_extraction(items))
    assert lines[0] == "|".join(DEFAULT_HEADER) + "\n"
    assert all(x.endswith("\n") and x.count("\n") == 1 for x in lines)
    parsed, reader = read_all(lines)
    assert parsed == items
    assert reader.stats.malformed == 0


def test_format_replaces_separators_and_line_breaks():
    record = ExtractionRecord(
        bal_type="ORG",
        address="a@b.mssante.fr",
        service="Soins | suite\r\nurgences\u2028nuit",
        extra=(("Colonne libre", "x|y"),),
    )
    header = (*DEFAULT_HEADER, "Colonne libre")
    lines = list(format_extraction([record], header))
    assert len(lines) == 2 and lines[1].count("|") == len(header) - 1
    (parsed,), _ = read_all(lines)
    assert parsed.service == "Soins   suite  urgences nuit"
    assert parsed.extra == (("Colonne libre", "x y"),)


def test_format_refuses_what_it_cannot_write():
    with pytest.raises(HeaderError, match="Adresse BAL"):
        list(format_extraction([], ("Type de BAL",)))
    five = ExtractionRecord(bal_type="ORG", address="a@b.fr", address_lines=("1",) * 5)
    with pytest.raises(ValueError, match="holds 4"):
        list(format_extraction([five]))


# --------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------


def test_synthetic_is_deterministic_per_seed():
    first = list(synthetic_extraction(2000, seed=7))
    assert first == list(synthetic_extraction(2000, seed=7))
    assert first != list(synthetic_extraction(2000, seed=8))
    assert len(first) == 2000
    with pytest.raises(ValueError, match="domains"):
        next(synthetic_extraction(1, domains=3))


def test_luhn_helper():
    assert _luhn_valid("79927398713") and not _luhn_valid("79927398710")
    assert not _luhn_valid("12a4") and not _luhn_valid("")


def test_synthetic_records_look_like_the_real_file():
    items = list(synthetic_extraction(10_000, seed=3, domains=300))
    kinds = collections.Counter(r.bal_type for r in items)
    assert set(kinds) == {"PER", "ORG"} and 0.82 < kinds["PER"] / len(items) < 0.88
    for r in items:
        if r.bal_type == "PER":
            assert r.person_id is not None and _luhn_valid(r.person_id)
            assert r.person_national_id == f"{r.person_id_type}{r.person_id}"
            if r.person_id_type == "8":
                assert len(r.person_id) == 11 and r.person_id.startswith("10")
            else:
                assert r.person_id_type == "0" and len(r.person_id) == 9
        else:
            assert r.person_id is None and r.facility_id is not None
        if r.facility_id is not None:
            kind, number = r.facility_id[0], r.facility_id[1:]
            assert kind == r.facility_id_type and _luhn_valid(number)
            assert len(number) == {"1": 9, "3": 14}[kind]
            if kind == "3":
                assert _luhn_valid(number[:9])  # the SIREN inside the SIRET
    per_ids = collections.Counter(r.person_id for r in items if r.person_id)
    addresses = collections.Counter(r.address for r in items)
    dupes = [a for a, count in addresses.items() if count > 1]
    assert 1 <= len(dupes) <= 40  # ~0.05 %, the rest unique
    for address in dupes:
        pair = [r for r in items if r.address == address]
        assert len(pair) == 2 and pair[0].facility_id != pair[1].facility_id
    assert sum(per_ids.values()) - len(per_ids) == len(dupes)  # ids unique but for them
    assert len({r.domain for r in items}) > 200
    postal = {r.postal_code for r in items}
    assert any(p and p.startswith("20") for p in postal)  # Corsica
    assert any(p and p.startswith("97") for p in postal)  # overseas
    assert any(r.last_name and not r.last_name.isascii() for r in items)
    assert any(r.civility is None for r in items if r.bal_type == "PER")
    names = collections.Counter(r.last_name for r in items if r.last_name)
    assert names.most_common(1)[0][1] > 5 * min(names.values())  # realistic repetition


def test_synthetic_file_reads_back_the_same_records(tmp_path):
    written = write_synthetic_file(tmp_path / "s.txt", 300, seed=5, multiline_every=7)
    with open_extraction(written.path) as source:
        reader = read_extraction(source)
        assert list(reader) == list(synthetic_extraction(300, seed=5))
    assert reader.stats.multi_line_records == written.multi_line == 300 // 7


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "Extraction_Correspondance_MSSante_202401010000.zip"
    written = write_synthetic_file(
        path, 50_000, seed=11, zipped=True, malformed_every=997, multiline_every=101
    )
    assert (written.malformed, written.multi_line) == (50, 495)
    return written.path


# covers: ANN-2
def test_fifty_thousand_lines_parse_fast_in_bounded_memory(big_file):
    started = time.perf_counter()
    # Peak memory, traced over the first records (tracing is ~10x slower):
    # opening the ZIP, its buffers and the reader's state are all in there.
    tracemalloc.start()
    with open_extraction(big_file) as source:
        reader = read_extraction(source)
        count = 0
        for _ in reader:
            count += 1
            if count == 2_000:
                break
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # The rest untraced: memory must not grow with the number of records.
        blocks_at_10k = 0
        for _ in reader:
            count += 1
            if count == 10_000:
                blocks_at_10k = sys.getallocatedblocks()
        growth = sys.getallocatedblocks() - blocks_at_10k
    elapsed = time.perf_counter() - started
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert growth < 5_000, f"{growth} blocks retained over 40,000 records"
    assert count == 50_000
    assert reader.stats.malformed == 50 and reader.stats.multi_line_records == 495
    assert reader.stats.physical_lines == 1 + 50_000 + 50 + 495
    assert elapsed < 15, f"{elapsed:.1f} s"
