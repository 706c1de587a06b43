"""Mailboxes (BAL) the operator hosts: records, members, credentials.

A BAL's address and type never change after creation (ANN-3): there is no
function that could change them. PER mailboxes need a person identifier
(RPPS/ADELI), ORG and APP a facility identifier (FINESS/SIRET/SIREN), CAB
(the practice mailbox, still being specified nationally) either. Every BAL
gets its IMAP mailboxes in the shared index at creation, and a mirror row in
the searchable directory unless it is on the liste rouge.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, delete, func, insert, select, update

from annuaire import directory
from annuaire.addresses import address_key, normalise_address
from annuaire.identifiers import FACILITY_ID_TYPES, PERSON_ID_TYPES, IdentifierError, validate
from mssante import index
from mssante.schema import bal as bal_table
from mssante.schema import bal_credentials, bal_members, mailbox_messages, mailboxes

BalType = Literal["PER", "ORG", "APP", "CAB"]
BAL_TYPES: tuple[str, ...] = get_args(BalType)
CredentialKind = Literal["password", "certificate", "oauth"]

_hasher = PasswordHasher()  # Argon2id, the library's current recommended parameters


class BalError(ValueError):
    """A BAL operation refused; the message says why (shown to operators)."""


@dataclass(frozen=True)
class BalSpec:
    """What an operator gives to create a BAL."""

    address: str
    bal_type: str
    display_name: str = ""
    person_id_type: str | None = None
    person_id: str | None = None
    facility_id_type: str | None = None
    facility_id: str | None = None
    facility_name: str | None = None
    service: str | None = None
    profession_code: str | None = None
    profession_label: str | None = None
    specialty_code: str | None = None
    specialty_label: str | None = None
    city: str | None = None
    postal_code: str | None = None
    pharmacy_accepts_patient_initiation: bool = False
    preferred_rank: int | None = None
    liste_rouge: bool = False


@dataclass(frozen=True)
class Bal(BalSpec):
    """A hosted BAL as stored."""

    id: int = 0
    address_key: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None


#: What defines a BAL for good: its address, its type and its owner.
PERMANENT_FIELDS = frozenset(
    {"address", "bal_type", "person_id_type", "person_id", "facility_id_type", "facility_id"}
)
#: Fields ``update_bal`` may change.
MUTABLE_FIELDS = frozenset(f.name for f in dataclasses.fields(BalSpec)) - PERMANENT_FIELDS


def _row_to_bal(row: Any) -> Bal:
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(Bal)}
    return Bal(**values)


def _check(spec: BalSpec) -> BalSpec:
    bal_type = spec.bal_type.upper()
    if bal_type not in BAL_TYPES:
        raise BalError(f"BAL type must be one of {', '.join(BAL_TYPES)}, got {spec.bal_type!r}")
    spec = dataclasses.replace(spec, bal_type=bal_type, address=normalise_address(spec.address))
    person = _identifier(spec.person_id_type, spec.person_id, PERSON_ID_TYPES, "person")
    facility = _identifier(spec.facility_id_type, spec.facility_id, FACILITY_ID_TYPES, "facility")
    if bal_type == "PER" and person is None:
        raise BalError("a PER mailbox needs a person identifier (RPPS or ADELI)")
    if bal_type in ("ORG", "APP") and facility is None:
        raise BalError(
            f"an {bal_type} mailbox needs a facility identifier (FINESS, SIRET or SIREN)"
        )
    if bal_type == "CAB" and person is None and facility is None:
        raise BalError("a CAB mailbox needs a person or a facility identifier")
    if spec.preferred_rank is not None and spec.preferred_rank < 1:
        raise BalError("preferred rank starts at 1 (the preferred mailbox)")
    return dataclasses.replace(
        spec,
        person_id=person,
        person_id_type=spec.person_id_type.upper() if spec.person_id_type and person else None,
        facility_id=facility,
        facility_id_type=(
            spec.facility_id_type.upper() if spec.facility_id_type and facility else None
        ),
        display_name=spec.display_name.strip() or spec.address,
    )


def _identifier(
    kind: str | None, value: str | None, allowed: tuple[str, ...], what: str
) -> str | None:
    if value is None and kind is None:
        return None
    if value is None or kind is None or kind.upper() not in allowed:
        raise BalError(f"a {what} identifier needs a type among {', '.join(allowed)} and a value")
    try:
        return validate(kind.upper(), value)  # type: ignore[arg-type]
    except IdentifierError as exc:
        raise BalError(str(exc)) from None


# --------------------------------------------------------------------------- records


def add_bal(conn: Connection, spec: BalSpec, *, now: datetime) -> Bal:
    """Create a BAL, its IMAP mailboxes and its directory entry."""
    spec = _check(spec)
    key = address_key(spec.address)
    if get_bal(conn, key) is not None:
        raise BalError(f"{spec.address} already exists")
    values = {f.name: getattr(spec, f.name) for f in dataclasses.fields(BalSpec)}
    row_id = conn.execute(
        insert(bal_table)
        .values(**values, address_key=key, created_at=now, updated_at=now)
        .returning(bal_table.c.id)
    ).scalar_one()
    index.ensure_default_mailboxes(conn, key, now=now)
    bal = get_bal(conn, key)
    assert bal is not None and bal.id == row_id
    directory.sync_local(conn, bal)
    return bal


def get_bal(conn: Connection, address: str) -> Bal | None:
    row = conn.execute(
        select(bal_table).where(bal_table.c.address_key == address_key(address))
    ).first()
    return None if row is None else _row_to_bal(row)


def require_bal(conn: Connection, address: str) -> Bal:
    found = get_bal(conn, address)
    if found is None:
        raise BalError(f"no BAL {address}")
    return found


def list_bals(
    conn: Connection, *, domain: str | None = None, bal_type: str | None = None
) -> list[Bal]:
    stmt = select(bal_table).order_by(bal_table.c.address_key)
    if domain is not None:
        stmt = stmt.where(bal_table.c.address_key.like(f"%@{domain.lower()}"))
    if bal_type is not None:
        stmt = stmt.where(bal_table.c.bal_type == bal_type.upper())
    return [_row_to_bal(r) for r in conn.execute(stmt)]


def update_bal(conn: Connection, address: str, changes: Mapping[str, Any], *, now: datetime) -> Bal:
    """Change descriptive fields and flags; address and type can never change."""
    current = require_bal(conn, address)
    forbidden = sorted(set(changes) - MUTABLE_FIELDS)
    if forbidden:
        raise BalError(
            f"cannot change {', '.join(forbidden)} of a BAL "
            "(address, type and owner identifiers are permanent)"
        )
    updated = _check(dataclasses.replace(current, **changes))
    conn.execute(
        update(bal_table)
        .where(bal_table.c.id == current.id)
        .values(**{k: getattr(updated, k) for k in changes}, updated_at=now)
    )
    bal = require_bal(conn, address)
    directory.sync_local(conn, bal)
    return bal


def remove_bal(conn: Connection, address: str, *, purge: bool = False) -> Bal:
    """Delete a BAL. Its mail is kept unless ``purge``: refusing is the safe default."""
    bal = require_bal(conn, address)
    owned = select(mailboxes.c.id).where(mailboxes.c.owner == bal.address_key)
    stored = conn.execute(
        select(func.count())
        .select_from(mailbox_messages)
        .where(mailbox_messages.c.mailbox_id.in_(owned))
    ).scalar_one()
    if stored and not purge:
        raise BalError(
            f"{bal.address} still holds {stored} messages: remove with --purge to delete them"
        )
    conn.execute(delete(mailboxes).where(mailboxes.c.owner == bal.address_key))
    conn.execute(delete(bal_members).where(bal_members.c.member_key == bal.address_key))
    conn.execute(delete(bal_table).where(bal_table.c.id == bal.id))
    directory.remove_local(conn, bal.address_key)
    return bal


# --------------------------------------------------------------------------- members


def add_member(conn: Connection, address: str, member: str) -> None:
    """Give a person (their PER BAL) access to an ORG, APP or CAB mailbox."""
    bal = require_bal(conn, address)
    person = require_bal(conn, member)
    if bal.bal_type == "PER":
        raise BalError(f"{bal.address} is a personal mailbox: it has no members")
    if person.bal_type != "PER":
        raise BalError(f"{person.address} is not a personal (PER) mailbox")
    exists = conn.execute(
        select(bal_members).where(
            bal_members.c.bal_id == bal.id, bal_members.c.member_key == person.address_key
        )
    ).first()
    if exists is None:
        conn.execute(insert(bal_members).values(bal_id=bal.id, member_key=person.address_key))


def remove_member(conn: Connection, address: str, member: str) -> None:
    bal = require_bal(conn, address)
    removed = conn.execute(
        delete(bal_members).where(
            bal_members.c.bal_id == bal.id, bal_members.c.member_key == address_key(member)
        )
    ).rowcount
    if not removed:
        raise BalError(f"{member} is not a member of {bal.address}")


def members(conn: Connection, address: str) -> list[str]:
    bal = require_bal(conn, address)
    rows = conn.execute(
        select(bal_members.c.member_key)
        .where(bal_members.c.bal_id == bal.id)
        .order_by(bal_members.c.member_key)
    )
    return list(rows.scalars())


def may_open(conn: Connection, address: str, person: str) -> bool:
    """Whether the person authenticated as ``person`` may open ``address``."""
    bal = get_bal(conn, address)
    if bal is None:
        return False
    key = address_key(person)
    if bal.address_key == key:
        return True
    return (
        conn.execute(
            select(bal_members).where(
                bal_members.c.bal_id == bal.id, bal_members.c.member_key == key
            )
        ).first()
        is not None
    )


# --------------------------------------------------------------------------- credentials


def set_password(conn: Connection, address: str, password: str, *, now: datetime) -> None:
    """Replace the BAL's password with an Argon2id hash of ``password``."""
    if len(password) < 12:
        raise BalError("passwords must have at least 12 characters")
    bal = require_bal(conn, address)
    conn.execute(
        delete(bal_credentials).where(
            bal_credentials.c.bal_id == bal.id, bal_credentials.c.kind == "password"
        )
    )
    conn.execute(
        insert(bal_credentials).values(
            bal_id=bal.id, kind="password", value=_hasher.hash(password), created_at=now
        )
    )


def verify_password(conn: Connection, address: str, password: str) -> bool:
    bal = get_bal(conn, address)
    if bal is None:
        _hasher.hash(password)  # spend the same time: no user enumeration by timing
        return False
    stored = conn.execute(
        select(bal_credentials.c.value).where(
            bal_credentials.c.bal_id == bal.id, bal_credentials.c.kind == "password"
        )
    ).scalar()
    if stored is None:
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def certificate_fingerprint(der: bytes) -> str:
    """How a client certificate is bound to a BAL: SHA-256 of its DER, lower-case hex."""
    return hashlib.sha256(der).hexdigest()


def bind(
    conn: Connection, address: str, kind: CredentialKind, value: str, *, now: datetime
) -> None:
    """Bind a certificate fingerprint or an OAuth identity ("issuer subject") to a BAL."""
    if kind == "password":
        raise BalError("use set_password for passwords")
    if kind == "certificate":
        value = value.replace(":", "").lower()
        if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise BalError("a certificate binding is its SHA-256 fingerprint (64 hex digits)")
    bal = require_bal(conn, address)
    exists = conn.execute(
        select(bal_credentials.c.id).where(
            bal_credentials.c.bal_id == bal.id,
            bal_credentials.c.kind == kind,
            bal_credentials.c.value == value,
        )
    ).first()
    if exists is None:
        conn.execute(
            insert(bal_credentials).values(bal_id=bal.id, kind=kind, value=value, created_at=now)
        )


def bals_for(conn: Connection, kind: CredentialKind, value: str) -> list[Bal]:
    """BALs a certificate fingerprint or OAuth identity opens directly."""
    if kind == "certificate":
        value = value.replace(":", "").lower()
    rows = conn.execute(
        select(bal_table)
        .join(bal_credentials, bal_credentials.c.bal_id == bal_table.c.id)
        .where(bal_credentials.c.kind == kind, bal_credentials.c.value == value)
        .order_by(bal_table.c.address_key)
    )
    return [_row_to_bal(r) for r in rows]


def credentials(conn: Connection, address: str) -> list[tuple[str, str]]:
    """(kind, shown value) pairs; password hashes are never shown."""
    bal = require_bal(conn, address)
    rows = conn.execute(
        select(bal_credentials.c.kind, bal_credentials.c.value)
        .where(bal_credentials.c.bal_id == bal.id)
        .order_by(bal_credentials.c.kind, bal_credentials.c.value)
    )
    return [(kind, "(argon2id hash)" if kind == "password" else value) for kind, value in rows]
