"""The bulk import path: the same rows as one entry at a time, and all-or-nothing."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from annuaire import directory
from annuaire.addresses import AddressError, address_key
from annuaire.extraction import open_extraction, read_extraction
from annuaire.synthetic import write_synthetic_file
from mssante.schema import metadata


def import_lines(db, lines) -> directory.ImportStats:
    with db.transaction() as conn:
        stats = directory.import_extraction(conn, lines)
        if db.dialect == "sqlite":  # the import's settings do not stay on the connection
            assert conn.exec_driver_sql("PRAGMA cache_size").scalar() == -2000
        return stats


def file_lines(path: Path) -> list[str]:
    with open_extraction(path) as lines:
        return list(lines)


def expected_directory(lines: list[str]) -> dict[str, tuple[dict, list[str]]]:
    """What the directory must hold after importing ``lines``, built the slow way:
    one Entry per record, the first line of a mailbox winning."""
    wanted: dict[str, tuple[dict, list[str]]] = {}
    for record in read_extraction(lines):
        try:
            address_key(record.address)
        except AddressError:
            continue
        entry = directory.entry_from_extraction(record)
        wanted.setdefault(entry.record_key, (entry.row("national"), sorted(entry.tokens())))
    return wanted


def stored_directory(db) -> dict[str, tuple[dict, list[str]]]:
    with db.read() as conn:
        rows = conn.exec_driver_sql(
            "SELECT * FROM directory_entries WHERE source = 'national'"
        ).mappings()
        entries = {row["id"]: {k: v for k, v in row.items() if k != "id"} for row in rows}
        tokens: dict[int, list[str]] = {i: [] for i in entries}
        for token, entry_id in conn.exec_driver_sql(
            "SELECT token, entry_id FROM directory_tokens ORDER BY token"
        ):
            tokens[entry_id].append(token)
    return {row["record_key"]: (row, tokens[i]) for i, row in entries.items()}


@pytest.fixture
def extraction(tmp_path) -> list[str]:
    """3,000 synthetic mailboxes with malformed, multi-line and duplicated lines,
    and one line whose address only the importer refuses (a bad domain label)."""
    written = write_synthetic_file(
        tmp_path / "extraction.txt", 3_000, seed=3, malformed_every=700, multiline_every=400
    )
    lines = file_lines(written.path)
    # A mailbox listed again much later (another batch), with other content: the
    # first line wins and the second counts as a duplicate.
    again = lines[10].split("|")
    again[9] = "ZZYZXNOM"
    lines.append("|".join(again).rstrip("\n") + "\n")
    lines.insert(2_500, lines[20])
    bad = lines[30].split("|")
    bad[1] = "quelqu.un@exemple..mssante.fr"
    lines.insert(1_234, "|".join(bad))
    return lines


def test_bulk_import_stores_exactly_what_one_entry_at_a_time_would(db, extraction):
    # covers: ANN-2
    stats = import_lines(db, extraction)
    expected = expected_directory(extraction)
    stored = stored_directory(db)
    assert stored.keys() == expected.keys()
    for key, (row, tokens) in expected.items():
        assert stored[key] == (row, tokens), row["address"]
    assert stats.added == len(expected)
    assert stats.duplicates >= 2
    assert stats.added + stats.duplicates == 3_000 + 2
    by_line = {m.line_number: m.reason for m in stats.malformed}
    assert len(by_line) == 3_000 // 700 + 1
    assert "invalid label" in by_line[1_235]  # 1-based: the header is line 1
    with db.read() as conn:
        first = stored[next(iter(expected))][0]
        assert directory.search(conn, first["address"]).hits[0].match == "address"
        assert directory.search(conn, "zzyzxnom").hits == ()


def test_import_with_maintained_indexes_gives_the_same_directory(db, extraction, monkeypatch):
    # covers: ANN-2
    import_lines(db, extraction)
    rebuilt = stored_directory(db)
    with db.transaction() as conn:
        conn.exec_driver_sql("DELETE FROM directory_entries")
    monkeypatch.setattr(directory._Loader, "REBUILD_BELOW", 0)
    import_lines(db, extraction)
    assert stored_directory(db) == rebuilt


def test_reimport_keeps_updates_and_removes_and_leaves_the_schema_whole(db, extraction):
    # covers: ANN-2
    import_lines(db, extraction)
    before = stored_directory(db)
    newer = extraction[:100] + extraction[200:]  # 100 lines gone
    changed = newer[50].split("|")
    changed[10] = "Prénom-Changé"
    newer[50] = "|".join(changed)
    stats = import_lines(db, newer)
    assert stats.added == 0
    assert stats.updated == 1
    assert stats.removed + stats.unchanged + stats.updated == len(before)
    assert 90 <= stats.removed <= 100
    assert stored_directory(db) == expected_directory(newer)
    with db.engine.connect() as conn:
        # Every index dropped for the load is back, exactly as the migrations made it.
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


def test_a_failure_mid_import_leaves_the_previous_directory(db, extraction):
    # covers: ANN-2
    import_lines(db, extraction[:1_000])
    before = stored_directory(db)

    def broken() -> Iterator[str]:
        yield from extraction[:2_600]
        raise OSError("disk read error")

    with pytest.raises(OSError, match="disk read error"):
        import_lines(db, broken())
    assert stored_directory(db) == before
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []


@pytest.mark.parametrize(
    "address",
    [
        "jean.dupont@medecin.mssante.fr",
        "Jean.Dupont@Medecin.MSSante.fr",
        "a+b_c-d@x.fr",
        "a..b@x.fr",
        ".a@x.fr",
        "a.@x.fr",
        "a b@x.fr",
        '"quoted"@x.fr',
        "é@x.fr",
        "x@é.fr",
        "x@-bad.fr",
        "x@bad",
        "x@1.2",
        "x@exemple..fr",
        "x@xn--zz.fr",
        "l" * 65 + "@x.fr",
        "l" * 64 + "@" + "d" * 60 + "." + "e" * 60 + "." + "f" * 60 + ".fr",
        "<x@y.fr>",
    ],
)
def test_the_importer_address_key_agrees_with_address_key(address):
    # covers: ANN-2
    try:
        expected = address_key(address)
    except AddressError as exc:
        with pytest.raises(AddressError) as raised:
            directory._address_key(address)
        assert str(raised.value) == str(exc)
    else:
        assert directory._address_key(address) == expected
