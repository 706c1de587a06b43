# covers: Y-FAN-1, Y-XDM-1
"""policies.envoi_y: who gets a deposited document, and the X-MSS-* headers and subject."""

from __future__ import annotations

import itertools
from datetime import date

import pytest

from cda.codes import Visibility
from policies.envoi_y import (
    XDM_SUBJECT_MARKER,
    FanOut,
    FanOutReason,
    fan_out,
    forwarded_headers,
    xdm_subject,
)

PS = ("dr.martin@hopital.mssante.fr", "labo@chu.mssante.fr")
PATIENT = "279035121518989@patient.mssante.fr"
INV = Visibility.INVISIBLE_PATIENT
LEGAL = Visibility.INVISIBLE_REPRESENTANTS_LEGAUX
MASK = Visibility.MASQUE_PS

ALL_FLAG_SETS = [
    frozenset(combo) for n in range(4) for combo in itertools.combinations([INV, LEGAL, MASK], n)
]


@pytest.mark.parametrize("w_mode", [False, True])
@pytest.mark.parametrize("flags", ALL_FLAG_SETS, ids=lambda f: "+".join(sorted(f)) or "none")
def test_every_flag_combination(flags: frozenset[Visibility], w_mode: bool) -> None:
    result = fan_out(flags, professionals=PS, patient=PATIENT, w_mode=w_mode)
    if INV in flags and MASK in flags:
        assert result.refused
        assert result == FanOut((), None, (FanOutReason.FORBIDDEN_COMBINATION,))
        return
    assert not result.refused
    # MASQUE_PS => never to professionals; otherwise always.
    assert result.professionals == (() if MASK in flags else PS)
    # The patient only in W mode and never when invisible to the patient;
    # the legal-representatives flag changes nothing (documented decision).
    assert result.patient == (PATIENT if w_mode and INV not in flags else None)
    assert (FanOutReason.LEGAL_REPRESENTATIVES in result.reasons) == (LEGAL in flags)
    assert (FanOutReason.MASKED_TO_PROFESSIONALS in result.reasons) == (MASK in flags)
    assert (FanOutReason.INVISIBLE_TO_PATIENT in result.reasons) == (INV in flags)
    assert (FanOutReason.W_MODE_OFF in result.reasons) == (not w_mode and INV not in flags)
    # Only the three allowed outcomes of Y-FAN-1 ever come out (or nobody).
    assert result.recipients in {(*PS, PATIENT), PS, (PATIENT,), ()}


def test_the_three_allowed_combinations() -> None:
    both = fan_out(frozenset(), professionals=PS, patient=PATIENT, w_mode=True)
    assert both.recipients == (*PS, PATIENT)
    ps_only = fan_out(frozenset({INV}), professionals=PS, patient=PATIENT, w_mode=True)
    assert ps_only.recipients == PS
    patient_only = fan_out(frozenset({MASK, LEGAL}), professionals=PS, patient=PATIENT, w_mode=True)
    assert patient_only.recipients == (PATIENT,)


def test_w_mode_without_known_address() -> None:
    result = fan_out(frozenset(), professionals=PS, patient=None, w_mode=True)
    assert result.patient is None
    assert FanOutReason.NO_PATIENT_ADDRESS in result.reasons
    blank = fan_out(frozenset(), professionals=PS, patient="  ", w_mode=True)
    assert blank.patient is None


def test_masked_without_w_mode_mails_nobody_but_is_not_refused() -> None:
    result = fan_out(frozenset({MASK}), professionals=PS, patient=PATIENT, w_mode=False)
    assert result.recipients == ()
    assert not result.refused
    assert set(result.reasons) == {FanOutReason.MASKED_TO_PROFESSIONALS, FanOutReason.W_MODE_OFF}


def test_professionals_deduplicated_and_never_the_patient() -> None:
    result = fan_out(
        frozenset({INV}),
        professionals=(" a@x.mssante.fr", "A@x.mssante.fr", "", PATIENT.upper(), "b@y.mssante.fr"),
        patient=PATIENT,
        w_mode=True,
    )
    assert result.professionals == ("a@x.mssante.fr", "b@y.mssante.fr")
    assert result.patient is None


# ---------------------------------------------------------------- headers


def test_headers_for_professionals() -> None:
    headers = forwarded_headers(["11502-2", "IMG-KOS"], True, False, True)
    assert headers == {"X-MSS-CODECDA": "11502-2,IMG-KOS", "X-MSS-INS": "O"}


def test_headers_toward_patient_closing() -> None:
    headers = forwarded_headers(["11490-0"], False, True, True)
    assert headers == {"X-MSS-CODECDA": "11490-0", "X-MSS-INS": "N", "X-MSS-MES": "FIN"}
    assert "X-MSS-MES" not in forwarded_headers(["11490-0"], False, True, False)
    assert "X-MSS-MES" not in forwarded_headers(["11490-0"], False, False, True)


def test_headers_without_cda() -> None:
    assert forwarded_headers([], True, False, False) == {}
    assert forwarded_headers([], True, True, True) == {"X-MSS-MES": "FIN"}


@pytest.mark.parametrize("bad", ["", "11502-2\r\nBcc: x@y", "a,b", "x y", "é", "-1"])
def test_header_injection_through_type_code_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        forwarded_headers(["11502-2", bad], True, False, False)


# ---------------------------------------------------------------- subject


def test_subject_form_of_the_reference_example() -> None:
    subject = xdm_subject(
        "ECHOGRAPHIE ABDOMINOPELVIENNE", "Corse", "FIGATELLIX", date(1988, 10, 12)
    )
    assert subject == "XDM/1.0/DDM+ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988"
    assert subject.startswith(XDM_SUBJECT_MARKER + "+")


def test_subject_cleans_line_breaks_and_blank_parts() -> None:
    subject = xdm_subject("CR\r\nBcc: evil@x  bio", "dupont", "", date(2001, 2, 3))
    assert "\r" not in subject and "\n" not in subject
    assert subject == "XDM/1.0/DDM+CR Bcc: evil@x bio DUPONT 03/02/2001"


def test_subject_refuses_long_title() -> None:
    xdm_subject("x" * 128, "A", "B", date(2000, 1, 1))
    with pytest.raises(ValueError):
        xdm_subject("x" * 129, "A", "B", date(2000, 1, 1))
