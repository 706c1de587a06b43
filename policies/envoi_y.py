"""Envoi en Y: who gets a deposited document by MSSanté, and what the forward says.

Pure decisions, facts in, frozen effects out, like :mod:`policies.mssc`:

* :func:`fan_out` (Y-FAN-1, Y-1, Y-4) chooses the recipients of one document
  from its DMP visibility flags and the bridge's W mode;
* :func:`forwarded_headers` (Y-XDM-1) gives the référentiel #2 ``X-MSS-*``
  headers of a forwarded message;
* :func:`xdm_subject` (Y-XDM-1) writes the ``XDM/1.0/DDM+…`` subject.

Decision on *invisible to legal representatives*: it changes no recipient.
Y-FAN-1 and Y-4 only let MASQUE_PS keep a document from professionals and
INVISIBLE_PATIENT keep it from the patient's MSS-C address, and the ANS
fan-out matrix (reference cda-xdm.md §5, combination (c)) explicitly allows a
patient-only send with the legal-representatives flag set. The flag still
rides in the metadata the DMP deposit carries; the patient's MSS-C mailbox is
the patient's own. :attr:`FanOutReason.LEGAL_REPRESENTATIVES` is recorded so
the caller's trace shows that the flag was seen and deliberately did not
change the routing.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Final

from cda.codes import Visibility

__all__ = [
    "XDM_SUBJECT_MARKER",
    "X_MSS_CODECDA",
    "X_MSS_INS",
    "X_MSS_MES",
    "FanOut",
    "FanOutReason",
    "fan_out",
    "forwarded_headers",
    "xdm_subject",
]

#: IHE XDM "zip over e-mail" subject marker (reference cda-xdm.md §1, Y-XDM-1).
XDM_SUBJECT_MARKER: Final = "XDM/1.0/DDM"
#: Référentiel #2 headers the bridge sets on what it forwards (Y-XDM-1).
X_MSS_CODECDA: Final = "X-MSS-CODECDA"
X_MSS_INS: Final = "X-MSS-INS"
X_MSS_MES: Final = "X-MSS-MES"

#: A CDA ``code/@code`` fit for a header: LOINC (``11502-2``), TRE_A05 (``IMG-KOS``).
_TYPE_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u0085\u2028\u2029]")
_SPACES = re.compile(r"\s+")
#: Y-3: titles are at most 128 characters.
_MAX_TITLE = 128


class FanOutReason(enum.StrEnum):
    """Why a channel was left out (or, for the legal flag, why nothing changed)."""

    FORBIDDEN_COMBINATION = "forbidden_combination"  # INVISIBLE_PATIENT + MASQUE_PS
    MASKED_TO_PROFESSIONALS = "masked_to_professionals"  # MASQUE_PS: no PS copy
    INVISIBLE_TO_PATIENT = "invisible_to_patient"  # INVISIBLE_PATIENT: no MSS-C copy
    W_MODE_OFF = "w_mode_off"  # envoi en W not configured: no MSS-C copy
    NO_PATIENT_ADDRESS = "no_patient_address"  # W mode, but no MSS-C address known
    LEGAL_REPRESENTATIVES = "legal_representatives"  # flag seen, routing unchanged


@dataclass(frozen=True)
class FanOut:
    """The MSSanté recipients of one document; ``refused`` when the flags are illegal."""

    professionals: tuple[str, ...]
    patient: str | None
    reasons: tuple[FanOutReason, ...] = ()

    @property
    def refused(self) -> bool:
        """Y-4: the document may be neither deposited nor sent."""
        return FanOutReason.FORBIDDEN_COMBINATION in self.reasons

    @property
    def recipients(self) -> tuple[str, ...]:
        """Everybody to mail, professionals first."""
        return self.professionals + ((self.patient,) if self.patient else ())


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """Stripped, non-empty, first occurrence kept (addresses compared case-insensitively)."""
    seen: set[str] = set()
    out: list[str] = []
    for raw in addresses:
        address = raw.strip()
        if address and address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return tuple(out)


def fan_out(
    visibility: frozenset[Visibility],
    *,
    professionals: tuple[str, ...],
    patient: str | None,
    w_mode: bool,
) -> FanOut:
    """Y-FAN-1: professionals unless MASQUE_PS; the patient in W mode unless INVISIBLE_PATIENT.

    ``professionals`` are the addresses the caller resolved (treating doctor,
    prescriber, other PS, APP mailboxes); ``patient`` the MSS-C address
    ``<INS>@patient.mssante.fr`` or None. INVISIBLE_PATIENT with MASQUE_PS is
    refused (no recipient at all). The three allowed outcomes are the
    specification's: both (no flag, W mode), professionals only, patient only.
    """
    flags = frozenset(visibility)
    invisible = Visibility.INVISIBLE_PATIENT in flags
    masked = Visibility.MASQUE_PS in flags
    if invisible and masked:
        return FanOut((), None, (FanOutReason.FORBIDDEN_COMBINATION,))

    reasons: list[FanOutReason] = []
    to_professionals: tuple[str, ...] = ()
    if masked:
        reasons.append(FanOutReason.MASKED_TO_PROFESSIONALS)
    else:
        to_professionals = _unique(professionals)
    # Never mail the patient's own address as if it were a professional's.
    address = (patient or "").strip() or None
    if address is not None:
        to_professionals = tuple(p for p in to_professionals if p.lower() != address.lower())

    to_patient: str | None = None
    if invisible:
        reasons.append(FanOutReason.INVISIBLE_TO_PATIENT)
    elif not w_mode:
        reasons.append(FanOutReason.W_MODE_OFF)
    elif address is None:
        reasons.append(FanOutReason.NO_PATIENT_ADDRESS)
    else:
        to_patient = address
    if Visibility.INVISIBLE_REPRESENTANTS_LEGAUX in flags:
        reasons.append(FanOutReason.LEGAL_REPRESENTATIVES)
    return FanOut(to_professionals, to_patient, tuple(reasons))


def forwarded_headers(
    type_codes: list[str], qualified_ins: bool, to_patient: bool, closes: bool
) -> dict[str, str]:
    """Y-XDM-1 headers of a forwarded XDM message, in the order to write them.

    ``X-MSS-CODECDA``: the CDA type code of each document, comma-separated,
    and ``X-MSS-INS``: ``O`` when the package carries a qualified INS, else
    ``N`` — both left out when the message carries no CDA. ``X-MSS-MES: FIN``
    only toward a patient (``to_patient``) whose professional wants no reply
    (``closes``). A type code that is not a plain token raises ValueError:
    nothing from a document may shape a header line.
    """
    headers: dict[str, str] = {}
    codes = [code.strip() for code in type_codes]
    for code in codes:
        if not _TYPE_CODE.fullmatch(code):
            raise ValueError(f"not a CDA type code fit for {X_MSS_CODECDA}: {code!r}")
    if codes:
        headers[X_MSS_CODECDA] = ",".join(codes)
        headers[X_MSS_INS] = "O" if qualified_ins else "N"
    if to_patient and closes:
        headers[X_MSS_MES] = "FIN"
    return headers


def _text(value: str) -> str:
    """One line of text: controls dropped, runs of white space made one space."""
    return _SPACES.sub(" ", _CONTROLS.sub(" ", value)).strip()


def xdm_subject(title: str, family: str, given: str, birth_date: date | None) -> str:
    """``XDM/1.0/DDM+<title> <FAMILY> <given> <DD/MM/YYYY>`` (Y-XDM-1, Réf #2 form).

    The family name is upper-cased as in the ANS example; the title is at most
    128 characters (Y-3), so a longer one is refused rather than cut.
    Blank parts are left out. The caller encodes the header (RFC 2047).
    """
    clean_title = _text(title)
    if len(clean_title) > _MAX_TITLE:
        raise ValueError(f"document title over {_MAX_TITLE} characters")
    born = birth_date.strftime("%d/%m/%Y") if birth_date is not None else ""
    parts = [clean_title, _text(family).upper(), _text(given), born]
    return f"{XDM_SUBJECT_MARKER}+" + " ".join(p for p in parts if p)
