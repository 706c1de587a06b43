"""The patient-space registry (INS-2): one row per INS the operator knows.

Status decides delivery: only an *open* space (created, even if not yet
activated) receives mail. An INS the registry does not know is *not created*.
The registry also holds the names shown in ``From:`` for mail a patient sends
(MSSC-FROM-1), the personal e-mail for generic notifications (MSSC-NOTIF-1)
and, as a stand-in for the national identity provider, a password hash.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, insert, select, update

from annuaire.addresses import AddressError, normalise_address
from annuaire.ins import InsError, PatientStatus, validate_ins
from mssante.schema import patient_notifications, patients

_hasher = PasswordHasher()


class PatientError(ValueError):
    pass


@dataclass(frozen=True)
class Patient:
    ins: str
    status: PatientStatus
    first_name: str | None = None
    last_name: str | None = None
    notification_email: str | None = None
    has_password: bool = False


def _status(value: str) -> PatientStatus:
    try:
        return PatientStatus(value.strip().lower().replace("-", "_").replace(" ", "_"))
    except ValueError:
        allowed = ", ".join(s.value for s in PatientStatus)
        raise PatientError(f"status must be one of {allowed}, got {value!r}") from None


def get_patient(conn: Connection, ins: str) -> Patient:
    """The patient's record; an unknown INS is a space not created."""
    ins = validate_ins(ins)
    row = conn.execute(select(patients).where(patients.c.ins == ins)).first()
    if row is None:
        return Patient(ins, PatientStatus.NOT_CREATED)
    return Patient(
        ins,
        PatientStatus(row.status),
        row.first_name,
        row.last_name,
        row.notification_email,
        row.password_hash is not None,
    )


def upsert_patient(
    conn: Connection,
    ins: str,
    *,
    now: datetime,
    status: PatientStatus | str | None = None,
    first_name: str | None = None,
    last_name: str | None = None,
    notification_email: str | None = None,
) -> Patient:
    """Create or update a patient; fields left ``None`` keep their value."""
    ins = validate_ins(ins)
    values: dict[str, object] = {"updated_at": now}
    if status is not None:
        values["status"] = (status if isinstance(status, PatientStatus) else _status(status)).value
    if first_name is not None:
        values["first_name"] = first_name.strip() or None
    if last_name is not None:
        values["last_name"] = last_name.strip() or None
    if notification_email is not None:
        try:
            values["notification_email"] = (
                normalise_address(notification_email) if notification_email.strip() else None
            )
        except AddressError as exc:
            raise PatientError(f"notification e-mail: {exc}") from None
    exists = conn.execute(select(patients.c.ins).where(patients.c.ins == ins)).first()
    if exists is None:
        values.setdefault("status", PatientStatus.NOT_CREATED.value)
        conn.execute(insert(patients).values(ins=ins, **values))
    else:
        conn.execute(update(patients).where(patients.c.ins == ins).values(**values))
    return get_patient(conn, ins)


def set_password(conn: Connection, ins: str, password: str, *, now: datetime) -> None:
    if len(password) < 12:
        raise PatientError("passwords must have at least 12 characters")
    patient = get_patient(conn, ins)
    if patient.status is PatientStatus.NOT_CREATED and not _known(conn, patient.ins):
        raise PatientError(f"unknown patient {patient.ins}: import or set a status first")
    conn.execute(
        update(patients)
        .where(patients.c.ins == patient.ins)
        .values(password_hash=_hasher.hash(password), updated_at=now)
    )


def verify_patient_password(conn: Connection, ins: str, password: str) -> bool:
    """The patient login (stand-in for the national identity provider): open spaces only."""
    row = conn.execute(
        select(patients.c.password_hash, patients.c.status).where(patients.c.ins == ins)
    ).first()
    if row is None or row.password_hash is None:
        _hasher.hash(password)  # spend the same time: no enumeration of INS by timing
        return False
    try:
        ok = _hasher.verify(row.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
    return ok and PatientStatus(row.status).receives_mail()


def last_notified(conn: Connection, ins: str) -> datetime | None:
    """When the patient was last notified of new mail (MSSC-NOTIF-1 rate limit)."""
    return conn.execute(
        select(patient_notifications.c.last_sent_at).where(patient_notifications.c.ins == ins)
    ).scalar_one_or_none()


def record_notification(conn: Connection, ins: str, *, now: datetime) -> None:
    done = conn.execute(
        update(patient_notifications)
        .where(patient_notifications.c.ins == ins)
        .values(last_sent_at=now)
    ).rowcount
    if not done:
        conn.execute(insert(patient_notifications).values(ins=ins, last_sent_at=now))


def _known(conn: Connection, ins: str) -> bool:
    return conn.execute(select(patients.c.ins).where(patients.c.ins == ins)).first() is not None


# --------------------------------------------------------------------------- import

IMPORT_COLUMNS = ("ins", "status", "first_name", "last_name", "notification_email")


@dataclass(frozen=True)
class ImportReport:
    imported: int
    errors: tuple[str, ...]


def read_patients_csv(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV (``,`` or ``;``) with a header naming at least ``ins`` and ``status``."""
    sample = text[:4096]
    delimiter = ";" if sample.count(";") > sample.count(",") else ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    fields = {(f or "").strip().lower() for f in reader.fieldnames or ()}
    if not {"ins", "status"} <= fields:
        raise PatientError(f"patients file needs columns ins and status (found: {sorted(fields)})")
    for row in reader:
        yield (
            reader.line_num,
            {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()},
        )


def import_patients(conn: Connection, text: str, *, now: datetime) -> ImportReport:
    """Upsert every valid row; report the others by line number (INS never echoed)."""
    imported, errors = 0, []
    for line, row in read_patients_csv(text):
        try:
            upsert_patient(
                conn,
                row["ins"],
                now=now,
                status=row["status"],
                first_name=row.get("first_name"),
                last_name=row.get("last_name"),
                notification_email=row.get("notification_email"),
            )
        except (InsError, PatientError) as exc:
            errors.append(f"line {line}: {exc}")
            continue
        imported += 1
    return ImportReport(imported, tuple(errors))
