"""French health identifiers: RPPS, ADELI (people), FINESS, SIRET, SIREN (facilities).

The directory stores mailbox owners by these identifiers (ANN-1) and reads them
from the national extraction and from certificate ``OU`` values, so each one is
checked once here, strictly: surrounding whitespace is stripped and nothing else
is ever "fixed", because a silently repaired identifier points at someone else.

Check digits (all Luhn, the "mod 10" key):

* RPPS: 11 digits, the 11th is the Luhn key of the first 10 (equivalently: Luhn
  over all 11). The ANS sample ``01234567897`` satisfies it.
* ADELI: 9 digits, the 9th is the Luhn key of the first 8. Corsican ADELI
  numbers are taken to be all digits like the rest; synthetic and test data must
  respect the key too.
* FINESS: 9 characters, the 9th is the Luhn key of the first 8. Corsican numbers
  start with ``2A``/``2B``; how their key treats the letters is not pinned down
  by our sources, so for them only the shape is checked (the key is skipped).
* SIREN: 9 digits, Luhn over all 9.
* SIRET: 14 digits, Luhn over all 14, except La Poste (SIREN ``356000000``) whose
  establishments are numbered so that the digit sum is a multiple of 5; its head
  office ``35600000000048`` follows the ordinary Luhn rule and is accepted too.

National ids prefix the identifier with its type code, as in the national
directory extraction and certificate ``OU``: ``8`` RPPS, ``0`` ADELI, ``1``
FINESS, ``3`` SIRET. SIREN gets ``2`` (decision: the structure-id type code that
sits between FINESS and SIRET; our sources only show 1 and 3 in use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, Literal, get_args

IdType = Literal["RPPS", "ADELI", "FINESS", "SIRET", "SIREN"]
PersonIdType = Literal["RPPS", "ADELI"]
FacilityIdType = Literal["FINESS", "SIRET", "SIREN"]

PERSON_ID_TYPES: Final[tuple[PersonIdType, ...]] = get_args(PersonIdType)
FACILITY_ID_TYPES: Final[tuple[FacilityIdType, ...]] = get_args(FacilityIdType)
ID_TYPES: Final[tuple[IdType, ...]] = get_args(IdType)

LA_POSTE_SIREN: Final = "356000000"
LA_POSTE_HEAD_OFFICE_SIRET: Final = "35600000000048"
CORSICA_DEPARTMENTS: Final = ("2A", "2B")

NATIONAL_PREFIX: Final[dict[IdType, str]] = {
    "RPPS": "8",
    "ADELI": "0",
    "FINESS": "1",
    "SIREN": "2",
    "SIRET": "3",
}
_KIND_BY_PREFIX: Final[dict[str, IdType]] = {p: k for k, p in NATIONAL_PREFIX.items()}
_PREFIX_HELP: Final = ", ".join(f"{p}={k}" for p, k in sorted(_KIND_BY_PREFIX.items()))
_DIGITS: Final = frozenset("0123456789")


class IdentifierError(ValueError):
    """An identifier that is malformed; the message is fit for an operator or an SMTP reply."""


def _is_digits(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` would let superscripts and other scripts in."""
    return bool(value) and all(c in _DIGITS for c in value)


def _luhn_sum(digits: str, double_rightmost: bool) -> int:
    total = 0
    for i, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if (i % 2 == 0) == double_rightmost:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (check digit last) passes Luhn; False for empty or non-digits."""
    return _is_digits(digits) and _luhn_sum(digits, double_rightmost=False) % 10 == 0


def luhn_key(digits: str) -> int:
    """The check digit to append to ``digits`` so that the result passes Luhn."""
    if not _is_digits(digits):
        raise ValueError(f"Luhn key needs a non-empty string of digits, got {digits!r}")
    return -_luhn_sum(digits, double_rightmost=True) % 10


def _digits_of_length(kind: IdType, value: str, length: int) -> str:
    value = value.strip()
    if len(value) != length:
        raise IdentifierError(f"{kind} must be {length} digits, got {len(value)}")
    if not _is_digits(value):
        raise IdentifierError(f"{kind} must contain only digits, got {value!r}")
    return value


def _bad_key(kind: IdType, value: str) -> IdentifierError:
    return IdentifierError(f"{kind} {value}: bad check digit")


def _luhn_checked(kind: IdType, value: str, length: int) -> str:
    value = _digits_of_length(kind, value, length)
    if not luhn_valid(value):
        raise _bad_key(kind, value)
    return value


def validate_rpps(value: str) -> str:
    """An RPPS number (11 digits, Luhn key), stripped."""
    return _luhn_checked("RPPS", value, 11)


def validate_adeli(value: str) -> str:
    """An ADELI number (9 digits, Luhn key), stripped."""
    return _luhn_checked("ADELI", value, 9)


def validate_finess(value: str) -> str:
    """A FINESS number (9 characters, Luhn key; Corsican ``2A``/``2B`` shape-checked only)."""
    value = value.strip()
    if len(value) != 9:
        raise IdentifierError(f"FINESS must be 9 characters, got {len(value)}")
    if value[:2] in CORSICA_DEPARTMENTS and _is_digits(value[2:]):
        return value
    if not _is_digits(value):
        raise IdentifierError(
            f"FINESS must contain only digits (2A or 2B allowed first for Corsica), got {value!r}"
        )
    if not luhn_valid(value):
        raise _bad_key("FINESS", value)
    return value


def validate_siren(value: str) -> str:
    """A SIREN number (9 digits, Luhn key), stripped."""
    return _luhn_checked("SIREN", value, 9)


def validate_siret(value: str) -> str:
    """A SIRET number (14 digits, Luhn key; La Poste uses a digit sum multiple of 5)."""
    value = _digits_of_length("SIRET", value, 14)
    if value.startswith(LA_POSTE_SIREN) and value != LA_POSTE_HEAD_OFFICE_SIRET:
        if sum(ord(c) - 48 for c in value) % 5 != 0:
            raise IdentifierError(
                f"SIRET {value}: bad check digit (La Poste: digit sum must be a multiple of 5)"
            )
        return value
    if not luhn_valid(value):
        raise _bad_key("SIRET", value)
    return value


_VALIDATORS: Final[dict[IdType, Callable[[str], str]]] = {
    "RPPS": validate_rpps,
    "ADELI": validate_adeli,
    "FINESS": validate_finess,
    "SIRET": validate_siret,
    "SIREN": validate_siren,
}


def validate(kind: IdType, value: str) -> str:
    """Validate ``value`` as a ``kind`` identifier and return it normalised."""
    validator = _VALIDATORS.get(kind)
    if validator is None:
        raise IdentifierError(
            f"unknown identifier type {kind!r}; expected one of {', '.join(ID_TYPES)}"
        )
    return validator(value)


def person_national_id(kind: PersonIdType, value: str) -> str:
    """The national person id: type prefix + identifier (``8`` RPPS, ``0`` ADELI)."""
    if kind not in PERSON_ID_TYPES:
        raise IdentifierError(
            f"{kind} is not a person identifier type; expected {' or '.join(PERSON_ID_TYPES)}"
        )
    return NATIONAL_PREFIX[kind] + validate(kind, value)


def facility_national_id(kind: FacilityIdType, value: str) -> str:
    """The national structure id: type prefix + id (``1`` FINESS, ``3`` SIRET, ``2`` SIREN)."""
    if kind not in FACILITY_ID_TYPES:
        raise IdentifierError(
            f"{kind} is not a facility identifier type; expected {', '.join(FACILITY_ID_TYPES)}"
        )
    return NATIONAL_PREFIX[kind] + validate(kind, value)


def parse_national_id(value: str) -> tuple[IdType, str]:
    """Split a prefixed national id into (type, validated identifier); raise when malformed."""
    stripped = value.strip()
    if not stripped:
        raise IdentifierError("national id is empty")
    prefix, rest = stripped[0], stripped[1:]
    kind = _KIND_BY_PREFIX.get(prefix)
    if kind is None:
        raise IdentifierError(
            f"national id {stripped!r}: unknown type prefix {prefix!r} (expected {_PREFIX_HELP})"
        )
    try:
        return kind, validate(kind, rest)
    except IdentifierError as exc:
        raise IdentifierError(f"national id {stripped!r}: {exc}") from exc


def split_national_id(value: str) -> tuple[str, str]:
    """(prefix, rest) of a national id, unchecked: for display of values that may be malformed."""
    stripped = value.strip()
    return stripped[:1], stripped[1:]
