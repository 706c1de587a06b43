# covers: Y-ACK-1
"""cda.ack: the per-document integration acknowledgement, MDN or plain message."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from cda.ack import (
    ACK_CODES,
    ACK_SUBJECT,
    DocumentOutcome,
    ack_disposition,
    ack_subject,
    build_ack,
    failure_code,
)
from cda.findings import Finding

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
BRIDGE = "passerelle-y@chu.mssante.fr"
SENDER = "dpi@chu.mssante.fr"
ORIGINAL = (
    b"From: DPI <dpi@chu.mssante.fr>\r\n"
    b"To: passerelle-y@chu.mssante.fr\r\n"
    b"Subject: XDM/1.0/DDM+ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988\r\n"
    b"Message-ID: <orig-1@chu.mssante.fr>\r\n"
    b"Disposition-Notification-To: dpi@chu.mssante.fr\r\n"
    b"Original-Recipient: rfc822; passerelle-y@chu.mssante.fr\r\n"
    b"\r\n"
    b"body that must not come back\r\n"
)

OK1 = DocumentOutcome(
    "1.2.250.1.213.1.1.1.55.2024.8.1",
    "CR d'examens biologiques",
    "deposited",
    fanout_message_ids=("<fwd-1@chu.mssante.fr>", "<fwd-2@chu.mssante.fr>"),
)
OK2 = DocumentOutcome("1.2.3.4", "Compte rendu d'imagerie", "replaced")
DUP = DocumentOutcome("1.2.3.5", "Lettre de liaison", "duplicate")
KO = DocumentOutcome(
    "1.2.3.6",
    "Synthèse",
    "refused",
    ack_code=902,
    findings=(
        Finding("ClinicalDocument/recordTarget/patientRole/id", "a known INS", "279035121518989"),
    ),
)
KO2 = DocumentOutcome("1.2.3.7", "Autre", "refused", ack_code=900)


def _ack(
    outcomes: tuple[DocumentOutcome, ...], *, as_mdn: bool, original: bytes = ORIGINAL
) -> bytes:
    return build_ack(
        outcomes=outcomes,
        original_headers=original,
        bridge_address=BRIDGE,
        to=SENDER,
        as_mdn=as_mdn,
        reporting_ua="passerelle.chu.mssante.fr",
        now=NOW,
        message_id="ack-1@chu.mssante.fr",
    )


def _part(msg: EmailMessage, index: int) -> Any:
    return msg.get_payload()[index]  # type: ignore[index]


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _human(msg: EmailMessage) -> str:
    part = _part(msg, 0) if msg.is_multipart() else msg
    text = part.get_content()
    assert isinstance(text, str)
    return text


def _doc_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("- ")]


def _fields(part: Any) -> list[tuple[str, str]]:
    """The message/disposition-notification fields, in order (parsed as header blocks)."""
    assert part.get_content_type() == "message/disposition-notification"
    return [(k, str(v)) for block in part.get_payload() for k, v in block.items()]


def _wire_checks(raw: bytes) -> None:
    lines = raw.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


# ---------------------------------------------------------------- MDN


def test_mdn_success_structure() -> None:
    raw = _ack((OK1, OK2, DUP), as_mdn=True)
    _wire_checks(raw)
    assert raw.isascii()  # the original's headers are 7-bit
    msg = _parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "disposition-notification"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<orig-1@chu.mssante.fr>"
    assert msg["References"] == "<orig-1@chu.mssante.fr>"
    assert msg["To"].addresses[0].addr_spec == SENDER
    assert BRIDGE in msg["From"]
    assert msg["Subject"] == (
        "XDM/1.0/DDM+ECHOGRAPHIE ABDOMINOPELVIENNE CORSE FIGATELLIX 12/10/1988"
    )
    human, notification, headers = (_part(msg, i) for i in range(3))
    assert len(msg.get_payload()) == 3
    assert human.get_content_type() == "text/plain"
    assert notification.get_content_type() == "message/disposition-notification"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert _fields(notification) == [
        ("Reporting-UA", "passerelle.chu.mssante.fr; mssante"),
        ("Original-Recipient", "rfc822; passerelle-y@chu.mssante.fr"),
        ("Final-Recipient", f"rfc822; {BRIDGE}"),
        ("Original-Message-ID", "<orig-1@chu.mssante.fr>"),
        ("Disposition", "automatic-action/MDN-sent-automatically; processed"),
    ]
    returned = headers.get_payload(decode=True)
    assert b"Message-ID: <orig-1@chu.mssante.fr>" in returned
    assert b"must not come back" not in raw


def test_one_human_line_per_document_in_each_language() -> None:
    raw = _ack((OK1, OK2, DUP, KO), as_mdn=True)
    text = _human(_parse(raw))
    french, english = text.split("-" * 72)
    assert len(_doc_lines(french)) == 4
    assert len(_doc_lines(english)) == 4
    assert french.index("Ce message") < english.index("This is")
    lines = _doc_lines(english)
    assert "integrated (new document)" in lines[0]
    assert "<fwd-1@chu.mssante.fr>, <fwd-2@chu.mssante.fr>" in lines[0]
    assert "replaces the previous version" in lines[1]
    assert "already integrated" in lines[2]
    assert "refused, error 902^Patient inconnu" in lines[3]
    assert (
        "ClinicalDocument/recordTarget/patientRole/id: expected a known INS, "
        "found 279035121518989" in lines[3]
    )
    assert "1.2.3.6" in lines[3] and "Synthèse" in lines[3]
    assert "erreur 902^Patient inconnu" in _doc_lines(french)[3]
    assert "attendu a known INS, trouvé 279035121518989" in _doc_lines(french)[3]


def test_mdn_failure_uses_first_failing_code() -> None:
    raw = _ack((OK1, KO2, KO), as_mdn=True)
    _wire_checks(raw)
    msg = _parse(raw)
    fields = dict(_fields(msg.get_payload()[1]))  # type: ignore[index]
    assert fields["Disposition"] == (
        "automatic-action/MDN-sent-automatically; processed/Error: 900^Version non la plus recente"
    )
    assert msg["Subject"].startswith("[KO Intégration système !][900] XDM/1.0/DDM+")


@pytest.mark.parametrize("code", sorted(ACK_CODES))
def test_every_code_has_an_ascii_label(code: int) -> None:
    outcome = DocumentOutcome("1.2", "T", "refused", ack_code=code)
    assert failure_code([outcome]) == code
    disposition = ack_disposition(code)
    assert disposition.endswith(f"/Error: {code}^{ACK_CODES[code][0]}")
    assert disposition.isascii()
    assert not any(c in ACK_CODES[code][0] for c in ";,^\r\n")
    raw = _ack((outcome,), as_mdn=True)
    assert f"processed/Error: {code}^".encode() in raw
    assert _parse(raw)["Subject"].startswith(f"[KO Intégration système !][{code}]")


def test_refusal_without_code_is_906() -> None:
    outcome = DocumentOutcome("", "IHE_XDM.ZIP", "refused")
    assert outcome.code == 906
    raw = _ack((outcome,), as_mdn=True)
    assert b"processed/Error: 906^Autre erreur" in raw
    assert "(no identifier)" in _human(_parse(raw))


def test_invalid_outcomes_refused() -> None:
    with pytest.raises(ValueError):
        DocumentOutcome("1", "t", "deposited", ack_code=902)
    with pytest.raises(ValueError):
        DocumentOutcome("1", "t", "refused", ack_code=999)
    with pytest.raises(ValueError):
        DocumentOutcome("1", "t", "lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _ack((), as_mdn=True)


# ---------------------------------------------------------------- plain message


def test_plain_message_when_no_mdn_asked() -> None:
    raw = _ack((OK1, KO), as_mdn=False)
    _wire_checks(raw)
    assert raw.isascii()
    msg = _parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["In-Reply-To"] == "<orig-1@chu.mssante.fr>"
    assert msg["Subject"].startswith("[KO Intégration système !][902] XDM/1.0/DDM+")
    text = _human(msg)
    assert len(_doc_lines(text)) == 4  # two documents, two languages
    assert b"Disposition:" not in raw


def test_neutral_subject_without_xdm_marker() -> None:
    original = b"Subject: documents\r\nMessage-ID: <m@x>\r\n\r\n"
    assert _parse(_ack((OK1,), as_mdn=False, original=original))["Subject"] == ACK_SUBJECT
    ko = _parse(_ack((KO,), as_mdn=False, original=original))["Subject"]
    assert ko == f"[KO Intégration système !][902] {ACK_SUBJECT}"
    assert (
        ack_subject("Fwd: XDM/1.0/DDM+CR X Y 01/01/2000", None) == "XDM/1.0/DDM+CR X Y 01/01/2000"
    )


def test_encoded_original_subject_is_decoded() -> None:
    original = (
        b"Subject: =?utf-8?q?XDM/1.0/DDM+Synth=C3=A8se_DUPONT_Jean_01/02/2003?=\r\n"
        b"Message-ID: <m@x>\r\n\r\n"
    )
    msg = _parse(_ack((OK1,), as_mdn=True, original=original))
    assert msg["Subject"] == "XDM/1.0/DDM+Synthèse DUPONT Jean 01/02/2003"


# ---------------------------------------------------------------- hostile values


def test_header_injection_neutralised() -> None:
    evil = DocumentOutcome(
        "1.2\r\nBcc: victim@evil.example",
        "Titre\r\nX-Evil: 1\n\nbody",
        "refused",
        ack_code=906,
        findings=(Finding("a\r\nX-Evil: 2", "b\u2028c", "d\x00e"),),
        fanout_message_ids=("<x@y>\r\nX-Evil: 3",),
    )
    original = (
        b"Subject: XDM/1.0/DDM+CR\r\n\tX-Evil: 4\r\n"
        b"Message-ID: <orig@x>\r\n"
        b"Original-Recipient: rfc822; a@b\r\n\r\n"
    )
    for as_mdn in (True, False):
        raw = build_ack(
            outcomes=(evil,),
            original_headers=original,
            bridge_address="bridge@x.fr>\r\nBcc: victim@evil.example",
            to="dpi@x.fr>\r\nX-Evil: 5",
            as_mdn=as_mdn,
            reporting_ua="ua\r\nX-Evil: 6; other",
            now=NOW,
            message_id="<ack@x>\r\nX-Evil: 7",
        )
        _wire_checks(raw)
        msg = _parse(raw)
        assert msg["Bcc"] is None
        assert msg["X-Evil"] is None
        # the only header lines are the ones the builder writes
        top = raw.split(b"\r\n\r\n", 1)[0]
        names = {
            line.split(b":", 1)[0]
            for line in top.split(b"\r\n")
            if line and not line.startswith((b" ", b"\t"))
        }
        assert names <= {
            b"From", b"To", b"Subject", b"Date", b"Message-ID", b"In-Reply-To",
            b"References", b"Auto-Submitted", b"MIME-Version", b"Content-Type",
            b"Content-Transfer-Encoding",
        }  # fmt: skip
        text = _human(msg)
        assert len(_doc_lines(text)) == 2
        assert not any(line.startswith("X-Evil") for line in text.splitlines())
        if as_mdn:
            fields = _fields(_part(msg, 1))
            assert {name for name, _ in fields} == {
                "Reporting-UA", "Original-Recipient", "Final-Recipient",
                "Original-Message-ID", "Disposition",
            }  # fmt: skip


def test_long_values_stay_within_line_limits() -> None:
    huge = DocumentOutcome(
        "1." * 2000,
        "T" * 5000,
        "refused",
        ack_code=905,
        findings=tuple(Finding("p" * 2000, "e" * 2000, "f" * 2000) for _ in range(100)),
        fanout_message_ids=tuple(f"<m{i}@x>" for i in range(500)),
    )
    raw = _ack((huge,), as_mdn=True)
    _wire_checks(raw)
    text = _human(_parse(raw))
    assert "and 80 more finding(s)" in text
    assert len(raw) < 200_000


def test_8bit_original_headers_declared_honestly() -> None:
    original = "Subject: XDM/1.0/DDM+Synthèse\r\nMessage-ID: <m@x>\r\n\r\n".encode()
    raw = _ack((OK1,), as_mdn=True, original=original)
    _wire_checks(raw)
    msg = _parse(raw)
    assert msg["Content-Transfer-Encoding"] == "8bit"
    assert _part(msg, 2)["Content-Transfer-Encoding"] == "8bit"
    # everything the builder writes itself stays 7-bit
    assert raw.split(b"\r\n\r\n", 1)[0].isascii()
