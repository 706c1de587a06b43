"""The trust space (TS-2): which domains we exchange with, through which operator DNs.

The national whitelist is a set of (domain, operator certificate DN) pairs. Each
import becomes a *generation*; the new one is switched in by a single
transaction, so readers see either the old list or the new one, never a mix,
and a running `serve` sees the switch at its next lookup. A list that is empty,
unreadable or much smaller than the one in force is refused and the current
list stays (a bad download must never empty the trust space). DNs are compared
by their normalised key (:mod:`annuaire.dn`), never as raw strings.

A plain list of domains is accepted for private labs only: the generation is
then *domain-only* (no DN pairing) and `serve` warns about it at every start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from annuaire.addresses import AddressError, normalise_domain
from annuaire.dn import DN, DNError, parse_dn
from annuaire.whitelist_xml import ParsedWhitelist, WhitelistEntry, parse_whitelist
from mssante.schema import whitelist_entries, whitelist_generations

#: Generations kept besides the active one (for inspection and rollback).
KEEP_PREVIOUS = 1
_BATCH = 2000


class WhitelistRefused(ValueError):
    """A new list was not put in force; the message says why. The old list stays."""


@dataclass(frozen=True)
class Generation:
    id: int
    imported_at: datetime
    generated_at: datetime | None
    source: str
    sha256: str
    entry_count: int
    domain_count: int
    domain_only: bool
    truncated: bool


@dataclass(frozen=True)
class Pair:
    domain: str
    dn: str | None
    description: str


def dn_key_text(dn: DN) -> str:
    """The normalised DN as stored and compared in the database."""
    return json.dumps([list(attr) for attr in dn.key], ensure_ascii=False, separators=(",", ":"))


def parse_source(data: bytes) -> tuple[ParsedWhitelist | None, list[str]]:
    """An XML whitelist, or (None, domains) for a plain domain list."""
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return parse_whitelist(data), []
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise WhitelistRefused("neither XML nor a UTF-8 list of domains") from None
    domains = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            domains.append(normalise_domain(line))
        except AddressError as exc:
            raise WhitelistRefused(f"line {number}: {exc}") from None
    return None, domains


def import_list(
    conn: Connection,
    data: bytes,
    *,
    source: str,
    now: datetime,
    max_shrink_percent: float = 20.0,
    checksum: str | None = None,
) -> Generation:
    """Verify, parse and put in force a new list, or raise WhitelistRefused."""
    digest = hashlib.sha256(data).hexdigest()
    if checksum is not None and checksum.strip().lower() != digest:
        raise WhitelistRefused(f"SHA-256 checksum mismatch: file is {digest}, expected {checksum}")
    parsed, domains = parse_source(data)
    if parsed is not None:
        pairs: list[tuple[str, str | None, str | None, str, datetime | None]] = [
            (e.domain, str(e.dn), dn_key_text(e.dn), e.description, e.updated_at)
            for e in parsed.entries
        ]
        generated_at, truncated = parsed.generated_at, parsed.truncated
    else:
        pairs = [(d, None, None, "", None) for d in dict.fromkeys(domains)]
        generated_at, truncated = None, False
    if not pairs:
        raise WhitelistRefused("the list has no entries")
    current = active_generation(conn)
    if current is not None and not current.domain_only and parsed is None:
        raise WhitelistRefused(
            "refusing a plain domain list over a national list with DNs: "
            "domain-only trust is for private labs"
        )
    if current is not None and len(pairs) < current.entry_count * (1 - max_shrink_percent / 100):
        raise WhitelistRefused(
            f"the new list has {len(pairs)} entries, the one in force {current.entry_count}: "
            f"more than {max_shrink_percent:g} % smaller, refused as suspicious"
        )
    generation_id = conn.execute(
        insert(whitelist_generations)
        .values(
            imported_at=now,
            generated_at=generated_at,
            source=source[:1024],
            sha256=digest,
            entry_count=len(pairs),
            domain_count=len({p[0] for p in pairs}),
            domain_only=parsed is None,
            truncated=truncated,
            active=False,
        )
        .returning(whitelist_generations.c.id)
    ).scalar_one()
    rows = [
        {
            "generation_id": generation_id,
            "domain": d,
            "dn": dn,
            "dn_key": key,
            "description": desc[:2000],
            "updated_at": at,
        }
        for d, dn, key, desc, at in pairs
    ]
    for start in range(0, len(rows), _BATCH):
        conn.execute(insert(whitelist_entries), rows[start : start + _BATCH])
    conn.execute(
        update(whitelist_generations).values(active=whitelist_generations.c.id == generation_id)
    )
    keep = (
        conn.execute(
            select(whitelist_generations.c.id)
            .order_by(whitelist_generations.c.id.desc())
            .limit(KEEP_PREVIOUS + 1)
        )
        .scalars()
        .all()
    )
    conn.execute(delete(whitelist_entries).where(whitelist_entries.c.generation_id.not_in(keep)))
    conn.execute(delete(whitelist_generations).where(whitelist_generations.c.id.not_in(keep)))
    generation = active_generation(conn)
    assert generation is not None and generation.id == generation_id
    return generation


def active_generation(conn: Connection) -> Generation | None:
    row = conn.execute(select(whitelist_generations).where(whitelist_generations.c.active)).first()
    if row is None:
        return None
    return Generation(
        row.id,
        row.imported_at,
        row.generated_at,
        row.source,
        row.sha256,
        row.entry_count,
        row.domain_count,
        row.domain_only,
        row.truncated,
    )


def _active_entries() -> object:
    active = select(whitelist_generations.c.id).where(whitelist_generations.c.active)
    return whitelist_entries.c.generation_id.in_(active.scalar_subquery())


def pairs_for(conn: Connection, domain: str) -> list[Pair]:
    """The (domain, DN) pairs in force for ``domain`` (empty: not in the trust space)."""
    try:
        domain = normalise_domain(domain)
    except AddressError:
        return []
    rows = conn.execute(
        select(whitelist_entries.c.domain, whitelist_entries.c.dn, whitelist_entries.c.description)
        .where(_active_entries(), whitelist_entries.c.domain == domain)  # type: ignore[arg-type]
        .order_by(whitelist_entries.c.id)
    )
    return [Pair(*r) for r in rows]


def is_listed(conn: Connection, domain: str) -> bool:
    return bool(pairs_for(conn, domain))


def pair_matches(conn: Connection, domain: str, dn: DN | str) -> bool:
    """Whether the operator certificate ``dn`` is paired with ``domain``.

    In a domain-only (private lab) trust space any certificate that passed
    the TLS checks matches a listed domain.
    """
    generation = active_generation(conn)
    if generation is None:
        return False
    if generation.domain_only:
        return is_listed(conn, domain)
    try:
        key = dn_key_text(dn if isinstance(dn, DN) else parse_dn(dn))
        domain = normalise_domain(domain)
    except (DNError, AddressError):
        return False
    row = conn.execute(
        select(whitelist_entries.c.id).where(
            _active_entries(),  # type: ignore[arg-type]
            whitelist_entries.c.domain == domain,
            whitelist_entries.c.dn_key == key,
        )
    ).first()
    return row is not None


def all_pairs(conn: Connection) -> list[Pair]:
    rows = conn.execute(
        select(whitelist_entries.c.domain, whitelist_entries.c.dn, whitelist_entries.c.description)
        .where(_active_entries())  # type: ignore[arg-type]
        .order_by(whitelist_entries.c.domain, whitelist_entries.c.id)
    )
    return [Pair(*r) for r in rows]


def self_entries(
    domains: Iterable[str], dn: DN, *, description: str, contact: str, now: datetime
) -> list[WhitelistEntry]:
    """Our own `Domaine` entries: what we send to the national agency, and to test peers."""
    return [
        WhitelistEntry(
            domain=normalise_domain(d),
            dn=dn,
            description=description,
            responsible_contact=contact,
            support_contact=contact,
            updated_at=now,
        )
        for d in domains
    ]
