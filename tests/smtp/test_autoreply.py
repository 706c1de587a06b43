# covers: MSSC-RET-1, MSSC-MDN-1, MSSC-TEST-1, MSSC-NOTIF-1
"""MSS-C automatic messages: every one is parsed back with the stdlib email parser."""

from __future__ import annotations

import inspect
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.texts import (
    FROM_NAME,
    MDN_SUBJECT,
    NOTIFICATION_SUBJECT,
    RETURN_STATUS,
    RETURN_SUBJECT_EN,
    RETURN_SUBJECT_FR,
    TEST_ACK_SUBJECT,
    ReturnKind,
    date_en,
    date_fr,
    return_subject,
    return_text,
)
from smtp.autoreply import (
    MDN_DISPOSITION,
    build_auto_return,
    build_mdn,
    build_notification,
    build_test_ack,
    original_message_id,
)

from reports import assert_crlf, assert_report, fields, parse, parts, raw_part

PARIS = timezone(timedelta(hours=2))
ARRIVAL = datetime(2024, 5, 1, 9, 58, tzinfo=PARIS)
NOW = datetime(2024, 5, 1, 10, 5, tzinfo=PARIS)
PATIENT = "279035121518989@patient.mssante.fr"
DOCTOR = "martin@hopital.mssante.fr"
ORIGINAL_HEADERS = (
    b"From: Dr Martin <martin@hopital.mssante.fr>\r\n"
    b"To: <279035121518989@patient.mssante.fr>\r\n"
    b"Subject: SECRET-SUBJECT resultats biopsie\r\n"
    b"Date: Wed, 01 May 2024 09:57:00 +0200\r\n"
    b"Original-Recipient: rfc822;279035121518989@patient.mssante.fr\r\n"
    b"Message-ID: <cr-42@hopital.mssante.fr>\r\n"
)
ORIGINAL = ORIGINAL_HEADERS + b"\r\nSECRET-BODY-LINE diagnostic\r\n"
EXPECTED_STATUS = {
    "closed": "5.2.1",
    "not_found": "5.1.1",
    "too_big": "5.3.4",
    "conversation_closed": "5.7.1",
    "not_initiated": "5.7.1",
    "patient_to_patient": "5.7.1",
    "attachment_refused": "5.6.1",
}
RULE = "-" * 72
MDN_FIELDS = [
    "Reporting-UA",
    "Original-Recipient",
    "Final-Recipient",
    "Original-Message-ID",
    "Disposition",
]


def auto_return(kind: ReturnKind, original: bytes = ORIGINAL, **over: Any) -> bytes:
    args = {
        "recipient": PATIENT,
        "to": DOCTOR,
        "reporting_mta": "mx.patient.mssante.fr",
        "from_address": "mailer-daemon@patient.mssante.fr",
        "arrival_date": ARRIVAL,
        "now": NOW,
        "message_id": "ret-1@patient.mssante.fr",
        "size_limit": 25 * 1024 * 1024,
        **over,
    }
    return build_auto_return(kind, original_headers=original, **args)


def mdn(original: bytes = ORIGINAL, *, display: str | None = "Hélène Dupont", **over: str) -> bytes:
    args = {
        "patient_address": PATIENT,
        "to": DOCTOR,
        "reporting_ua": "imap.patient.mssante.fr",
        "message_id": "mdn-1@patient.mssante.fr",
        **over,
    }
    return build_mdn(original_headers=original, patient_display=display, now=NOW, **args)


def ack(original: bytes = ORIGINAL, **over: str) -> bytes:
    args = {
        "from_address": "reponse.automatique-test@patient.mssante.fr",
        "to": DOCTOR,
        "message_id": "ack-1@patient.mssante.fr",
        **over,
    }
    return build_test_ack(original_headers=original, now=NOW, **args)


def notification(**over: str) -> bytes:
    args = {
        "from_address": "ne-pas-repondre@operateur.fr",
        "to": "helene.dupont@example.org",
        "url": "https://www.monespacesante.fr/messagerie",
        "message_id": "notif-1@operateur.fr",
        **over,
    }
    return build_notification(now=NOW, **args)


def text_of(part: EmailMessage) -> str:
    """The decoded text with LF line ends, as :mod:`policies.texts` writes it."""
    text = part.get_content()
    assert isinstance(text, str)
    return text.replace("\r\n", "\n")


def assert_wire_safe(raw: bytes, *, seven_bit: bool = True) -> None:
    """CRLF only, every line at most 998 octets, and 7-bit when the inputs are."""
    assert_crlf(raw)
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    if seven_bit:
        assert raw.isascii()
        assert b"\x00" not in raw


def assert_french_first(text: str, fr: str, en: str) -> None:
    assert text.index(fr) < text.index(RULE) < text.index(en)


def assert_addressed(
    msg: EmailMessage,
    *,
    sender: tuple[str, str],
    to: str,
    message_id: str,
    in_reply_to: str | None = "<cr-42@hopital.mssante.fr>",
) -> None:
    """From (display name, address), To, Date, Message-ID and the threading headers."""
    frm = msg["From"].addresses[0]
    assert (frm.display_name, frm.addr_spec) == sender
    assert [a.addr_spec for a in msg["To"].addresses] == [to]
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert msg["Message-ID"] == f"<{message_id}>"
    assert msg["In-Reply-To"] == msg["References"] == in_reply_to


# ---------------------------------------------------------------- texts


def test_return_kinds_and_their_codes() -> None:
    assert {kind.value for kind in ReturnKind} == set(EXPECTED_STATUS)
    assert {kind.value: code for kind, code in RETURN_STATUS.items()} == EXPECTED_STATUS
    for kind in ReturnKind:
        assert RETURN_SUBJECT_FR[kind] and RETURN_SUBJECT_EN[kind]
        assert return_subject(kind) == f"{RETURN_SUBJECT_FR[kind]} / {RETURN_SUBJECT_EN[kind]}"
    assert ReturnKind("not_found") is ReturnKind.NOT_FOUND


def test_dates_are_written_without_locale_in_their_own_zone() -> None:
    assert date_fr(ARRIVAL) == "1er mai 2024 à 9 h 58 (UTC+2)"
    assert date_en(ARRIVAL) == "1 May 2024 at 09:58 (UTC+2)"
    utc = datetime(2024, 12, 25, 23, 7, tzinfo=UTC)
    assert date_fr(utc) == "25 décembre 2024 à 23 h 07 (UTC)"
    odd = datetime(2024, 8, 2, 1, 0, tzinfo=timezone(-timedelta(hours=3, minutes=30)))
    assert date_en(odd) == "2 August 2024 at 01:00 (UTC-3:30)"
    assert date_fr(datetime(2024, 2, 3, 4, 5)) == "3 février 2024 à 4 h 05"


def test_too_big_text_needs_the_limit() -> None:
    with pytest.raises(ValueError, match="limit_mb"):
        return_text(ReturnKind.TOO_BIG, recipient=PATIENT, received=ARRIVAL)
    with pytest.raises(ValueError, match="size limit"):
        auto_return(ReturnKind.TOO_BIG, size_limit=None)


def test_texts_take_no_content_parameter() -> None:
    """No text or builder can be handed a subject, body or attachment name."""
    forbidden = {"subject", "body", "content", "original", "attachments", "filename"}
    for func in (return_text, build_auto_return, build_mdn, build_test_ack, build_notification):
        assert not forbidden & set(inspect.signature(func).parameters)
    assert set(inspect.signature(build_notification).parameters) == {
        "from_address",
        "to",
        "url",
        "now",
        "message_id",
    }


# ---------------------------------------------------------------- returns (MSSC-RET-1)


@pytest.mark.parametrize("kind", list(ReturnKind))
def test_return_structure_headers_and_machine_part(kind: ReturnKind) -> None:
    raw = auto_return(kind)
    msg = assert_report(raw, "delivery-status", "message/delivery-status")
    assert FROM_NAME == "Messagerie Mon espace santé"
    assert_addressed(
        msg,
        sender=(FROM_NAME, "mailer-daemon@patient.mssante.fr"),
        to=DOCTOR,
        message_id="ret-1@patient.mssante.fr",
    )
    assert msg["Subject"] == return_subject(kind)
    assert msg["Subject"].startswith(RETURN_SUBJECT_FR[kind])
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n", 1)[0]  # French subject RFC 2047-encoded

    head, rcpt = fields(raw)
    assert head["Reporting-MTA"] == "dns; mx.patient.mssante.fr"
    assert parsedate_to_datetime(head["Arrival-Date"]) == ARRIVAL
    assert rcpt["Final-Recipient"] == f"rfc822; {PATIENT}"
    assert rcpt["Action"] == "failed"
    assert rcpt["Status"] == EXPECTED_STATUS[kind.value]
    assert_wire_safe(raw)


@pytest.mark.parametrize("kind", list(ReturnKind))
def test_return_text_is_french_first_and_names_no_content(kind: ReturnKind) -> None:
    raw = auto_return(kind)
    text = text_of(parts(raw)[0])
    assert text == return_text(kind, recipient=PATIENT, received=ARRIVAL, limit_mb=25)
    assert_french_first(text, "Votre message du 1er mai 2024", "Your message of 1 May 2024")
    assert text.count(PATIENT) == 2
    assert f"Code : {EXPECTED_STATUS[kind.value]}" in text
    assert "SECRET" not in text
    assert b"SECRET-BODY-LINE" not in raw
    # the original's headers come back, and only them
    assert raw_part(raw, 2) == ORIGINAL_HEADERS


@pytest.mark.parametrize(
    ("kind", "fr", "en"),
    [
        (ReturnKind.CLOSED, "a fermé sa messagerie", "has closed their"),
        (ReturnKind.NOT_FOUND, "Patient non trouvé", "Patient not found"),
        (ReturnKind.TOO_BIG, "25 Mo au plus", "at most 25 MB"),
        (ReturnKind.CONVERSATION_CLOSED, "mis fin à l'échange", "closed the exchange"),
        (ReturnKind.NOT_INITIATED, "qui vous a écrit en premier", "who wrote to you first"),
        (ReturnKind.NOT_INITIATED, "pharmacies qui acceptent", "pharmacies that accept"),
        (ReturnKind.PATIENT_TO_PATIENT, "entre patients", "between patients"),
        (ReturnKind.ATTACHMENT_REFUSED, "PDF, JPG/JPEG, PNG, TIFF et RTF", "PDF, JPG/JPEG"),
    ],
)
def test_each_return_says_why(kind: ReturnKind, fr: str, en: str) -> None:
    text = text_of(parts(auto_return(kind))[0])
    split = text.index(RULE)
    assert fr in text[:split]
    assert en in text[split:]


def test_too_big_limit_follows_the_configuration() -> None:
    raw = auto_return(ReturnKind.TOO_BIG, size_limit=10 * 1024 * 1024)
    text = text_of(parts(raw)[0])
    assert "10 Mo au plus" in text and "at most 10 MB" in text


def test_return_to_the_patient_goes_where_it_is_told() -> None:
    raw = auto_return(ReturnKind.CONVERSATION_CLOSED, recipient=DOCTOR, to=PATIENT)
    msg = parse(raw)
    assert [a.addr_spec for a in msg["To"].addresses] == [PATIENT]
    (_, rcpt) = fields(raw)
    assert rcpt["Final-Recipient"] == f"rfc822; {DOCTOR}"
    assert DOCTOR in text_of(parts(raw)[0])


def test_envelope_id_is_returned_when_given() -> None:
    (head, _) = fields(auto_return(ReturnKind.CLOSED, envelope_id="ENV-7"))
    assert head["Original-Envelope-Id"] == "ENV-7"
    (head, _) = fields(auto_return(ReturnKind.CLOSED))
    assert head["Original-Envelope-Id"] is None


def _normalised_not_found(raw: bytes, recipient: str, arrival: datetime) -> tuple[object, ...]:
    """The return with every identifier and date replaced by a placeholder."""
    secrets = {
        recipient: "<RCPT>",
        date_fr(arrival): "<DATE>",
        date_en(arrival): "<DATE>",
        format_datetime(arrival): "<DATE>",
    }

    def scrub(value: str) -> str:
        for found, placeholder in secrets.items():
            value = value.replace(found, placeholder)
        return value

    msg = parse(raw)
    skip = {"Date", "Message-ID", "To", "In-Reply-To", "References", "Content-Type"}
    headers = [(k, scrub(str(v))) for k, v in msg.items() if k not in skip]
    machine = [[(k, scrub(str(v))) for k, v in block.items()] for block in fields(raw)]
    return (
        headers,
        msg.get_param("report-type"),
        [p.get_content_type() for p in parts(raw)],
        scrub(text_of(parts(raw)[0])),
        machine,
    )


def test_not_found_never_says_which_of_the_three_cases() -> None:
    """Space not created, opposed, unknown INS: one text, differing only by identifiers."""
    other = (
        b"From: <secretariat@clinique.mssante.fr>\r\n"
        b"To: <180127512345692@patient.mssante.fr>\r\n"
        b"Subject: autre\r\n"
        b"Message-ID: <zz-9@clinique.mssante.fr>\r\n\r\nautre corps\r\n"
    )
    later = ARRIVAL + timedelta(days=40, hours=3, minutes=17)
    first = auto_return(ReturnKind.NOT_FOUND)
    second = auto_return(
        ReturnKind.NOT_FOUND,
        other,
        recipient="180127512345692@patient.mssante.fr",
        to="secretariat@clinique.mssante.fr",
        message_id="ret-2@patient.mssante.fr",
        arrival_date=later,
        now=later + timedelta(seconds=2),
    )
    assert first != second
    assert _normalised_not_found(first, PATIENT, ARRIVAL) == _normalised_not_found(
        second, "180127512345692@patient.mssante.fr", later
    )
    text = text_of(parts(first)[0]).lower()
    for hint in ("oppos", "créé", "created", "inconnu", "unknown", "n'existe pas", "fermé"):
        assert hint not in text


def test_return_of_an_eight_bit_original_is_declared_honestly() -> None:
    original = "Subject: Résultats\r\nMessage-ID: <u@x.fr>\r\n\r\ncorps\r\n".encode()
    raw = auto_return(ReturnKind.CLOSED, original)
    assert parts(raw)[2]["Content-Transfer-Encoding"] == "8bit"
    assert parse(raw)["Content-Transfer-Encoding"] == "8bit"
    assert raw_part(raw, 2) == "Subject: Résultats\r\nMessage-ID: <u@x.fr>\r\n".encode()
    assert_wire_safe(raw_part(raw, 0) + raw_part(raw, 1))
    assert b"corps" not in raw


def test_return_headers_only_even_without_a_message_id() -> None:
    raw = auto_return(ReturnKind.NOT_FOUND, b"Subject: x\r\n\r\nbody-secret\r\n")
    msg = parse(raw)
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert b"body-secret" not in raw


# ---------------------------------------------------------------- read receipt (MSSC-MDN-1)


def test_mdn_structure_and_headers() -> None:
    raw = mdn()
    msg = assert_report(raw, "disposition-notification", "message/disposition-notification")
    assert_addressed(
        msg, sender=("Hélène Dupont", PATIENT), to=DOCTOR, message_id="mdn-1@patient.mssante.fr"
    )
    assert b"=?utf-8?" in raw.split(b"\r\nTo:", 1)[0]  # display name RFC 2047-encoded
    assert msg["Subject"] == MDN_SUBJECT == "Accusé de lecture / Read receipt"
    assert raw_part(raw, 2) == ORIGINAL_HEADERS
    assert_wire_safe(raw)


def test_mdn_machine_fields() -> None:
    (block,) = fields(mdn())
    assert list(block.keys()) == MDN_FIELDS
    assert block["Reporting-UA"] == "imap.patient.mssante.fr; mssante"
    assert block["Original-Recipient"] == f"rfc822;{PATIENT}"
    assert block["Final-Recipient"] == f"rfc822; {PATIENT}"
    assert block["Original-Message-ID"] == "<cr-42@hopital.mssante.fr>"
    assert block["Disposition"] == MDN_DISPOSITION
    assert MDN_DISPOSITION == "automatic-action/MDN-sent-automatically; displayed"


def test_mdn_without_original_recipient_nor_message_id() -> None:
    raw = mdn(b"From: <a@x.fr>\r\nSubject: SECRET-SUBJECT\r\n\r\nSECRET-BODY-LINE\r\n")
    (block,) = fields(raw)
    assert list(block.keys()) == ["Reporting-UA", "Final-Recipient", "Disposition"]
    msg = parse(raw)
    assert msg["In-Reply-To"] is None and msg["References"] is None
    text = text_of(parts(raw)[0])
    assert "Votre message envoyé à " + PATIENT in text  # no Date header: no date claimed
    assert "Your message sent to " + PATIENT in text


def test_mdn_text_is_french_first_and_never_quotes_the_original() -> None:
    raw = mdn()
    text = text_of(parts(raw)[0])
    assert_french_first(
        text,
        f"Votre message envoyé le 1er mai 2024 à 9 h 57 (UTC+2) à {PATIENT} a été affiché"
        " le 1er mai 2024 à 10 h 05 (UTC+2).",
        f"Your message sent on 1 May 2024 at 09:57 (UTC+2) to {PATIENT} was displayed"
        " on 1 May 2024 at 10:05 (UTC+2).",
    )
    assert "SECRET" not in text
    assert "SECRET" not in parse(raw)["Subject"]
    assert b"SECRET-BODY-LINE" not in raw


def test_mdn_without_display_name_shows_the_address() -> None:
    msg = parse(mdn(display=None))
    sender = msg["From"].addresses[0]
    assert sender.display_name == ""
    assert sender.addr_spec == PATIENT


@pytest.mark.parametrize(
    "original",
    [
        b"Date: not a date\r\nMessage-ID: <a@b>\r\n",
        b"Date: Wed, 01 May 99999 10:00:00 +0000\r\n",
        b"Original-Recipient: rfc822;\xc3\xa9\xff@x.fr\r\n",
        b"",
        b"\r\nbody only\r\n",
    ],
)
def test_mdn_survives_odd_originals(original: bytes) -> None:
    raw = mdn(original)
    assert len(parts(raw)) == 3
    assert fields(raw)[0]["Disposition"] == MDN_DISPOSITION
    assert raw_part(raw, 1).isascii()
    assert b"body only" not in raw


# ---------------------------------------------------------------- test address (MSSC-TEST-1)


def test_test_ack_is_a_plain_threaded_reply() -> None:
    raw = ack()
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content_charset() == "utf-8"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert_addressed(
        msg,
        sender=(FROM_NAME, "reponse.automatique-test@patient.mssante.fr"),
        to=DOCTOR,
        message_id="ack-1@patient.mssante.fr",
    )
    assert msg["Subject"] == TEST_ACK_SUBJECT
    text = text_of(msg)
    assert_french_first(
        text,
        "Nous avons bien reçu votre message de test le 1er mai 2024 à 10 h 05",
        "We received your test message on 1 May 2024 at 10:05",
    )
    assert "fonctionne" in text and "service works" in text
    assert b"SECRET" not in raw
    assert_wire_safe(raw)


# ---------------------------------------------------------------- notification (MSSC-NOTIF-1)


def test_notification_is_generic() -> None:
    raw = notification()
    msg = parse(raw)
    assert msg.get_content_type() == "text/plain"
    assert msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert_addressed(
        msg,
        sender=(FROM_NAME, "ne-pas-repondre@operateur.fr"),
        to="helene.dupont@example.org",
        message_id="notif-1@operateur.fr",
        in_reply_to=None,
    )
    assert msg["Subject"] == NOTIFICATION_SUBJECT
    assert msg["Subject"].startswith("Nouveau message dans votre messagerie Mon espace santé")
    text = text_of(msg)
    assert_french_first(text, "Vous avez reçu un nouveau message", "You have a new message")
    assert text.count("https://www.monespacesante.fr/messagerie\n") == 2  # a line of its own
    assert_wire_safe(raw)


def test_notification_differs_only_by_url_and_identifiers() -> None:
    """Same fixed text whoever the patient and whatever they received."""
    one = notification()
    two = notification(to="autre@example.org", message_id="notif-2@operateur.fr")
    assert text_of(parse(one)) == text_of(parse(two))
    assert parse(one)["Subject"] == parse(two)["Subject"]


@pytest.mark.parametrize(
    "url",
    ["", "javascript:alert(1)", "https://x.fr/a b", "ftp://x.fr", "www.monespacesante.fr"],
)
def test_notification_refuses_a_bad_url(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        notification(url=url)


def test_notification_url_cannot_add_a_line() -> None:
    with pytest.raises(ValueError, match="http"):
        notification(url="https://x.fr/\r\nX-Evil: 1")  # the space left after cleaning
    raw = notification(url="https://x.fr/\r\nX-Evil:1")
    assert parse(raw)["X-Evil"] is None
    assert "https://x.fr/X-Evil:1\n" in text_of(parse(raw))


# ---------------------------------------------------------------- common


def test_original_message_id_helper() -> None:
    assert original_message_id(ORIGINAL) == "<cr-42@hopital.mssante.fr>"
    assert original_message_id(ORIGINAL_HEADERS) == "<cr-42@hopital.mssante.fr>"
    assert original_message_id(b"Message-ID: not an id\r\n\r\n") is None
    assert original_message_id(b"Subject: x\r\n\r\nMessage-ID: <body@x>\r\n") is None
    assert original_message_id(b"") is None


def test_builders_are_deterministic() -> None:
    assert auto_return(ReturnKind.CLOSED) == auto_return(ReturnKind.CLOSED)
    assert mdn() == mdn()
    assert ack() == ack()
    assert notification() == notification()
    assert parse(mdn()).get_boundary() != parse(mdn(message_id="mdn-2@x")).get_boundary()


EVIL = "\r\nBcc: victim@z.fr\r\nX-Evil: 1\r\n\r\nbody"


def _no_injection(raw: bytes) -> EmailMessage:
    assert_wire_safe(raw)
    msg = parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert len(msg["To"].addresses) == 1
    assert len(msg["From"].addresses) == 1
    assert "\n" not in msg["Message-ID"] and msg["Message-ID"].count("<") == 1
    return msg


def test_header_injection_is_neutralised_in_returns() -> None:
    raw = auto_return(
        ReturnKind.NOT_FOUND,
        recipient=PATIENT + ">" + EVIL,
        to=DOCTOR + ">" + EVIL,
        reporting_mta="mx.patient.mssante.fr" + EVIL,
        from_address="m@patient.mssante.fr" + EVIL,
        message_id="<r@x>" + EVIL,
        envelope_id="E" + EVIL,
        size_limit=None,
    )
    _no_injection(raw)
    head, rcpt = fields(raw)
    assert list(head.keys()) == ["Reporting-MTA", "Original-Envelope-Id", "Arrival-Date"]
    assert list(rcpt.keys()) == ["Final-Recipient", "Action", "Status"]
    assert rcpt["Status"] == "5.1.1"
    assert not re.search(r"^(Bcc|X-Evil):", text_of(parts(raw)[0]), re.M)


def test_header_injection_is_neutralised_in_mdn() -> None:
    original = ORIGINAL_HEADERS + b"Original-Recipient: rfc822;a@b\r\n Disposition: evil\r\n"
    raw = mdn(
        original,
        display='Evil" <x@y>' + EVIL,
        patient_address=PATIENT + ">" + EVIL,
        to=DOCTOR + ">" + EVIL,
        reporting_ua="ua; evil" + EVIL,
        message_id="m@x" + EVIL,
    )
    msg = _no_injection(raw)
    assert msg["From"].addresses[0].display_name.startswith('Evil" <x@y>')
    (block,) = fields(raw)
    assert list(block.keys()) == MDN_FIELDS
    assert block["Reporting-UA"].endswith("; mssante")
    assert block["Reporting-UA"].count(";") == 1
    assert block["Disposition"] == MDN_DISPOSITION


def test_header_injection_is_neutralised_in_plain_messages() -> None:
    _no_injection(ack(from_address="t@x.fr" + EVIL, to="a@b.fr>" + EVIL, message_id=EVIL))
    _no_injection(notification(from_address="n@x.fr" + EVIL, to="a@b.fr>" + EVIL))


def test_empty_message_id_is_refused() -> None:
    with pytest.raises(ValueError, match="message_id"):
        mdn(message_id="<>")
    with pytest.raises(ValueError, match="message_id"):
        notification(message_id="\r\n")


def test_long_values_stay_within_line_limits() -> None:
    long_addr = "p" * 5000 + "@patient.mssante.fr"
    raws = [
        auto_return(ReturnKind.CLOSED, recipient=long_addr, to=long_addr),
        mdn(display="é" * 3000, patient_address=long_addr, to=long_addr),
        ack(to=long_addr, message_id="m" * 3000),
        notification(to=long_addr),
    ]
    for raw in raws:
        assert_wire_safe(raw)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_any_original_bytes_give_parseable_crlf_reports(original: bytes) -> None:
    for raw in (auto_return(ReturnKind.NOT_FOUND, original), mdn(original)):
        assert_wire_safe(raw, seven_bit=False)
        assert len(parts(raw)) == 3
        assert raw_part(raw, 1).isascii()
