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
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    and_,
    column,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    table,
    text,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from annuaire.addresses import AddressError, address_key
from annuaire.extraction import ExtractionRecord, Malformed, read_extraction
from annuaire.identifiers import person_national_id
from mssante.schema import directory_entries, directory_tokens

if TYPE_CHECKING:
    from annuaire.bal import Bal

_BATCH = 2000
#: Identities seen by the import in progress (a temporary table, created per import).
_seen = table("directory_seen", column("record_key"))
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

    Streams the file in batches; the identities seen are kept in a temporary
    table, not in memory, and what the file no longer lists is removed at the end.
    """
    stats = ImportStats()
    conn.execute(
        text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS directory_seen "
            "(record_key VARCHAR(64) PRIMARY KEY)"
        )
    )
    conn.execute(text("DELETE FROM directory_seen"))
    if conn.dialect.name == "postgresql":
        # Planner statistics cannot see the rows this transaction adds: without
        # this it soon picks sequential scans for the by-key lookups of each batch.
        conn.execute(text("SET LOCAL enable_seqscan = off"))
    batch: list[Entry] = []
    records = read_extraction(lines, on_malformed=stats.malformed.append, progress=progress)
    for record in records:
        try:
            address_key(record.address)
        except AddressError as exc:
            stats.malformed.append(Malformed(record.line_number, str(exc), record.address[:80]))
            continue
        batch.append(entry_from_extraction(record))
        if len(batch) >= _BATCH:
            _import_batch(conn, batch, stats)
            batch = []
    if batch:
        _import_batch(conn, batch, stats)
    stats.removed = conn.execute(
        delete(directory_entries).where(
            directory_entries.c.source == "national",
            directory_entries.c.record_key.not_in(select(_seen.c.record_key)),
        )
    ).rowcount
    conn.execute(text("DROP TABLE directory_seen"))
    # Fresh planner statistics: without them PostgreSQL scans after a bulk load.
    conn.execute(text("ANALYZE directory_entries"))
    conn.execute(text("ANALYZE directory_tokens"))
    return stats


def _import_batch(conn: Connection, batch: list[Entry], stats: ImportStats) -> None:
    unique: dict[str, Entry] = {}
    for entry in batch:
        key = entry.record_key
        if key in unique:
            stats.duplicates += 1
        else:
            unique[key] = entry
    keys = list(unique)
    seen_before = set(
        conn.execute(select(_seen.c.record_key).where(_seen.c.record_key.in_(keys))).scalars()
    )
    stats.duplicates += len(seen_before)
    for key in seen_before:
        del unique[key]
    if not unique:
        return
    existing = {
        row.record_key: (row.id, row.content_hash, row.source)
        for row in conn.execute(
            select(
                directory_entries.c.id,
                directory_entries.c.record_key,
                directory_entries.c.content_hash,
                directory_entries.c.source,
            ).where(directory_entries.c.record_key.in_(list(unique)))
        )
    }
    new: list[Entry] = []
    for key, entry in unique.items():
        found = existing.get(key)
        if found is None:
            new.append(entry)
        elif found[1] != entry.content_hash or found[2] != "national":
            _write(conn, entry, "national", found[0])
            stats.updated += 1
        else:
            stats.unchanged += 1
    if new:
        # Multi-row INSERT … RETURNING for the batch (ids matched by key, so the
        # order rows come back in does not matter), then its tokens in one go.
        ids = {
            key: entry_id
            for key, entry_id in conn.execute(
                insert(directory_entries).returning(
                    directory_entries.c.record_key, directory_entries.c.id
                ),
                [entry.row("national") for entry in new],
            )
        }
        tokens = [
            {"token": token, "entry_id": ids[entry.record_key]}
            for entry in new
            for token in sorted(entry.tokens())
        ]
        if tokens:
            conn.execute(insert(directory_tokens), tokens)
        stats.added += len(new)
    conn.execute(insert(_seen), [{"record_key": k} for k in unique])


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
