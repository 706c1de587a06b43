"""Read and write the ANS "Extraction_Correspondance_MSSante" file.

The national export lists every MSSanté mailbox: one ``|``-separated text
file (~540,000 lines, ~89 MB), usually inside a ZIP. It is imported nightly,
so this module is built to survive the file's known accidents without human
help:

* columns are matched by *name*, not position, so a new or reordered column
  does not break the import (unknown columns are kept in ``extra``);
* a field holding a line break splits a record over several physical lines:
  those are joined back (bounded: 5 lines, 64 Ki characters);
* a bad record is reported (:class:`Malformed`) and skipped, never fatal;
* a line that is not UTF-8 is decoded as cp1252 and counted as a warning;
* everything streams: memory does not grow with the file.

The same format is written by :func:`format_extraction` to publish our own
mailboxes.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import stat
import unicodedata
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import IO, Any

__all__ = [
    "BAL_TYPES",
    "DEFAULT_HEADER",
    "MAX_FIELD_CHARS",
    "MAX_RECORD_CHARS",
    "MAX_RECORD_LINES",
    "ExtractionFileError",
    "ExtractionHeader",
    "ExtractionReader",
    "ExtractionRecord",
    "ExtractionSource",
    "ExtractionStats",
    "HeaderError",
    "Malformed",
    "format_extraction",
    "open_extraction",
    "read_extraction",
]

SEPARATOR = "|"
BAL_TYPES = frozenset({"PER", "ORG", "APP", "CAB"})
MAX_FIELD_CHARS = 1024
"""A directory value longer than this is garbage (a swallowed record), not data."""
MAX_RECORD_CHARS = 64 * 1024
MAX_RECORD_LINES = 5
"""A record broken by line breaks is joined over at most this many physical lines."""
MAX_UNCOMPRESSED = 2 * 1024**3
MAX_COMPRESSION_RATIO = 200
RATIO_CHECK_FLOOR = 1024 * 1024
"""Below 1 MiB a high ratio cannot hurt (and tiny members compress oddly)."""
EXCERPT_CHARS = 80
PROGRESS_EVERY = 10_000
MAX_COLLECTED_MALFORMED = 1000
MAX_SOURCE_WARNINGS = 20
# Bytes read per physical line: 4 bytes per character at most in UTF-8, so a
# longer line is certainly over MAX_RECORD_CHARS and is cut here (the reader
# then reports it) instead of being held whole in memory.
_MAX_LINE_BYTES = 4 * MAX_RECORD_CHARS + 4
_DRAIN_CHUNK = 64 * 1024

DEFAULT_HEADER: tuple[str, ...] = (
    "Type de BAL",
    "Adresse BAL",
    "Type Identifiant PP",
    "Identifiant PP",
    "Identification nationale PP",
    "Type identifiant structure",
    "Identification Structure",
    "Service de rattachement",
    "Civilité d'exercice",
    "Nom d'exercice",
    "Prénom d'exercice",
    "Catégorie profession",
    "Libellé de catégorie profession",
    "Code Profession",
    "Libellé Profession",
    "Code savoir-faire",
    "Libellé savoir-faire",
    "Dématérialisation",
    "Raison Sociale structure BAL",
    "Enseigne commerciale structure BAL",
    "Complément destinataire (Ligne 2)",
    "Complément point géographique (Ligne 3)",
    "Numéro Voie (Ligne 4)",
    "Indice répétition voie (Ligne 4)",
    "Code type de voie (Ligne 4)",
    "Libellé type de voie (Ligne 4)",
    "Libellé Voie (Ligne 4)",
    "Mention distribution (Ligne 5)",
    "Bureau cedex (Ligne 6)",
    "Code postal",
    "Département",
    "Pays",
)
"""The header we write; the reader accepts any order and the aliases below."""


class HeaderError(ValueError):
    """The header line lacks a required column: nothing can be imported."""


class ExtractionFileError(ValueError):
    """The file or archive is refused before any record is read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtractionRecord:
    """One mailbox line of the national extraction, values stripped, "" as None.

    ``address_lines`` are the AFNOR postal lines 2 to 5 that are present, in
    order, line 4 rebuilt from its parts ("12 B Rue de la Paix"); line 6 is
    split into ``postal_code`` and ``city``. ``line_number`` (first physical
    line of the record) is not part of equality: the same mailbox read from
    another file is the same record.
    """

    bal_type: str
    address: str
    person_id_type: str | None = None
    person_id: str | None = None
    person_national_id: str | None = None
    facility_id_type: str | None = None
    facility_id: str | None = None
    service: str | None = None
    civility: str | None = None
    last_name: str | None = None
    first_name: str | None = None
    profession_category_code: str | None = None
    profession_category_label: str | None = None
    profession_code: str | None = None
    profession_label: str | None = None
    specialty_code: str | None = None
    specialty_label: str | None = None
    dematerialisation: str | None = None
    organisation_name: str | None = None
    trade_name: str | None = None
    address_lines: tuple[str, ...] = ()
    postal_code: str | None = None
    city: str | None = None
    department: str | None = None
    country: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    line_number: int = field(default=0, compare=False)

    @property
    def domain(self) -> str:
        """The mailbox domain (routing and per-operator counts use it)."""
        return self.address.rpartition("@")[2]


@dataclass(frozen=True, slots=True)
class Malformed:
    """A record that was skipped, with where and why, for the import report.

    ``excerpt`` holds public directory data about professionals: it is cut
    to 80 characters so reports and logs carry no more than needed.
    """

    line_number: int
    reason: str
    excerpt: str


@dataclass(frozen=True, slots=True)
class ExtractionStats:
    """Counts for the import report.

    Duplicated addresses are not counted here: that would mean remembering
    every address (tens of MB); the importer's upsert sees them anyway.
    """

    physical_lines: int = 0
    records: int = 0
    malformed: int = 0
    multi_line_records: int = 0


@dataclass(frozen=True, slots=True)
class ExtractionHeader:
    """How the header line was understood: one entry per column."""

    names: tuple[str, ...]
    fields: tuple[str | None, ...]
    """Record field fed by each column; None for a column kept in ``extra``."""

    @property
    def unknown(self) -> tuple[str, ...]:
        """Columns we do not map (kept in ``extra``): worth a note in the report."""
        return tuple(n for n, f in zip(self.names, self.fields, strict=True) if f is None and n)


# --------------------------------------------------------------------------
# Column names
# --------------------------------------------------------------------------

_TRAILER = re.compile(r"\s*(?:\([^()]*\)|structure bal)$")
_PUNCT = str.maketrans({"'": " ", "’": " ", "`": " ", "-": " ", "_": " ", ".": " "})


def _normalize_name(name: str) -> str:
    """Comparable form of a column name.

    Real header spelling has varied (accents, case, spaces, a ``(Ligne 4)``
    or `` structure BAL`` trailer), so names are compared without accents,
    case-folded, with punctuation and repeated spaces flattened and those
    trailers removed.
    """
    text = unicodedata.normalize("NFKD", name.strip())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = " ".join(text.casefold().translate(_PUNCT).split())
    while True:
        shorter = _TRAILER.sub("", text)
        if shorter == text:
            return text
        text = shorter


# Internal keys for the address parts, which the record stores as lines.
_L2, _L3, _L5, _L6 = "_line2", "_line3", "_line5", "_line6"
_NUMBER, _REPEAT, _TYPE_CODE, _TYPE_LABEL, _STREET = (
    "_street_number",
    "_street_repeat",
    "_street_type_code",
    "_street_type_label",
    "_street_name",
)

_ALIASES: dict[str, tuple[str, ...]] = {
    "bal_type": ("Type de BAL", "Type BAL"),
    "address": ("Adresse BAL", "Adresse de BAL", "Adresse mail"),
    "person_id_type": ("Type Identifiant PP", "Type d'identifiant PP"),
    "person_id": ("Identifiant PP",),
    "person_national_id": ("Identification nationale PP", "Identifiant national PP"),
    "facility_id_type": ("Type identifiant structure", "Type d'identifiant structure"),
    "facility_id": ("Identification Structure", "Identifiant structure"),
    "service": ("Service de rattachement",),
    "civility": ("Civilité d'exercice", "Code civilité d'exercice"),
    "last_name": ("Nom d'exercice",),
    "first_name": ("Prénom d'exercice",),
    "profession_category_code": (
        "Catégorie profession",
        "Catégorie professionnelle",
        "Code catégorie profession",
        "Code catégorie professionnelle",
    ),
    "profession_category_label": (
        "Libellé de catégorie profession",
        "Libellé catégorie profession",
        "Libellé catégorie professionnelle",
        "Libellé de catégorie professionnelle",
    ),
    "profession_code": ("Code Profession",),
    "profession_label": ("Libellé Profession",),
    "specialty_code": ("Code savoir-faire",),
    "specialty_label": ("Libellé savoir-faire",),
    "dematerialisation": ("Dématérialisation",),
    "organisation_name": ("Raison Sociale structure BAL", "Raison sociale structure"),
    "trade_name": ("Enseigne commerciale structure BAL", "Enseigne commerciale structure"),
    _L2: ("Complément destinataire (Ligne 2)",),
    _L3: ("Complément point géographique (Ligne 3)", "Complément localisation"),
    _NUMBER: ("Numéro Voie (Ligne 4)",),
    _REPEAT: ("Indice répétition voie (Ligne 4)", "Complément numéro voie"),
    _TYPE_CODE: ("Code type de voie (Ligne 4)",),
    _TYPE_LABEL: ("Libellé type de voie (Ligne 4)", "Type de voie", "Type voie"),
    _STREET: ("Libellé Voie (Ligne 4)", "Voie"),
    _L5: ("Mention distribution (Ligne 5)", "Lieu-dit"),
    _L6: ("Bureau cedex (Ligne 6)", "Ligne acheminement", "Ligne d'acheminement"),
    "postal_code": ("Code postal",),
    "city": ("Libellé commune", "Commune", "Ville"),
    "department": ("Département", "Code département"),
    "country": ("Pays", "Libellé pays"),
}


def _column_keys() -> dict[str, str]:
    keys: dict[str, str] = {}
    for key, aliases in _ALIASES.items():
        for alias in aliases:
            normal = _normalize_name(alias)
            if keys.setdefault(normal, key) != key:  # pragma: no cover - table typo
                raise AssertionError(f"column alias {alias!r} maps to two fields")
    return keys


_COLUMN_KEYS = _column_keys()
_REQUIRED = {"bal_type": "Type de BAL", "address": "Adresse BAL"}
#: The columns a record's ``address_lines`` (and line 6) are made of, in the order read.
_ADDRESS_PARTS = (_L2, _L3, _NUMBER, _REPEAT, _TYPE_LABEL, _TYPE_CODE, _STREET, _L5, _L6)


def _resolve_header(names: Sequence[str]) -> ExtractionHeader:
    """Map each column to a record field, or to ``extra``; first match wins."""
    used: set[str] = set()
    resolved: list[str | None] = []
    for name in names:
        key = _COLUMN_KEYS.get(_normalize_name(name)) if name else None
        if key is not None and key not in used:
            used.add(key)
            resolved.append(key)
        else:
            resolved.append(None)
    missing = [label for key, label in _REQUIRED.items() if key not in used]
    if missing:
        shown = ", ".join(repr(n[:40]) for n in names[:40]) or "nothing"
        hint = ""
        if len(names) == 1 and any(sep in names[0] for sep in (";", "\t", ",")):
            hint = " (the separator must be '|')"
        raise HeaderError(
            f"extraction header lacks required column(s) {', '.join(missing)}{hint}; "
            f"found {len(names)} column(s): {shown}"
        )
    return ExtractionHeader(names=tuple(names), fields=tuple(resolved))


# --------------------------------------------------------------------------
# Opening the file
# --------------------------------------------------------------------------


class ExtractionSource(Iterator[str]):
    """Decoded physical lines of a plain file or a ZIP member, streamed.

    Each line is decoded as UTF-8; a line that is not valid UTF-8 is decoded
    as cp1252 (the usual accident: one record re-saved by a Windows tool)
    and counted in ``decode_fallbacks`` with a warning. Deciding per line
    keeps one bad record from garbling the rest and needs no second pass.
    A line over ~256 KiB is cut (the reader reports it as over-long) so a
    file without line breaks cannot fill memory.
    """

    def __init__(
        self,
        stream: IO[bytes],
        *,
        name: str,
        limit: int | None = None,
        total_bytes: int | None = None,
    ) -> None:
        self.name = name
        #: Size of the text, when known: with :attr:`bytes_read`, a progress bar.
        self.total_bytes = total_bytes
        self.decode_fallbacks = 0
        self._warnings: list[str] = []
        self._stream = stream
        self._limit = limit
        self._read = 0
        self._line_number = 0

    @property
    def warnings(self) -> tuple[str, ...]:
        """The first warnings (20 at most; ``decode_fallbacks`` has the count)."""
        return tuple(self._warnings)

    @property
    def bytes_read(self) -> int:
        return self._read

    def __iter__(self) -> ExtractionSource:
        return self

    def __next__(self) -> str:
        raw = self._stream.readline(_MAX_LINE_BYTES)
        if not raw:
            raise StopIteration
        self._count(len(raw))
        if len(raw) == _MAX_LINE_BYTES and not raw.endswith(b"\n"):
            self._drain_line()
        self._line_number += 1
        if self._line_number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if len(raw) >= _MAX_LINE_BYTES:  # cut mid-character; rejected anyway
                return raw.decode("utf-8", errors="replace")
            self.decode_fallbacks += 1
            if len(self._warnings) < MAX_SOURCE_WARNINGS:
                self._warnings.append(
                    f"{self.name} line {self._line_number}: not UTF-8, decoded as cp1252"
                )
            return raw.decode("cp1252", errors="replace")

    def _drain_line(self) -> None:
        """Skip the rest of an over-long physical line without keeping it."""
        while True:
            chunk = self._stream.readline(_DRAIN_CHUNK)
            self._count(len(chunk))
            if not chunk or chunk.endswith(b"\n"):
                return

    def _count(self, size: int) -> None:
        # Declared sizes can lie: enforce the limit on what is really inflated.
        self._read += size
        if self._limit is not None and self._read > self._limit:
            raise ExtractionFileError(f"{self.name}: more than {self._limit} bytes once inflated")


def _is_zip(path: Path) -> bool:
    if path.suffix.lower() == ".zip":
        return True
    with path.open("rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _unsafe_name(name: str) -> bool:
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return True
    return ".." in PurePosixPath(unified).parts


def _single_member(archive: zipfile.ZipFile, label: str) -> zipfile.ZipInfo:
    """The one text member, after the checks that make reading it safe."""
    members: list[zipfile.ZipInfo] = []
    for info in archive.infolist():
        if _unsafe_name(info.filename):
            raise ExtractionFileError(
                f"{label}: refused, member {info.filename[:100]!r} has an absolute path or '..'"
            )
        if not info.is_dir():
            members.append(info)
    if len(members) != 1:
        names = ", ".join(repr(m.filename[:60]) for m in members[:5])
        raise ExtractionFileError(
            f"{label}: expected exactly one file in the archive, found {len(members)}"
            + (f" ({names})" if names else "")
        )
    info = members[0]
    if info.flag_bits & 0x1:
        raise ExtractionFileError(f"{label}: member {info.filename!r} is encrypted")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise ExtractionFileError(f"{label}: member {info.filename!r} is a symbolic link")
    if info.file_size > MAX_UNCOMPRESSED:
        raise ExtractionFileError(
            f"{label}: member {info.filename!r} declares {info.file_size} bytes, "
            f"over the {MAX_UNCOMPRESSED}-byte limit"
        )
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > RATIO_CHECK_FLOOR and ratio > MAX_COMPRESSION_RATIO:
        raise ExtractionFileError(
            f"{label}: member {info.filename!r} has a compression ratio of {ratio:.0f}, "
            f"over {MAX_COMPRESSION_RATIO} (zip bomb?)"
        )
    return info


@contextlib.contextmanager
def open_extraction(path: str | os.PathLike[str]) -> Iterator[ExtractionSource]:
    """Open a plain extraction or a ZIP holding exactly one, as decoded lines.

    The ZIP member is streamed, never extracted to disk; members with an
    absolute path or ``..``, several files, a declared size over 2 GiB or a
    compression ratio over 200 are refused with :class:`ExtractionFileError`.
    """
    source_path = Path(path)
    try:
        is_zip = _is_zip(source_path)
    except OSError as exc:
        raise ExtractionFileError(f"{source_path}: cannot be read ({exc.strerror})") from exc
    if not is_zip:
        with source_path.open("rb") as handle:
            yield ExtractionSource(
                handle, name=source_path.name, total_bytes=source_path.stat().st_size
            )
        return
    try:
        archive = zipfile.ZipFile(source_path)
    except zipfile.BadZipFile as exc:
        raise ExtractionFileError(f"{source_path.name}: not a valid ZIP archive ({exc})") from exc
    with archive:
        info = _single_member(archive, source_path.name)
        with archive.open(info) as member:
            yield ExtractionSource(
                member,
                name=f"{source_path.name}:{info.filename}",
                limit=MAX_UNCOMPRESSED,
                total_bytes=info.file_size,
            )


# --------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------

_LINE6 = re.compile(r"^(\d{5})(?:\s+(.+))?$")
#: Every record field (but ``line_number``) with its empty value: a line's fields start here.
_NO_FIELDS: dict[str, Any] = {
    f.name: (() if f.name in ("address_lines", "extra") else None)
    for f in fields(ExtractionRecord)
    if f.name != "line_number"
}
_WHITESPACE = re.compile(r"\s")


class ExtractionReader(Iterator[ExtractionRecord]):
    """Iterator of records with the header understanding and running counts.

    Built by :func:`read_extraction`; the header is read at construction so
    a wrong file fails at once with :class:`HeaderError`.
    """

    def __init__(
        self,
        lines: Iterable[str],
        *,
        on_malformed: Callable[[Malformed], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._lines = iter(lines)
        self._on_malformed = on_malformed
        self._progress = progress
        self._collected: list[Malformed] = []
        self._physical = 0
        self._records = 0
        self._malformed = 0
        self._multi = 0
        first = next(self._lines, None)
        if first is None:
            raise HeaderError("empty extraction: no header line")
        self._physical = 1
        names = [n.strip() for n in first.rstrip("\r\n").lstrip("\ufeff").split(SEPARATOR)]
        self.header = _resolve_header(names)
        self._width = len(names)
        self._separators = self._width - 1
        self._known = tuple((i, key) for i, key in enumerate(self.header.fields) if key is not None)
        self._extra = tuple(
            (i, name)
            for i, (name, key) in enumerate(zip(names, self.header.fields, strict=True))
            if key is None and name
        )
        # Where each field is, so a line is read with two itemgetters: the record
        # fields (a dict of the non-empty ones), then the parts of the postal
        # address in a fixed order (a missing column reads the "" put at index
        # ``width`` of every line).
        column = {key: i for i, key in self._known}
        self._field_keys = tuple(
            key for _, key in self._known if key not in _ADDRESS_PARTS and key not in _REQUIRED
        )
        self._field_values = operator.itemgetter(
            *(column[key] for key in self._field_keys), self._width
        )
        self._required = operator.itemgetter(column["bal_type"], column["address"])
        self._address_parts = operator.itemgetter(
            *(column.get(key, self._width) for key in _ADDRESS_PARTS)
        )
        self._fields = self._run()
        self._iterator = (ExtractionRecord(**f, line_number=n) for n, f in self._fields)

    @property
    def stats(self) -> ExtractionStats:
        """Counts so far (final once the iterator is exhausted)."""
        return ExtractionStats(
            physical_lines=self._physical,
            records=self._records,
            malformed=self._malformed,
            multi_line_records=self._multi,
        )

    @property
    def malformed(self) -> tuple[Malformed, ...]:
        """Skipped records kept when no ``on_malformed`` was given (first 1000)."""
        return tuple(self._collected)

    def __iter__(self) -> ExtractionReader:
        return self

    def __next__(self) -> ExtractionRecord:
        return next(self._iterator)

    def field_dicts(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """The same stream as the records, as ``(line_number, {field: value})``.

        Every field of :class:`ExtractionRecord` but ``line_number`` is a key
        (None or ``()`` when absent), so ``ExtractionRecord(**d, line_number=n)``
        is the record. The bulk importer reads this: it skips building a frozen
        dataclass per line. Iterating the reader and this share one stream.
        """
        return self._fields

    def _report(self, line_number: int, reason: str, text: str) -> None:
        self._malformed += 1
        bad = Malformed(line_number, reason, text[:EXCERPT_CHARS])
        if self._on_malformed is not None:
            self._on_malformed(bad)
        elif len(self._collected) < MAX_COLLECTED_MALFORMED:
            self._collected.append(bad)

    def _next_physical(self) -> str | None:
        raw = next(self._lines, None)
        if raw is None:
            return None
        self._physical += 1
        return raw.rstrip("\r\n")

    def _run(self) -> Iterator[tuple[int, dict[str, Any]]]:
        expected = self._separators
        pending: tuple[int, str] | None = None
        while True:
            if pending is not None:
                line_number, text = pending
                pending = None
            else:
                line = self._next_physical()
                if line is None:
                    return
                line_number, text = self._physical, line
            if not text.strip():
                continue  # blank line (often the last one)
            if len(text) > MAX_RECORD_CHARS:
                self._report(line_number, f"record over {MAX_RECORD_CHARS} characters", text)
                continue
            separators = text.count(SEPARATOR)
            parts = 1
            if separators < expected:
                # A field held a line break: glue the following lines back while
                # they fit, but never swallow a line that is a record by itself.
                chunks, size = [text], len(text)
                while separators < expected and parts < MAX_RECORD_LINES:
                    nxt = self._next_physical()
                    if nxt is None:
                        break
                    more = nxt.count(SEPARATOR)
                    if more >= expected or separators + more > expected:
                        pending = (self._physical, nxt)
                        break
                    chunks.append(nxt)
                    separators += more
                    parts += 1
                    size += 1 + len(nxt)
                    if size > MAX_RECORD_CHARS:
                        break
                text = " ".join(chunks)
                if size > MAX_RECORD_CHARS:
                    self._report(line_number, f"record over {MAX_RECORD_CHARS} characters", text)
                    continue
            outcome = self._build(text)
            if isinstance(outcome, str):
                if parts > 1:
                    outcome += f" (over {parts} physical lines)"
                self._report(line_number, outcome, text)
                continue
            self._records += 1
            if parts > 1:
                self._multi += 1
            if self._progress is not None and self._records % PROGRESS_EVERY == 0:
                self._progress(self._records)
            yield line_number, outcome

    def _build(self, text: str) -> dict[str, Any] | str:
        """The record's fields (see :meth:`field_dicts`), or why it is malformed."""
        # '|' never combines with a neighbour, so NFC of the whole line is NFC
        # of each field: one check per record instead of one per field.
        if not text.isascii() and not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
        raw = text.split(SEPARATOR)
        if len(raw) == self._width + 1 and not raw[-1].strip():
            raw.pop()  # a trailing '|' after the last column
        if len(raw) != self._width:
            return f"expected {self._width} fields, found {len(raw)}"
        values = list(map(str.strip, raw))
        # No field can be longer than the whole line: most lines skip the scan.
        if len(text) > MAX_FIELD_CHARS and max(map(len, values)) > MAX_FIELD_CHARS:
            index = next(i for i, v in enumerate(values) if len(v) > MAX_FIELD_CHARS)
            name = self.header.names[index] or f"column {index + 1}"
            return f"field {name!r} over {MAX_FIELD_CHARS} characters"
        values.append("")  # what a column the header lacks reads
        bal_type, address = self._required(values)
        bal_type = bal_type.upper()
        if not bal_type:
            return "missing BAL type"
        if bal_type not in BAL_TYPES:
            return f"unknown BAL type {bal_type[:20]!r}"
        if not address:
            return "missing mailbox address"
        local, at, domain = address.rpartition("@")
        if not at:
            return "address without '@'"
        if not local or not domain:
            return "address with an empty local part or domain"
        if _WHITESPACE.search(address):
            return "address contains whitespace"
        got: dict[str, Any] = {
            key: value
            for key, value in zip(self._field_keys, self._field_values(values), strict=False)
            if value
        }
        line2, line3, number, repeat, type_label, type_code, street, line5, line6 = (
            self._address_parts(values)
        )
        street = " ".join(filter(None, (number, repeat, type_label or type_code, street)))
        lines = tuple(filter(None, (line2, line3, street, line5)))
        if line6:
            match = _LINE6.match(line6)
            if match:
                got.setdefault("postal_code", match.group(1))
                if match.group(2):
                    got.setdefault("city", match.group(2))
            else:
                got.setdefault("city", line6)
        record = _NO_FIELDS.copy()
        record.update(got)
        record["bal_type"] = bal_type
        record["address"] = f"{local}@{domain.lower()}"
        record["address_lines"] = lines
        record["extra"] = tuple((name, values[i]) for i, name in self._extra if values[i])
        return record


def read_extraction(
    lines: Iterable[str],
    *,
    on_malformed: Callable[[Malformed], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExtractionReader:
    """Stream records from the lines of an extraction (header line first).

    Malformed records are skipped and passed to ``on_malformed``, or kept on
    ``reader.malformed`` (first 1000) when it is None; ``reader.stats`` has
    the counts. ``progress`` is called with the record count every 10,000
    records. Raises :class:`HeaderError` at once when required columns are
    missing.
    """
    return ExtractionReader(lines, on_malformed=on_malformed, progress=progress)


# --------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------

_UNSAFE_CHARS = "|\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_UNSAFE = str.maketrans(dict.fromkeys(_UNSAFE_CHARS, " "))
_LINE_BREAK = re.compile("[" + re.escape(_UNSAFE_CHARS[1:]) + "]")
_STR_FIELDS = tuple(
    f.name
    for f in fields(ExtractionRecord)
    if f.name not in ("address_lines", "extra", "line_number")
)
_get_str_fields = operator.attrgetter(*_STR_FIELDS)
# Where n address lines go (AFNOR line 4, the street, is the one nearly every
# address has; lines 2-3 are complements above it; line 5 only when 4 lines).
_SLOTS: dict[int, tuple[str, ...]] = {
    0: (),
    1: (_STREET,),
    2: (_L3, _STREET),
    3: (_L2, _L3, _STREET),
    4: (_L2, _L3, _STREET, _L5),
}


def _clean(value: str) -> str:
    """One physical field: separators and line breaks become spaces."""
    return value.translate(_UNSAFE)


def _columns_of(record: ExtractionRecord) -> dict[str, str | None]:
    values: dict[str, str | None] = dict(zip(_STR_FIELDS, _get_str_fields(record), strict=True))
    lines = record.address_lines
    if len(lines) > len(_SLOTS) - 1:
        raise ValueError(
            f"{record.address}: {len(lines)} address lines, the format holds 4 (AFNOR lines 2-5)"
        )
    values.update(zip(_SLOTS[len(lines)], lines, strict=True))
    if record.postal_code and record.city:
        values[_L6] = f"{record.postal_code} {record.city}"
    else:
        values[_L6] = record.postal_code or record.city
    return values


def format_extraction(
    records: Iterable[ExtractionRecord], header: Sequence[str] = DEFAULT_HEADER
) -> Iterator[str]:
    """Lines (``\\n``-terminated) of an extraction file, header line first.

    ``|`` and line breaks inside values are replaced by a space, the only
    way to keep one record per line. The street is written whole in the
    "Libellé Voie" column (its number/type columns stay empty) and line 6 is
    "<postal code> <city>". Reading the output gives back equal records when
    values are stripped, NFC, free of those characters and at most 1 KiB;
    ``extra`` values come back only for columns named in ``header``.
    """
    names = tuple(_clean(n).strip() for n in header)
    keys = tuple(_COLUMN_KEYS.get(_normalize_name(n)) for n in names)
    missing = [label for key, label in _REQUIRED.items() if key not in keys]
    if missing:
        raise HeaderError(f"cannot write an extraction without column(s) {', '.join(missing)}")
    separators = len(names) - 1
    yield SEPARATOR.join(names) + "\n"
    for record in records:
        values = _columns_of(record)
        extra = dict(record.extra)
        row = [
            (values.get(key) if key is not None else extra.get(name)) or ""
            for name, key in zip(names, keys, strict=True)
        ]
        line = SEPARATOR.join(row)
        # Fast path: clean values field by field only when something needs it.
        if line.count(SEPARATOR) != separators or _LINE_BREAK.search(line):
            line = SEPARATOR.join(_clean(v) for v in row)
        yield line + "\n"
