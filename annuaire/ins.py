"""The INS matricule (NIR or NIA), patient addresses and patient-space status.

A patient's MSS-C address is ``<matricule>@<patient domain>`` (INS-1): a
malformed local part is refused at RCPT, so the check here is what the SMTP
reply quotes. Error messages never repeat the matricule: it is a health
identity and replies and logs travel further than the sender.

The matricule is 15 characters: a 13-character body and a 2-digit key equal to
97 − (body mod 97), so keys run from 01 to 97. The body is:

* kind: ``1``/``2`` (NIR), ``3``/``4``/``7``/``8`` (NIA and temporary numbers);
* year of birth, 2 digits;
* month of birth, any 2 digits (decision: placeholder months such as 20-42 and
  50-99 exist and their exact set is not published; the key catches typos and
  an unknown number is "patient not found" anyway, MSSC-RET-1);
* department, 2 digits or ``2A``/``2B`` for Corsica (read as ``19``/``18`` for
  the key, the official rule); lower-case ``2a``/``2b`` is accepted and written
  upper-case;
* commune, 3 digits, and order number, 3 digits.
"""

from __future__ import annotations

import enum
from typing import Final

from annuaire.addresses import AddressError, normalise_domain

INS_LENGTH: Final = 15
BODY_LENGTH: Final = 13
KINDS: Final = frozenset("123478")
_DIGITS: Final = frozenset("0123456789")
_CORSICA_FOR_KEY: Final = {"2A": "19", "2B": "18"}
_DEPARTMENT: Final = slice(5, 7)


class InsError(ValueError):
    """A malformed INS matricule; the message is fit for an SMTP reply (5.1.3)."""


def _is_digits(value: str) -> bool:
    return all(c in _DIGITS for c in value)


def _require_digits(chars: str) -> None:
    if not _is_digits(chars):
        if any(c.isalpha() for c in chars):
            raise InsError("INS contains letters outside the Corsican department")
        raise InsError("INS must contain only digits (and 2A or 2B for a Corsican department)")


def _check_body(body: str) -> str:
    """The 13-character body, Corsican department upper-cased; raise on any other shape."""
    department = body[_DEPARTMENT].upper()
    corsican = department in _CORSICA_FOR_KEY
    _require_digits(body[:5] + body[7:] if corsican else body)
    if body[0] not in KINDS:
        raise InsError(f"INS must start with 1 or 2 (NIR) or 3, 4, 7, 8 (NIA), got {body[0]}")
    return body[:5] + department + body[7:] if corsican else body


def _key_of(body: str) -> str:
    number = int(body[:5] + _CORSICA_FOR_KEY.get(body[_DEPARTMENT], body[_DEPARTMENT]) + body[7:])
    return f"{97 - number % 97:02d}"


def ins_key(body13: str) -> str:
    """The 2-digit key of a 13-character body (for synthetic data and for checks)."""
    if len(body13) != BODY_LENGTH:
        raise InsError(f"INS body must be {BODY_LENGTH} characters, got {len(body13)}")
    return _key_of(_check_body(body13))


def _validate(value: str) -> str:
    if any(c.isspace() for c in value):
        raise InsError("INS must not contain spaces")
    if len(value) != INS_LENGTH:
        raise InsError(f"INS must be {INS_LENGTH} characters, got {len(value)}")
    body = _check_body(value[:BODY_LENGTH])
    key = value[BODY_LENGTH:]
    _require_digits(key)
    expected = _key_of(body)
    if key != expected:
        raise InsError(f"INS key {key} does not match (expected {expected})")
    return body + key


def validate_ins(value: str) -> str:
    """A valid matricule, surrounding whitespace stripped and ``2A``/``2B`` upper-cased."""
    return _validate(value.strip())


def _domain(domain: str) -> str:
    """The directory's one domain form (lower-case A-labels), for comparison."""
    try:
        return normalise_domain(domain)
    except AddressError as exc:
        raise ValueError(str(exc)) from None


def patient_address(ins: str, patient_domain: str) -> str:
    """``<ins>@<patient domain>``, the domain in its lower-case ASCII form for SMTP."""
    return f"{validate_ins(ins)}@{_domain(patient_domain)}"


def parse_patient_address(address: str, patient_domain: str) -> str | None:
    """The INS of a patient address, None when the address is not in the patient domain.

    Raises InsError when the domain is the patient domain but the local part is
    not a valid matricule (refused at RCPT), ValueError when ``patient_domain``
    itself is not a domain name (a configuration error, not the sender's).
    """
    ours = _domain(patient_domain)
    local, at, domain = address.rpartition("@")
    if not at:
        return None
    try:
        theirs = _domain(domain)
    except ValueError:
        return None
    if theirs != ours:
        return None
    return _validate(local)


class PatientStatus(enum.StrEnum):
    """State of a patient's MSS-C space (INS-2)."""

    NOT_CREATED = "not_created"
    OPPOSED = "opposed"
    OPEN = "open"
    CLOSED = "closed"

    def receives_mail(self) -> bool:
        """Only an open space (activated or not) takes delivery; the others get a return."""
        return self is PatientStatus.OPEN
