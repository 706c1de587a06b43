"""National extraction import (idempotent, bounded) and ranked search, on both engines."""

from pathlib import Path

import pytest

from annuaire import bal, directory
from annuaire.extraction import ExtractionRecord, format_extraction, open_extraction
from annuaire.synthetic import write_synthetic_file

from factories import NOW, finess, rpps


def import_file(db, path: Path) -> directory.ImportStats:
    with db.transaction() as conn, open_extraction(path) as lines:
        return directory.import_extraction(conn, lines)


def count(db) -> int:
    with db.read() as conn:
        return conn.exec_driver_sql(
            "SELECT count(*) FROM directory_entries WHERE source = 'national'"
        ).scalar()


@pytest.mark.slow
def test_fifty_thousand_lines_import_idempotently_and_track_changes(db, tmp_path):
    # covers: ANN-2
    written = write_synthetic_file(
        tmp_path / "Extraction_Correspondance_MSSante.zip",
        50_000,
        seed=7,
        zipped=True,
        malformed_every=5_000,
        multiline_every=2_500,
    )
    first = import_file(db, written.path)
    assert first.added + first.duplicates == 50_000
    assert len(first.malformed) == written.malformed == 10
    assert all(m.line_number > 1 for m in first.malformed)
    assert first.updated == first.removed == 0
    total = count(db)
    assert total == first.added

    again = import_file(db, written.path)  # the same file changes nothing
    assert (again.added, again.updated, again.removed) == (0, 0, 0)
    assert again.unchanged == total

    # A newer file: one line gone, one changed, one new.
    with open_extraction(written.path) as lines:
        text = [line if line.endswith("\n") else line + "\n" for line in lines]
    separators = text[0].count("|")

    def plain(i: int) -> bool:
        fields = text[i].split("|")
        return (
            text[i].count("|") == separators and fields[0] in ("PER", "ORG") and len(text[i]) < 900
        )

    removed_at, changed_at, source_at = (
        next(i for i in range(n, len(text)) if plain(i)) for n in (1000, 2000, 3000)
    )
    changed = text[changed_at].split("|")
    changed[9] += "-MODIFIE"  # Nom d'exercice: same mailbox, new content
    added = text[source_at].split("|")
    added[1] = "nouvelle.adresse@" + added[1].split("@")[1]
    text[changed_at] = "|".join(changed)
    newer = [line for i, line in enumerate(text) if i != removed_at] + ["|".join(added)]
    (tmp_path / "newer.txt").write_text("".join(newer))
    third = import_file(db, tmp_path / "newer.txt")
    assert (third.added, third.updated, third.removed) == (1, 1, 1)
    assert count(db) == total
    with db.read() as conn:
        assert directory.search(conn, "nouvelle.adresse@" + added[1].split("@")[1]).hits


def record(**values) -> ExtractionRecord:
    base = dict(bal_type="PER", address="x@medecin.mssante.fr")
    base.update(values)
    return ExtractionRecord(**base)


@pytest.fixture
def small_directory(db, tmp_path):
    records = [
        record(
            address="paul.durand@medecin.mssante.fr",
            last_name="DURAND",
            first_name="Paul",
            person_id_type="RPPS",
            person_id=rpps(1),
            person_national_id="8" + rpps(1),
            profession_code="10",
            profession_label="Médecin",
            city="LYON",
            postal_code="69003",
        ),
        record(
            address="durandal.marie@ch-lyon.aura.mssante.fr",
            last_name="DURANDAL",
            first_name="Marie",
            profession_code="60",
            profession_label="Infirmier",
            city="LYON",
            postal_code="69008",
        ),
        record(
            address="anne.martin@pharmacien.mssante.fr",
            last_name="MARTIN",
            first_name="Anne",
            profession_code="21",
            profession_label="Pharmacien",
            city="Bastia",
            postal_code="20200",
        ),
        record(
            address="secretariat@ch-lyon.aura.mssante.fr",
            bal_type="ORG",
            organisation_name="Centre hospitalier Durand",
            facility_id_type="FINESS",
            facility_id=finess(4),
            city="Lyon",
            postal_code="69002",
        ),
        record(
            address="jean.petit@medecin.mssante.fr",
            last_name="PETIT",
            first_name="Jean",
            profession_code="10",
            profession_label="Médecin",
            specialty_label="Pédiatrie",
            city="Marseille",
            postal_code="13005",
        ),
    ]
    path = tmp_path / "small.txt"
    path.write_text("".join(format_extraction(records)))
    stats = import_file(db, path)
    assert stats.added == 5
    return db


def addresses(result: directory.SearchResult) -> list[str]:
    return [h.address for h in result.hits]


def test_ranking_identifier_then_address_then_name_prefix_then_words(small_directory):
    # covers: ANN-2
    with small_directory.read() as conn:
        assert addresses(directory.search(conn, rpps(1))) == ["paul.durand@medecin.mssante.fr"]
        assert addresses(directory.search(conn, "8" + rpps(1))) == [
            "paul.durand@medecin.mssante.fr"
        ]
        assert addresses(directory.search(conn, finess(4))) == [
            "secretariat@ch-lyon.aura.mssante.fr"
        ]
        result = directory.search(conn, "durand")
        # name prefix (DURAND, DURANDAL) before a word match in an organisation name
        assert addresses(result) == [
            "paul.durand@medecin.mssante.fr",
            "durandal.marie@ch-lyon.aura.mssante.fr",
            "secretariat@ch-lyon.aura.mssante.fr",
        ]
        assert [h.match for h in result.hits] == ["name", "name", "words"]
        exact = directory.search(conn, "Anne.Martin@PHARMACIEN.mssante.fr")
        assert exact.hits[0].match == "address"
        assert addresses(directory.search(conn, "marie durandal")) == [
            "durandal.marie@ch-lyon.aura.mssante.fr"
        ]
        # A specialty is a filter, not a name.
        assert addresses(directory.search(conn, "pédiatrie")) == []
        # Several words that are not a name: every word must start a word of the entry.
        spread = directory.search(conn, "durand lyon")
        assert {h.match for h in spread.hits} == {"words"}
        assert len(spread.hits) == 3
        # A full name found as a name: word matches would only add noise.
        assert [h.match for h in directory.search(conn, "paul durand").hits] == ["name"]


def test_filters_and_pagination(small_directory):
    # covers: ANN-2
    with small_directory.read() as conn:
        lyon = directory.search(conn, city="lyon")
        assert len(lyon.hits) == 3 and not lyon.has_more
        assert addresses(directory.search(conn, city="202")) == [
            "anne.martin@pharmacien.mssante.fr"
        ]
        doctors = directory.search(conn, profession="medecin")
        assert len(doctors.hits) == 2
        assert addresses(directory.search(conn, profession="21")) == [
            "anne.martin@pharmacien.mssante.fr"
        ]
        assert addresses(directory.search(conn, bal_type="org")) == [
            "secretariat@ch-lyon.aura.mssante.fr"
        ]
        assert addresses(directory.search(conn, "durand", city="69003")) == [
            "paul.durand@medecin.mssante.fr"
        ]
        first = directory.search(conn, city="lyon", limit=2)
        second = directory.search(conn, city="lyon", limit=2, offset=2)
        assert first.has_more and not second.has_more
        assert set(addresses(first)) | set(addresses(second)) == set(addresses(lyon))


def test_our_bals_are_searchable_and_exported_except_liste_rouge(small_directory, tmp_path):
    # covers: ANN-2, ANN-3
    with small_directory.transaction() as conn:
        bal.add_bal(
            conn,
            bal.BalSpec(
                "dr.visible@chu.mssante.fr",
                "PER",
                display_name="VISIBLE Claire",
                person_id_type="RPPS",
                person_id=rpps(8),
            ),
            now=NOW,
        )
        bal.add_bal(
            conn,
            bal.BalSpec(
                "dr.cache@chu.mssante.fr",
                "PER",
                display_name="CACHE Hugo",
                person_id_type="RPPS",
                person_id=rpps(9),
                liste_rouge=True,
            ),
            now=NOW,
        )
        assert addresses(directory.search(conn, "visible")) == ["dr.visible@chu.mssante.fr"]
        assert directory.search(conn, "cache").hits == ()
        assert directory.search(conn, "dr.cache@chu.mssante.fr").hits == ()
        exported = [
            directory.extraction_record(b) for b in bal.list_bals(conn) if not b.liste_rouge
        ]
    assert [r.address for r in exported] == ["dr.visible@chu.mssante.fr"]
    assert exported[0].person_national_id == "8" + rpps(8)
    # A national re-import never touches our own rows.
    path = tmp_path / "empty.txt"
    path.write_text("".join(format_extraction([record(address="seul@medecin.mssante.fr")])))
    stats = import_file(small_directory, path)
    assert stats.removed == 5
    with small_directory.read() as conn:
        assert addresses(directory.search(conn, "visible")) == ["dr.visible@chu.mssante.fr"]
