"""The national trust-space whitelist (liste blanche MSSanté): parse it safely, print ours.

Why: the file decides which (mail domain, operator certificate DN) pairs may
exchange mail with us. It comes from outside, so it is parsed as hostile input:
no DTD, no entity, no network, bounded size and entry count, and every entry is
validated. The national file's shape::

    <ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
      <DateDeGeneration>2025-03-13T14:54:10Z</DateDeGeneration>
      <ListeDomaines>
        <Domaine>
          <Nom/><Description/><DNCertificatOperateur/>
          <ResponsableContact/><SupportContact/><DateMAJ/>
        </Domaine>...
      </ListeDomaines>
    </ListeBlancheMSSante>

Decisions:

* Namespace: the root's namespace decides, and must be ``NAMESPACE`` or none
  (some mirrors strip it); every other element is looked up in that namespace.
  Unknown elements are ignored (forward compatibility).
* Security: a DOCTYPE or ENTITY declaration, a named entity reference other than
  the five XML ones, or an encoding that is not ASCII-compatible is refused
  before parsing (an XML bomb or XXE attempt raises, nothing is expanded or
  read). Such text inside CDATA or comments is refused too: the national file
  uses neither.
* Truncation: published copies have been seen cut after the last complete
  ``</Domaine>`` (``</ListeDomaines>`` and/or ``</ListeBlancheMSSante>``
  missing). Such a file is accepted with ``truncated=True`` and a warning, but
  only if the file ends on a complete ``</Domaine>`` or ``</ListeDomaines>`` and
  every ``Domaine`` that started was completed. A cut inside a ``Domaine``,
  before any ``Domaine`` or in the middle of a tag is an error.
* Entries: domains are stripped, lower-cased, IDNA-encoded (A-labels stored) and
  checked as DNS names; DNs go through ``annuaire.dn``. An invalid entry is
  skipped with a warning naming its index (1-based ``Domaine #n``), unless more
  than 10 % of the entries are invalid: then the whole file is refused as
  garbage. Duplicate (domain, DN key) pairs keep the first one, warned once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

from annuaire import addresses
from annuaire.dn import DN, DNError, parse_dn

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "MAX_FIELD_CHARS",
    "MAX_INVALID_RATIO",
    "MAX_WARNINGS",
    "NAMESPACE",
    "ParsedWhitelist",
    "WhitelistEntry",
    "WhitelistError",
    "normalise_domain",
    "parse_whitelist",
    "render_entries",
    "render_whitelist",
]

NAMESPACE = "https://listeblanche.mssante.fr/schema"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 100_000
MAX_INVALID_RATIO = 0.10
MAX_FIELD_CHARS = 4096
MAX_WARNINGS = 100
_CHUNK = 256 * 1024

_ROOT = "ListeBlancheMSSante"
_LIST = "ListeDomaines"
_ENTRY = "Domaine"
_GENERATED = "DateDeGeneration"
_FIELDS = (
    "Nom",
    "Description",
    "DNCertificatOperateur",
    "ResponsableContact",
    "SupportContact",
    "DateMAJ",
)
_XML_ERR_TAG_NOT_FINISHED = 77
_EVENT_TAGS = [
    prefix + name
    for prefix in ("{" + NAMESPACE + "}", "{}")
    for name in (_ROOT, _LIST, _ENTRY, _GENERATED)
]

_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "attribute_defaults": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}
_ACCEPTED_ENCODINGS = frozenset(
    {
        "utf-8",
        "utf8",
        "us-ascii",
        "ascii",
        "iso-8859-1",
        "latin-1",
        "latin1",
        "iso-8859-15",
        "windows-1252",
        "cp1252",
    }
)
_ENCODING_RE = re.compile(rb"\A<\?xml\s[^>]{0,200}?\bencoding\s*=\s*[\"']([^\"']{0,40})[\"']")
_DECLARATION_RE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_ENTITY_REF_RE = re.compile(rb"&(?!(?:lt|gt|amp|quot|apos);)([A-Za-z_:][\w.:-]{0,60});")
_TAIL_RE = re.compile(rb"</(?:[A-Za-z_][\w.-]*:)?(Domaine|ListeDomaines)\s*>\s*\Z")


class WhitelistError(ValueError):
    """The whitelist file (or an entry to print) is refused; the message says why."""


def normalise_domain(text: str) -> str:
    """The stored form of a mail domain (:func:`annuaire.addresses.normalise_domain`)."""
    try:
        return addresses.normalise_domain(text)
    except addresses.AddressError as exc:
        raise WhitelistError(str(exc)) from None


@dataclass(frozen=True)
class WhitelistEntry:
    """One (domain, operator DN) pair of the trust space, with its contact data."""

    domain: str
    dn: DN
    description: str = ""
    responsible_contact: str = ""
    support_contact: str = ""
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.domain, str):
            raise WhitelistError("domain must be a string")
        normalised = normalise_domain(self.domain)
        if normalised != self.domain:
            raise WhitelistError(
                f"domain {self.domain!r} is not normalised (expected {normalised!r})"
            )
        if not isinstance(self.dn, DN):
            raise WhitelistError(f"dn must be a DN, not {type(self.dn).__name__}")
        for name in ("description", "responsible_contact", "support_contact"):
            if not isinstance(getattr(self, name), str):
                raise WhitelistError(f"{name} must be a string")
        if self.updated_at is not None and self.updated_at.tzinfo is None:
            raise WhitelistError("updated_at must be timezone-aware")


@dataclass(frozen=True)
class ParsedWhitelist:
    """The validated entries of one national file, and what was noticed on the way."""

    generated_at: datetime | None
    entries: tuple[WhitelistEntry, ...]
    truncated: bool
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class _RawEntry:
    """A Domaine element's child texts, kept until validation."""

    index: int
    fields: dict[str, list[str]]


def _parse_datetime(text: str) -> datetime:
    """ISO 8601 (``Z`` allowed) to an aware UTC datetime; naive means UTC."""
    value = text.strip()
    if not value or len(value) > 64:
        raise ValueError("empty or too long")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


def _format_datetime(value: datetime) -> str:
    if value.tzinfo is None:
        raise WhitelistError("dates must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _precheck(data: bytes, max_bytes: int) -> None:
    """Refuse what must never reach the XML parser: too big, not XML, DTD, entities."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WhitelistError(f"expected bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise WhitelistError(f"file larger than {max_bytes} bytes")
    head = bytes(data[:4096]).removeprefix(b"\xef\xbb\xbf").lstrip()
    if not head:
        raise WhitelistError("not XML: empty input")
    if not head.startswith(b"<"):
        raise WhitelistError("not XML: does not start with '<' (UTF-8 XML expected)")
    match = _ENCODING_RE.match(head)
    if match and match.group(1).decode("ascii", "replace").lower() not in _ACCEPTED_ENCODINGS:
        raise WhitelistError(
            f"encoding {match.group(1).decode('ascii', 'replace')!r} not accepted (UTF-8 expected)"
        )
    declaration = _DECLARATION_RE.search(data)
    if declaration:
        kind = declaration.group(1).decode("ascii").upper()
        raise WhitelistError(f"{kind} not allowed (at byte {declaration.start()})")
    reference = _ENTITY_REF_RE.search(data)
    if reference:
        raise WhitelistError(
            f"entity reference &{reference.group(1).decode('ascii', 'replace')}; not allowed "
            f"(at byte {reference.start()}; only the five XML entities are accepted)"
        )


class _Reader:
    """Consumes pull-parser events for the four structural elements; keeps entry texts.

    Only ListeBlancheMSSante, DateDeGeneration, ListeDomaines and Domaine (in the
    namespace or in none) produce events: a Domaine's children are read from the
    element when it ends, which keeps the national file near 13,000 events.
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.prefix = ""
        self.root: Any = None
        self.root_done = False
        self.list_open = False
        self.entry_open = False
        self.started = 0
        self.raw: list[_RawEntry] = []
        self.generated_text: str | None = None
        self.field_tags: dict[str, str] = {}

    def q(self, local: str) -> str:
        return self.prefix + local

    def run(self, data: bytes) -> bool:
        """Parse everything; True if accepted as truncated after the last Domaine."""
        parser = etree.XMLPullParser(events=("start", "end"), tag=_EVENT_TAGS, **_PARSER_OPTIONS)
        view = memoryview(data)
        try:
            for offset in range(0, len(data), _CHUNK):
                parser.feed(bytes(view[offset : offset + _CHUNK]))
                self.drain(parser)
        except etree.XMLSyntaxError as exc:
            raise WhitelistError(f"not XML: {exc}") from None
        try:
            root = parser.close()
        except etree.XMLSyntaxError as exc:
            # events read after a failed close may describe half a tag: ignore them
            self.check_truncation(exc, data)
            return True
        if self.root is None:
            self.check_root(root)
        self.drain(parser)
        return False

    def check_truncation(self, exc: etree.XMLSyntaxError, data: bytes) -> None:
        """Raise unless the input stops cleanly after a complete Domaine."""
        if self.root is None or self.root_done:
            raise WhitelistError(f"not XML: {exc}")
        if self.entry_open:
            raise WhitelistError(f"truncated inside Domaine #{self.started} ({exc})")
        if self.started == 0:
            raise WhitelistError(f"truncated before any Domaine ({exc})")
        tail = _TAIL_RE.search(bytes(data[-512:]))
        expected = _ENTRY if self.list_open else _LIST
        if (
            getattr(exc, "code", None) != _XML_ERR_TAG_NOT_FINISHED
            or tail is None
            or tail.group(1).decode("ascii") != expected
        ):
            raise WhitelistError(f"truncated mid-tag after Domaine #{self.started} ({exc})")

    def drain(self, parser: Any) -> None:
        for action, element in parser.read_events():
            if self.root is None:
                self.check_root(element.getroottree().getroot())
            if action == "start":
                self.on_start(element)
            else:
                self.on_end(element)

    def check_root(self, root: Any) -> None:
        qname = etree.QName(root)
        if qname.localname != _ROOT or qname.namespace not in (NAMESPACE, None):
            raise WhitelistError(
                f"root element is {root.tag}, expected {_ROOT} (in namespace {NAMESPACE} or none)"
            )
        if root.getroottree().docinfo.doctype:
            raise WhitelistError("DOCTYPE not allowed")
        self.root = root
        self.prefix = "{" + NAMESPACE + "}" if qname.namespace else ""
        self.field_tags = {self.q(name): name for name in _FIELDS}

    def on_start(self, element: Any) -> None:
        tag = element.tag
        if tag == self.q(_ENTRY):
            parent = element.getparent()
            if parent is None or parent.tag != self.q(_LIST) or parent.getparent() is not self.root:
                where = "top level" if parent is None else _local(parent.tag)
                raise WhitelistError(f"Domaine element outside ListeDomaines (inside {where})")
            self.started += 1
            if self.started > self.max_entries:
                raise WhitelistError(f"more than {self.max_entries} Domaine entries")
            self.entry_open = True
        elif tag == self.q(_LIST) and element.getparent() is self.root:
            self.list_open = True

    def on_end(self, element: Any) -> None:
        tag = element.tag
        if tag == self.q(_ENTRY):
            self.entry_open = False
            self.raw.append(_RawEntry(self.started, self.fields_of(element)))
            parent = element.getparent()
            element.clear()
            while element.getprevious() is not None:
                del parent[0]
        elif element.getparent() is self.root:
            if tag == self.q(_LIST):
                self.list_open = False
            elif tag == self.q(_GENERATED):
                self.generated_text = "".join(element.itertext())
        elif element is self.root:
            self.root_done = True

    def fields_of(self, element: Any) -> dict[str, list[str]]:
        fields: dict[str, list[str]] = {}
        for child in element:
            name = self.field_tags.get(child.tag)
            if name is not None:
                text = "".join(child.itertext()) if len(child) else child.text or ""
                fields.setdefault(name, []).append(text)
        return fields


class _Warnings:
    """At most MAX_WARNINGS texts, then a count: a garbage file must not flood logs."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self.dropped = 0

    def add(self, text: str) -> None:
        if len(self.items) < MAX_WARNINGS:
            self.items.append(text)
        else:
            self.dropped += 1

    def result(self) -> tuple[str, ...]:
        if self.dropped:
            return (*self.items, f"... and {self.dropped} more warnings")
        return tuple(self.items)


def _single(raw: _RawEntry, name: str, required: bool) -> str:
    values = raw.fields.get(name, [])
    if len(values) > 1:
        raise WhitelistError(f"{len(values)} {name} elements")
    if not values:
        if required:
            raise WhitelistError(f"missing {name}")
        return ""
    if required and not values[0].strip():
        raise WhitelistError(f"empty {name}")
    if len(values[0]) > MAX_FIELD_CHARS:
        raise WhitelistError(f"{name} longer than {MAX_FIELD_CHARS} characters")
    return values[0]


def _build_entry(
    raw: _RawEntry, dn_cache: dict[str, DN | DNError], warnings: _Warnings
) -> WhitelistEntry:
    """One validated entry; raises WhitelistError/DNError if it must be skipped."""
    domain = normalise_domain(_single(raw, "Nom", True))
    dn_text = _single(raw, "DNCertificatOperateur", True)
    cached = dn_cache.get(dn_text)
    if cached is None:
        try:
            cached = parse_dn(dn_text)
        except DNError as exc:
            cached = exc
        dn_cache[dn_text] = cached
    if isinstance(cached, DNError):
        raise DNError(f"DNCertificatOperateur {dn_text!r}: {cached}")
    updated_text = _single(raw, "DateMAJ", False)
    updated_at = None
    if updated_text.strip():
        try:
            updated_at = _parse_datetime(updated_text)
        except ValueError:
            warnings.add(
                f"Domaine #{raw.index}: DateMAJ {updated_text.strip()[:64]!r} is not "
                "an ISO 8601 date; kept without date"
            )
    return WhitelistEntry(
        domain=domain,
        dn=cached,
        description=_single(raw, "Description", False),
        responsible_contact=_single(raw, "ResponsableContact", False),
        support_contact=_single(raw, "SupportContact", False),
        updated_at=updated_at,
    )


def parse_whitelist(
    data: bytes,
    *,
    max_entries: int = DEFAULT_MAX_ENTRIES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ParsedWhitelist:
    """Parse and validate the national whitelist; raise WhitelistError if it is unusable."""
    _precheck(data, max_bytes)
    reader = _Reader(max_entries)
    truncated = reader.run(bytes(data))
    if reader.started == 0:
        raise WhitelistError("no Domaine entries")
    warnings = _Warnings()
    if truncated:
        missing = f"</{_LIST}></{_ROOT}>" if reader.list_open else f"</{_ROOT}>"
        warnings.add(
            f"file ends without {missing} after Domaine #{reader.started}; accepted "
            "because every Domaine that started is complete"
        )
    generated_at = None
    if reader.generated_text is not None and reader.generated_text.strip():
        try:
            generated_at = _parse_datetime(reader.generated_text)
        except ValueError:
            warnings.add(f"DateDeGeneration {reader.generated_text.strip()[:64]!r} is not ISO 8601")
    else:
        warnings.add("no DateDeGeneration")

    entries: list[WhitelistEntry] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    dn_cache: dict[str, DN | DNError] = {}
    invalid: list[str] = []
    duplicates = 0
    for raw in reader.raw:
        try:
            entry = _build_entry(raw, dn_cache, warnings)
        except (WhitelistError, DNError) as exc:
            message = f"Domaine #{raw.index} skipped: {exc}"
            invalid.append(message)
            warnings.add(message)
            continue
        pair = (entry.domain, entry.dn.key)
        if pair in seen:
            duplicates += 1
            continue
        seen.add(pair)
        entries.append(entry)
    total = len(reader.raw)
    if len(invalid) > MAX_INVALID_RATIO * total:
        raise WhitelistError(
            f"{len(invalid)} of {total} Domaine entries are invalid (over "
            f"{MAX_INVALID_RATIO:.0%}): refusing the file; first: {invalid[0]}"
        )
    if duplicates:
        warnings.add(f"{duplicates} duplicate (domain, DN) pairs ignored (first kept)")
    return ParsedWhitelist(generated_at, tuple(entries), truncated, warnings.result())


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _domaine_element(entry: WhitelistEntry, index: int, parent: Any | None) -> Any:
    """A Domaine element (in NAMESPACE) for one entry; bad text names the entry."""
    if not isinstance(entry, WhitelistEntry):
        raise WhitelistError(f"entry #{index} is a {type(entry).__name__}, not a WhitelistEntry")
    ns = "{" + NAMESPACE + "}"
    values = (
        entry.domain,
        entry.description,
        str(entry.dn),
        entry.responsible_contact,
        entry.support_contact,
        None if entry.updated_at is None else _format_datetime(entry.updated_at),
    )
    if parent is None:
        element = etree.Element(ns + _ENTRY, nsmap={None: NAMESPACE})
    else:
        element = etree.SubElement(parent, ns + _ENTRY)
    try:
        for name, value in zip(_FIELDS, values, strict=True):
            if value is not None:
                etree.SubElement(element, ns + name).text = value
    except ValueError as exc:
        raise WhitelistError(f"entry #{index} ({entry.domain}): {exc}") from None
    return element


def render_entries(entries: Iterable[WhitelistEntry]) -> bytes:
    """Our own entries as Domaine elements (one per line), e.g. for the national agency."""
    parts = [
        bytes(etree.tostring(_domaine_element(entry, index, None), encoding="UTF-8"))
        for index, entry in enumerate(entries, 1)
    ]
    return b"".join(part + b"\n" for part in parts)


def render_whitelist(
    entries: Iterable[WhitelistEntry], generated_at: datetime | None = None
) -> bytes:
    """A whole well-formed whitelist file; ``parse_whitelist`` reads it back unchanged."""
    ns = "{" + NAMESPACE + "}"
    root = etree.Element(ns + _ROOT, nsmap={None: NAMESPACE})
    if generated_at is not None:
        etree.SubElement(root, ns + _GENERATED).text = _format_datetime(generated_at)
    listing = etree.SubElement(root, ns + _LIST)
    for index, entry in enumerate(entries, 1):
        _domaine_element(entry, index, listing)
    return bytes(etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True))
