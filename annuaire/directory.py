"""The searchable directory: the national extraction plus our own BALs.

Rows come from two sources. *national* rows are the lines of the ANS
extraction, imported idempotently: a line's identity (``record_key``: address,
person and facility national ids) and its content hash decide whether a
re-import adds, updates, keeps or removes it. *local* rows mirror the BALs we
host, except those on the liste rouge, which never appear in search or export.

Search ranks, in this order: an exact identifier (RPPS/ADELI/FINESS/SIRET or
their national prefixed forms), an exact address, a name prefix ("last
first"), then word prefixes over names, organisation and city ("fuzzy"). Every
tier is an index range query, so a search stays fast on a million rows.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import re
import unicodedata
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from annuaire.addresses import (
    MAX_ADDRESS,
    MAX_LOCAL,
    AddressError,
    address_key,
    normalise_domain,
)
from annuaire.extraction import ExtractionRecord, Malformed, read_extraction
from annuaire.identifiers import person_national_id
from mssante.schema import directory_entries, directory_tokens

if TYPE_CHECKING:
    from annuaire.bal import Bal

#: Lines per batch of the import (a batch is about 5 MB of Python objects).
_BATCH = 2000
_WORD = re.compile(r"[a-z0-9]+")
_HIGH = "\x7f"  # sorts after every folded character: "abc" <= x < "abc\x7f" is a prefix range


@lru_cache(maxsize=65536)
def fold(value: str | None) -> str:
    """Lower-case ASCII words: accents dropped, punctuation to spaces.

    Cached: names, professions and cities repeat a lot across the 540,000 lines.
    """
    if not value:
        return ""
    if not value.isascii():
        decomposed = unicodedata.normalize("NFKD", value)
        value = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(_WORD.findall(value.lower()))


def _tokens(*values: str | None) -> set[str]:
    return {w[:64] for v in values for w in fold(v).split() if len(w) >= 2}


@dataclass(frozen=True)
class Entry:
    """What the directory stores about one mailbox line, whatever its source.

    ``record`` is the whole source line as JSON: it is what export and display
    use, and its hash tells a changed line from an unchanged one on re-import.
    """

    address: str
    bal_type: str
    record: str
    last_name: str | None = None
    first_name: str | None = None
    organisation: str | None = None
    person_id: str | None = None
    person_national_id: str | None = None
    facility_id: str | None = None
    profession_code: str | None = None
    profession_label: str | None = None
    specialty_label: str | None = None
    city: str | None = None
    postal_code: str | None = None

    @cached_property
    def address_key(self) -> str:
        return address_key(self.address)

    @cached_property
    def record_key(self) -> str:
        identity = "|".join(
            [
                self.address_key,
                self.person_national_id or self.person_id or "",
                self.facility_id or "",
            ]
        )
        return hashlib.sha256(identity.encode("utf-8")).hexdigest()

    @cached_property
    def content_hash(self) -> str:
        return hashlib.sha256(self.record.encode("utf-8")).hexdigest()

    def row(self, source: str) -> dict[str, Any]:
        return {
            "source": source,
            "record_key": self.record_key,
            "content_hash": self.content_hash,
            "address": self.address,
            "address_key": self.address_key,
            "bal_type": self.bal_type,
            "person_id": self.person_id,
            "person_national_id": self.person_national_id,
            "facility_id": self.facility_id,
            "last_name": self.last_name,
            "first_name": self.first_name,
            "name_key": fold(f"{self.last_name or ''} {self.first_name or ''}")
            or fold(self.organisation),
            "organisation": self.organisation,
            "profession_code": self.profession_code,
            "profession_label": self.profession_label,
            "profession_key": fold(self.profession_label) or None,
            "specialty_label": self.specialty_label,
            "city": self.city,
            "city_key": fold(self.city) or None,
            "postal_code": self.postal_code,
            "record": self.record,
        }

    def tokens(self) -> set[str]:
        return _tokens(self.last_name, self.first_name, self.organisation, self.city)


def _record_json(obj: Any, skip: frozenset[str] = frozenset()) -> str:
    values = {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in skip}
    return json.dumps(values, ensure_ascii=False, sort_keys=True, default=str)


def entry_from_extraction(record: ExtractionRecord) -> Entry:
    return Entry(
        address=record.address,
        bal_type=record.bal_type,
        last_name=record.last_name,
        first_name=record.first_name,
        organisation=record.organisation_name or record.trade_name,
        person_id=record.person_id,
        person_national_id=record.person_national_id,
        facility_id=record.facility_id,
        profession_code=record.profession_code,
        profession_label=record.profession_label,
        specialty_label=record.specialty_label,
        city=record.city,
        postal_code=record.postal_code,
        record=_record_json(record, frozenset({"line_number"})),
    )


def entry_from_bal(bal: Bal) -> Entry:
    return Entry(
        address=bal.address,
        bal_type=bal.bal_type,
        record=_record_json(bal, frozenset({"id", "created_at", "updated_at"})),
        last_name=bal.display_name if bal.bal_type == "PER" else None,
        organisation=bal.facility_name or (bal.display_name if bal.bal_type != "PER" else None),
        person_id=bal.person_id,
        facility_id=bal.facility_id,
        profession_code=bal.profession_code,
        profession_label=bal.profession_label,
        specialty_label=bal.specialty_label,
        city=bal.city,
        postal_code=bal.postal_code,
    )


def extraction_record(bal: Bal) -> ExtractionRecord:
    """One of our BALs as a line of the national extraction format (for publication)."""
    person_national = (
        person_national_id(bal.person_id_type, bal.person_id)  # type: ignore[arg-type]
        if bal.person_id and bal.person_id_type
        else None
    )
    return ExtractionRecord(
        bal_type=bal.bal_type,
        address=bal.address,
        person_id_type=bal.person_id_type,
        person_id=bal.person_id,
        person_national_id=person_national,
        facility_id_type=bal.facility_id_type,
        facility_id=bal.facility_id,
        service=bal.service,
        last_name=bal.display_name if bal.bal_type == "PER" else None,
        profession_code=bal.profession_code,
        profession_label=bal.profession_label,
        specialty_code=bal.specialty_code,
        specialty_label=bal.specialty_label,
        organisation_name=bal.facility_name,
        postal_code=bal.postal_code,
        city=bal.city,
    )


def _write(conn: Connection, entry: Entry, source: str, existing_id: int | None) -> None:
    row = entry.row(source)
    if existing_id is None:
        entry_id = conn.execute(
            insert(directory_entries).values(**row).returning(directory_entries.c.id)
        ).scalar_one()
    else:
        entry_id = existing_id
        conn.execute(
            update(directory_entries).where(directory_entries.c.id == entry_id).values(**row)
        )
        conn.execute(delete(directory_tokens).where(directory_tokens.c.entry_id == entry_id))
    tokens = [{"token": t, "entry_id": entry_id} for t in sorted(entry.tokens())]
    if tokens:
        conn.execute(insert(directory_tokens), tokens)


# --------------------------------------------------------------------------- local mirror


def sync_local(conn: Connection, bal: Bal) -> None:
    """Mirror one hosted BAL into the directory (or hide it: liste rouge)."""
    remove_local(conn, bal.address_key)
    if not bal.liste_rouge:
        _write(conn, entry_from_bal(bal), "local", None)


def accepts_patient_initiation(conn: Connection, address: str) -> bool:
    """MSSC-INIT-2: is ``address`` a pharmacy flagged as taking patients' first messages?

    Our own BALs carry the flag (``bal add --pharmacy-accepts-patients``); a
    directory entry imported from elsewhere counts when its record has it.
    """
    try:
        key = address_key(address)
    except AddressError:
        return False
    records = conn.execute(
        select(directory_entries.c.record).where(directory_entries.c.address_key == key)
    ).scalars()
    for record in records:
        with contextlib.suppress(ValueError, AttributeError):
            if json.loads(record).get("pharmacy_accepts_patient_initiation") is True:
                return True
    return False


def remove_local(conn: Connection, key: str) -> None:
    conn.execute(
        delete(directory_entries).where(
            directory_entries.c.source == "local", directory_entries.c.address_key == key
        )
    )


# --------------------------------------------------------------------------- national import


@dataclass
class ImportStats:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    duplicates: int = 0
    malformed: list[Malformed] = field(default_factory=list)

    @property
    def records(self) -> int:
        return self.added + self.updated + self.unchanged


def import_extraction(
    conn: Connection,
    lines: Iterable[str],
    *,
    progress: Callable[[int], None] | None = None,
) -> ImportStats:
    """Make the national rows equal to the file, in the caller's transaction.

    Streams the file in batches of plain rows written with the driver's
    ``executemany`` (COPY on PostgreSQL). Each batch's keys are looked up
    once; the entries the file lists are remembered as a bitmap of their ids
    (a bit per id, not a key per line), and the national entries not in it
    are removed at the end. On SQLite, an import into a (nearly) empty
    directory drops the indexes with random keys and builds them again at
    the end, which costs less than keeping them up row by row; either way
    everything is one transaction, so readers see the old directory or the
    new one. (A writer thread was tried: pysqlite takes the GIL back for
    every row, so the parser and the writer barely overlapped.)
    """
    stats = ImportStats()
    reader = read_extraction(lines, on_malformed=stats.malformed.append, progress=progress)
    loader = _Loader(conn, stats)
    # A million lines allocate tens of millions of short-lived lists and tuples but
    # no cycles: the cyclic collector would walk them over and over for nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        batch: list[_Row] = []
        for line_number, values in reader.field_dicts():
            try:
                key = _address_key(values["address"])
            except AddressError as exc:
                stats.malformed.append(Malformed(line_number, str(exc), values["address"][:80]))
                continue
            batch.append(_national_row(values, key))
            if len(batch) >= _BATCH:
                loader.load(batch)
                batch = []
        if batch:
            loader.load(batch)
        loader.finish()
    finally:
        loader.close()
        if collecting:
            gc.enable()
    return stats


#: One national line ready to store: record key, content hash, the directory_entries
#: row (``_ENTRY_COLUMNS`` order, id first and still None), its search tokens.
_Row = tuple[str, str, list[Any], tuple[str, ...]]
_ENTRY_COLUMNS = tuple(c.name for c in directory_entries.columns)
# Statements built from the schema's column names; every value is a bound parameter.
_INSERT_ENTRIES = (
    f"INSERT INTO directory_entries ({', '.join(_ENTRY_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_ENTRY_COLUMNS))})"
)
_UPDATE_ENTRIES = (
    f"UPDATE directory_entries SET {', '.join(f'{c} = ?' for c in _ENTRY_COLUMNS[1:])} "  # noqa: S608
    "WHERE id = ?"
)
_LOOKUP = "SELECT record_key, id, content_hash, source FROM directory_entries"
_COPY_ENTRIES = f"COPY directory_entries ({', '.join(_ENTRY_COLUMNS)}) FROM STDIN"
_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str, check_circular=False)
# An unremarkable local part: passes every check of split_address, so only the
# domain (cached: a few thousand in the whole file) needs normalising.
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")


@lru_cache(maxsize=16384)
def _domain_key(domain: str) -> str:
    return normalise_domain(domain)


def _address_key(address: str) -> str:
    """:func:`address_key`, faster for the usual address (the same result or error)."""
    local, _, domain = address.rpartition("@")
    if len(local) <= MAX_LOCAL and _PLAIN_LOCAL.fullmatch(local):
        with contextlib.suppress(AddressError):
            normalised = _domain_key(domain)
            if len(local) + 1 + len(normalised) <= MAX_ADDRESS:
                return f"{local.lower()}@{normalised}"
    return address_key(address)


@lru_cache(maxsize=65536)
def _words(value: str | None) -> tuple[str, ...]:
    return tuple(w[:64] for w in fold(value).split() if len(w) >= 2)


def _national_row(fields: dict[str, Any], key: str) -> _Row:
    """What ``entry_from_extraction(record).row("national")`` gives, without the objects."""
    record = _JSON.encode(fields)
    last, first, city = fields["last_name"], fields["first_name"], fields["city"]
    organisation = fields["organisation_name"] or fields["trade_name"]
    person_id, national_id = fields["person_id"], fields["person_national_id"]
    facility_id, profession = fields["facility_id"], fields["profession_label"]
    identity = f"{key}|{national_id or person_id or ''}|{facility_id or ''}"
    record_key = hashlib.sha256(identity.encode("utf-8")).hexdigest()
    content_hash = hashlib.sha256(record.encode("utf-8")).hexdigest()
    row = [
        None,
        "national",
        record_key,
        content_hash,
        fields["address"],
        key,
        fields["bal_type"],
        person_id,
        national_id,
        facility_id,
        last,
        first,
        fold(f"{last or ''} {first or ''}") or fold(organisation),
        organisation,
        fields["profession_code"],
        profession,
        fold(profession) or None,
        fields["specialty_label"],
        city,
        fold(city) or None,
        fields["postal_code"],
        record,
    ]
    tokens = {*_words(last), *_words(first), *_words(organisation), *_words(city)}
    return record_key, content_hash, row, tuple(tokens)


class _Loader:
    """The writing side of one import: batches in, rows out, counts kept.

    Plain DBAPI statements on the transaction's own connection (SQLAlchemy's
    per-row work cost more than SQLite's); PostgreSQL gets its rows by COPY.
    """

    #: Below this many entries, an import rebuilds the SQLite indexes at the end.
    REBUILD_BELOW = 50_000
    #: The indexes rebuilt: those whose keys arrive in random order. Keys with few
    #: distinct values (cities, professions) or rising ones (a new entry's tokens)
    #: are appended to a few pages, which cost less kept up than rebuilt.
    REBUILT = tuple(
        f"ix_directory_entries_{c}"
        for c in ("address_key", "person_id", "person_national_id", "facility_id", "name_key")
    )
    #: SQLite page cache during an import (the default 2 MiB thrashes on 1M rows).
    CACHE_KIB = 32 * 1024

    def __init__(self, conn: Connection, stats: ImportStats) -> None:
        self.stats = stats
        self.pg = conn.dialect.name == "postgresql"
        dbapi: Any = conn.connection.driver_connection
        self.cursor: Any = dbapi.cursor()
        #: Bit i set: entry i is listed by the file (kept, updated or added by it).
        self.seen = bytearray(1 << 16)
        self.next_id = 0
        self.rebuild: list[str] = []
        self.restore: list[str] = []
        self.insert_entries = self._sql(_INSERT_ENTRIES)
        self.update_entries = self._sql(_UPDATE_ENTRIES)
        self.insert_tokens = self._sql(
            "INSERT INTO directory_tokens (token, entry_id) VALUES (?, ?)"
        )
        self.delete_tokens = self._sql("DELETE FROM directory_tokens WHERE entry_id = ?")
        cur = self.cursor
        # Whether any entry may be left over at the end (the first import has none
        # before it: no need to read the whole table for them).
        cur.execute("SELECT 1 FROM directory_entries WHERE source = 'national' LIMIT 1")
        self.had_national = cur.fetchone() is not None
        if self.pg:
            # Planner statistics cannot see the rows this transaction adds: without
            # this it soon picks sequential scans for the by-key lookups of each batch.
            cur.execute("SET LOCAL enable_seqscan = off")
            cur.execute("SELECT pg_get_serial_sequence('directory_entries', 'id')")
            self.sequence = cur.fetchone()[0]
            return
        cur.execute("SELECT coalesce(max(id), 0) + 1, count(*) FROM directory_entries")
        self.next_id, entries = cur.fetchone()
        cur.execute("PRAGMA cache_size")
        self.restore.append(f"PRAGMA cache_size = {int(cur.fetchone()[0])}")
        cur.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")
        if entries < self.REBUILD_BELOW:
            cur.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                "AND tbl_name = 'directory_entries' ORDER BY name"
            )
            for name, ddl in cur.fetchall():
                if name in self.REBUILT:
                    cur.execute(f'DROP INDEX "{name}"')
                    self.rebuild.append(ddl)

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.pg else statement

    def _mark(self, entry_id: int) -> bool:
        """Mark an entry as listed; False when it already was (a duplicate line)."""
        byte, bit = entry_id >> 3, 1 << (entry_id & 7)
        if byte >= len(self.seen):
            self.seen.extend(bytes(max(byte + 1 - len(self.seen), len(self.seen))))
        if self.seen[byte] & bit:
            return False
        self.seen[byte] |= bit
        return True

    def _existing(self, keys: list[str]) -> dict[str, tuple[int, str, str]]:
        cur = self.cursor
        if self.pg:
            cur.execute(f"{_LOOKUP} WHERE record_key = ANY(%s)", (keys,))
        else:
            marks = ", ".join("?" * len(keys))
            cur.execute(f"{_LOOKUP} WHERE record_key IN ({marks})", keys)
        return {key: (entry_id, digest, source) for key, entry_id, digest, source in cur}

    def _new_ids(self, count: int) -> list[int]:
        if self.pg:
            self.cursor.execute(
                "SELECT nextval(%s) FROM generate_series(1, %s)", (self.sequence, count)
            )
            return [entry_id for (entry_id,) in self.cursor]
        first = self.next_id
        self.next_id += count
        return list(range(first, first + count))

    def load(self, batch: list[_Row]) -> None:
        """Add, update or keep each line of the batch (first occurrence wins)."""
        stats = self.stats
        unique: dict[str, _Row] = {}
        for line in batch:
            if line[0] in unique:
                stats.duplicates += 1
            else:
                unique[line[0]] = line
        existing = self._existing(list(unique))
        new: list[_Row] = []
        changed: list[tuple[int, _Row]] = []
        for key, line in unique.items():
            found = existing.get(key)
            if found is None:
                new.append(line)
            elif not self._mark(found[0]):
                stats.duplicates += 1
            elif found[1] != line[1] or found[2] != "national":
                changed.append((found[0], line))
            else:
                stats.unchanged += 1
        tokens: list[tuple[str, int]] = []
        if new:
            rows = []
            for entry_id, (_, _, row, words) in zip(self._new_ids(len(new)), new, strict=True):
                self._mark(entry_id)
                row[0] = entry_id
                rows.append(row)
                tokens.extend((word, entry_id) for word in words)
            self._insert(rows, tokens)
            stats.added += len(new)
            tokens = []
        if changed:
            cur = self.cursor
            cur.executemany(self.update_entries, [[*row[1:], i] for i, (_, _, row, _) in changed])
            cur.executemany(self.delete_tokens, [(i,) for i, _ in changed])
            for entry_id, (_, _, _, words) in changed:
                tokens.extend((word, entry_id) for word in words)
            self._insert([], tokens)
            stats.updated += len(changed)

    def _insert(self, rows: list[list[Any]], tokens: list[tuple[str, int]]) -> None:
        cur = self.cursor
        if not self.pg:
            if rows:
                cur.executemany(self.insert_entries, rows)
            if tokens:
                cur.executemany(self.insert_tokens, tokens)
            return
        if rows:
            with cur.copy(_COPY_ENTRIES) as copy:
                for row in rows:
                    copy.write_row(row)
        if tokens:
            with cur.copy("COPY directory_tokens (token, entry_id) FROM STDIN") as copy:
                for token in tokens:
                    copy.write_row(token)

    def finish(self) -> None:
        """Indexes back, entries the file no longer lists removed, statistics fresh."""
        cur = self.cursor
        for ddl in self.rebuild:
            cur.execute(ddl)
        seen, gone = self.seen, array("q")
        if self.had_national:
            cur.execute("SELECT id FROM directory_entries WHERE source = 'national'")
            for (entry_id,) in cur:
                byte = entry_id >> 3
                if byte >= len(seen) or not seen[byte] & (1 << (entry_id & 7)):
                    gone.append(entry_id)
        delete = self._sql("DELETE FROM directory_entries WHERE id = ?")
        for start in range(0, len(gone), 10_000):
            cur.executemany(delete, [(i,) for i in gone[start : start + 10_000]])
        self.stats.removed = len(gone)
        # Fresh planner statistics: without them PostgreSQL scans after a bulk load.
        # (Whole: SQLite's sampled statistics, analysis_limit, mislead the search plans.)
        stats = self.stats
        if stats.added or stats.updated or stats.removed:
            cur.execute("ANALYZE directory_entries")
            cur.execute("ANALYZE directory_tokens")

    def close(self) -> None:
        """Connection settings back as they were (the connection returns to the pool)."""
        for statement in self.restore:
            self.cursor.execute(statement)
        self.cursor.close()


# --------------------------------------------------------------------------- search


@dataclass(frozen=True)
class Hit:
    address: str
    bal_type: str
    last_name: str | None
    first_name: str | None
    organisation: str | None
    profession: str | None
    specialty: str | None
    city: str | None
    postal_code: str | None
    source: str
    match: str  # identifier, address, name, words, filter


@dataclass(frozen=True)
class SearchResult:
    hits: tuple[Hit, ...]
    has_more: bool


MAX_LIMIT = 100
#: At most this many entries are considered for a word-prefix ("fuzzy") match.
WORD_CANDIDATES = 2000
#: At most this many index entries are read for the leading word of a word match.
WORD_SCAN = 20000
_other = directory_tokens.alias("other_token")


def search(
    conn: Connection,
    q: str = "",
    *,
    profession: str | None = None,
    city: str | None = None,
    bal_type: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchResult:
    """Ranked, paginated search (see the module docstring for the ranking)."""
    limit = max(1, min(limit, MAX_LIMIT))
    offset = max(0, offset)
    wanted = offset + limit + 1
    filters = _filters(profession, city, bal_type)
    q = q.strip()[:256]
    seen: set[int] = set()
    ranked: list[tuple[str, Any]] = []
    for name, condition in _tiers(q, filters, lambda words: _rarest_first(conn, words)):
        if len(ranked) >= wanted:
            break
        if name == "words" and ranked and _settled(q, ranked[0][0]):
            break
        rows = conn.execute(
            select(directory_entries)
            .where(condition, *filters)
            .order_by(directory_entries.c.name_key, directory_entries.c.id)
            .limit(wanted + len(seen))
        )
        for row in rows:
            if row.id not in seen:
                seen.add(row.id)
                ranked.append((name, row))
    page = ranked[offset : offset + limit]
    return SearchResult(tuple(_hit(name, row) for name, row in page), len(ranked) > offset + limit)


def _settled(q: str, best: str) -> bool:
    """Whether the best match makes word matches noise: an exact identifier or
    address, or a name matched by a query of several words (a full name)."""
    return best in ("identifier", "address") or (best == "name" and len(fold(q).split()) > 1)


def _rarest_first(conn: Connection, words: list[str]) -> list[str]:
    """Words ordered by how many index entries start with them (counted up to a bound)."""
    if len(words) < 2:
        return words

    def frequency(word: str) -> int:
        probe = (
            select(directory_tokens.c.entry_id)
            .where(_prefix(directory_tokens.c.token, word))
            .limit(WORD_SCAN)
            .subquery()
        )
        return int(conn.execute(select(func.count()).select_from(probe)).scalar_one())

    return sorted(words, key=lambda w: (frequency(w), -len(w)))


def _prefix(column: Any, folded: str) -> ColumnElement[bool]:
    return and_(column >= folded, column < folded + _HIGH)


def _tiers(
    q: str,
    filters: list[ColumnElement[bool]],
    rarest_first: Callable[[list[str]], list[str]],
) -> list[tuple[str, ColumnElement[bool]]]:
    """The ranked conditions for a query, best first."""
    if not q:
        # Filters alone: candidates come from the filters' own indexes, capped like
        # word matches, instead of walking the name index in order.
        candidates = select(directory_entries.c.id).where(*filters).limit(WORD_CANDIDATES)
        return [("filter", directory_entries.c.id.in_(candidates.scalar_subquery()))]
    tiers: list[tuple[str, ColumnElement[bool]]] = []
    compact = q.replace(" ", "")
    if compact.isalnum():
        # A facility id can be shared by thousands of mailboxes: take capped
        # candidates from the identifier indexes, then sort those by name.
        same_id = or_(
            directory_entries.c.person_id == compact,
            directory_entries.c.person_national_id == compact,
            directory_entries.c.facility_id == compact,
        )
        candidates = select(directory_entries.c.id).where(same_id, *filters)
        tiers.append(
            (
                "identifier",
                directory_entries.c.id.in_(candidates.limit(WORD_CANDIDATES).scalar_subquery()),
            )
        )
    if "@" in q:
        with contextlib.suppress(AddressError):
            tiers.append(("address", directory_entries.c.address_key == address_key(q)))
        return tiers  # an address is looked up, not guessed at
    folded = fold(q)
    if not folded:
        return tiers
    words = [w[:64] for w in folded.split()][:6]
    # One index range each (read in name order): "last first", then "first last".
    tiers.append(("name", _prefix(directory_entries.c.name_key, folded)))
    if len(words) == 2:
        tiers.append(("name", _prefix(directory_entries.c.name_key, f"{words[1]} {words[0]}")))
    # Every word must start a word of the entry. Candidates come from the token
    # index, led by the rarest word; at most WORD_SCAN index entries are read and
    # WORD_CANDIDATES kept, so the query costs the same on a million entries. A
    # word so common that a cap bites gives a sample, which the user narrows with
    # another word or a filter.
    lead, *others = rarest_first(words)
    lead_rows = (
        select(directory_tokens.c.entry_id)
        .where(_prefix(directory_tokens.c.token, lead))
        .limit(WORD_SCAN)
        .subquery()
    )
    candidates = (
        select(lead_rows.c.entry_id)
        .where(
            *(
                exists().where(
                    _other.c.entry_id == lead_rows.c.entry_id,
                    _prefix(_other.c.token, w),
                )
                for w in others
            ),
        )
        .distinct()
        .limit(WORD_CANDIDATES)
    )
    if filters:  # filter before the cap, or a filter could empty a capped sample
        candidates = candidates.join(
            directory_entries, directory_entries.c.id == lead_rows.c.entry_id
        ).where(*filters)
    tiers.append(("words", directory_entries.c.id.in_(candidates.scalar_subquery())))
    return tiers


def _filters(
    profession: str | None, city: str | None, bal_type: str | None
) -> list[ColumnElement[bool]]:
    filters: list[ColumnElement[bool]] = []
    if profession:
        code = profession.strip()
        if code.isalnum() and any(c.isdigit() for c in code):  # a code: "10", "SM54"
            filters.append(directory_entries.c.profession_code == code)
        else:  # a label prefix: "médecin", "pharm"
            filters.append(_prefix(directory_entries.c.profession_key, fold(profession)))
    if city:
        stripped = city.strip()
        if stripped.isdigit():
            filters.append(
                and_(
                    directory_entries.c.postal_code >= stripped,
                    directory_entries.c.postal_code < stripped + _HIGH,
                )
            )
        else:
            folded = fold(stripped)
            filters.append(
                and_(
                    directory_entries.c.city_key >= folded,
                    directory_entries.c.city_key < folded + _HIGH,
                )
            )
    if bal_type:
        filters.append(directory_entries.c.bal_type == bal_type.strip().upper())
    return filters


def _hit(match: str, row: Any) -> Hit:
    return Hit(
        address=row.address,
        bal_type=row.bal_type,
        last_name=row.last_name,
        first_name=row.first_name,
        organisation=row.organisation,
        profession=row.profession_label,
        specialty=row.specialty_label,
        city=row.city,
        postal_code=row.postal_code,
        source=row.source,
        match=match,
    )
