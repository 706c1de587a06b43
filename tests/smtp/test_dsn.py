"""DSNs (RFC 3464/3461/6522): every report is parsed back with the stdlib email parser."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp.dsn import (
    MAX_FULL_ORIGINAL,
    MAX_HEADER_BLOCK,
    RecipientStatus,
    Report,
    build_dsn,
    must_not_send_dsn,
    notify_wants,
    parse_notify,
    parse_ret,
    xtext_decode,
    xtext_encode,
)

from reports import assert_crlf, assert_report, fields, parse, parts, raw_part

T0 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
ORIGINAL = (
    b"From: Dr Martin <martin@hopital.mssante.fr>\r\n"
    b"To: <a@labo.mssante.fr>\r\n"
    b"Subject: Compte rendu\r\n"
    b"Message-ID: <cr-42@hopital.mssante.fr>\r\n"
    b"\r\n"
    b"SECRET-BODY-LINE patient data\r\n"
)
FAILED = RecipientStatus(
    "a@labo.mssante.fr",
    "failed",
    "5.1.1",
    original_recipient="rfc822;A@labo.mssante.fr",
    diagnostic_code="smtp; 550 5.1.1 No such mailbox here",
    remote_mta="mx.labo.mssante.fr",
    last_attempt=T0 + timedelta(minutes=5),
)
DELAYED = RecipientStatus(
    "b@clinique.mssante.fr",
    "delayed",
    "4.4.1",
    last_attempt=T0 + timedelta(minutes=5),
    will_retry_until=T0 + timedelta(days=5),
)
DELIVERED = RecipientStatus("c@hopital.mssante.fr", "delivered", "2.0.0")


def report(*rcpts: RecipientStatus, ret: str = "headers", envid: str | None = "ENV-1") -> Report:
    return Report("mx.operateur.fr", envid, T0, rcpts, ret)  # type: ignore[arg-type]


def dsn(rep: Report, original: bytes = ORIGINAL, sender: str = "martin@hospital.fr") -> bytes:
    return build_dsn(
        rep,
        original=original,
        sender=sender,
        postmaster="postmaster@operateur.fr",
        now=NOW,
        message_id="dsn-1@operateur.fr",
    )


def human(raw: bytes) -> str:
    text = parts(raw)[0].get_content()
    assert isinstance(text, str)
    return text


# ---------------------------------------------------------------- structure


# covers: TS-6
def test_report_structure_and_part_order() -> None:
    raw = dsn(report(FAILED, DELAYED))
    msg = assert_report(raw, "delivery-status", "message/delivery-status")
    assert parts(raw)[0].get_content_charset() == "utf-8"
    assert msg["From"].addresses[0].addr_spec == "postmaster@operateur.fr"
    assert "MAILER-DAEMON" in msg["From"].addresses[0].display_name
    assert msg["To"].addresses[0].addr_spec == "martin@hospital.fr"
    assert msg["Message-ID"] == "<dsn-1@operateur.fr>"
    assert parsedate_to_datetime(msg["Date"]) == NOW
    assert_crlf(raw)


# covers: TS-6
def test_threading_headers_follow_the_original_message_id() -> None:
    msg = parse(dsn(report(DELIVERED)))
    assert msg["In-Reply-To"] == "<cr-42@hopital.mssante.fr>"
    assert msg["References"] == "<cr-42@hopital.mssante.fr>"
    bare = parse(dsn(report(DELIVERED), original=b"Subject: x\r\n\r\nbody\r\n"))
    assert bare["In-Reply-To"] is None and bare["References"] is None


@pytest.mark.parametrize(
    ("rcpts", "subject"),
    [
        ((DELIVERED,), "Accusé de remise / Delivery Status Notification (Success)"),
        (
            (DELIVERED, RecipientStatus("l@x.fr", "relayed", "2.0.0")),
            "Accusé de remise / Delivery Status Notification (Success)",
        ),
        ((DELIVERED, DELAYED), "Avis de retard de remise / Delivery Status Notification (Delay)"),
        (
            (DELIVERED, DELAYED, FAILED),
            "Avis de non-remise / Delivery Status Notification (Failure)",
        ),
    ],
)
# covers: TS-6
def test_subject_follows_the_overall_outcome(
    rcpts: tuple[RecipientStatus, ...], subject: str
) -> None:
    assert parse(dsn(report(*rcpts)))["Subject"] == subject


# ---------------------------------------------------------------- human part


# covers: TS-6
def test_human_part_is_french_then_english_and_names_every_recipient() -> None:
    text = human(dsn(report(FAILED, DELAYED, DELIVERED), sender="martin@hospital.fr"))
    fr = text.index("Ce message est généré automatiquement")
    en = text.index("This is an automatically generated Delivery Status Notification")
    assert fr < en
    for rcpt in (FAILED, DELAYED, DELIVERED):
        assert text[:en].count(rcpt.final_recipient) == 1
        assert text[en:].count(rcpt.final_recipient) == 1
    assert "boîte aux lettres inconnue" in text[:en]
    assert "unknown mailbox" in text[en:]
    assert "SECRET-BODY-LINE" not in text


@pytest.mark.parametrize(
    ("action", "status", "fr", "en"),
    [
        ("failed", "5.1.1", "boîte aux lettres inconnue", "unknown mailbox"),
        ("failed", "5.7.1", "espace de confiance", "trust space"),
        ("failed", "5.3.4", "trop volumineux", "too large"),
        ("failed", "5.2.3", "trop volumineux", "too large"),
        ("delayed", "4.4.1", "pas de réponse", "no answer"),
        ("delayed", "4.4.2", "connexion perdue", "connection to the recipient's server was lost"),
        ("failed", "4.4.7", "délai de remise expiré", "delivery time expired"),
        ("failed", "5.9.9", "erreur permanente", "permanent error"),
        ("delayed", "4.9.9", "erreur temporaire", "temporary error"),
        ("delivered", "2.0.0", "déposé dans la boîte", "placed in the mailbox"),
        ("relayed", "2.0.0", "ne fournit pas d'accusé", "does not send delivery receipts"),
        ("expanded", "2.0.0", "membres de la liste", "list members"),
    ],
)
# covers: TS-6
def test_explanation_per_action_and_status(action: str, status: str, fr: str, en: str) -> None:
    rcpt = RecipientStatus("x@y.fr", action, status)  # type: ignore[arg-type]
    text = human(dsn(report(rcpt)))
    split = text.index("This is an automatically generated")
    assert fr in text[:split]
    assert en in text[split:]


# ---------------------------------------------------------------- machine part


# covers: TS-6
def test_machine_fields_per_message_and_per_recipient() -> None:
    raw = dsn(report(FAILED, DELAYED, DELIVERED))
    head, failed, delayed, delivered = fields(raw)
    assert head["Reporting-MTA"] == "dns; mx.operateur.fr"
    assert head["Original-Envelope-Id"] == "ENV-1"
    assert parsedate_to_datetime(head["Arrival-Date"]) == T0

    assert failed["Original-Recipient"] == "rfc822;A@labo.mssante.fr"
    assert failed["Final-Recipient"] == "rfc822; a@labo.mssante.fr"
    assert failed["Action"] == "failed"
    assert failed["Status"] == "5.1.1"
    assert failed["Remote-MTA"] == "dns; mx.labo.mssante.fr"
    assert failed["Diagnostic-Code"] == "smtp; 550 5.1.1 No such mailbox here"
    assert parsedate_to_datetime(failed["Last-Attempt-Date"]) == T0 + timedelta(minutes=5)
    assert failed["Will-Retry-Until"] is None

    assert delayed["Action"] == "delayed"
    assert parsedate_to_datetime(delayed["Will-Retry-Until"]) == T0 + timedelta(days=5)
    assert delayed["Original-Recipient"] is None

    assert list(delivered.keys()) == ["Final-Recipient", "Action", "Status"]
    assert_crlf(raw_part(raw, 1))


# covers: TS-6
def test_will_retry_until_is_written_only_for_delayed() -> None:
    odd = RecipientStatus("z@y.fr", "failed", "4.4.7", will_retry_until=T0)
    (_, block) = fields(dsn(report(odd)))
    assert block["Will-Retry-Until"] is None


# covers: TS-6
def test_envelope_id_and_orcpt_round_trip_from_the_esmtp_parameters() -> None:
    envid_param, orcpt_param = "QQ+2Bid+3D7", "rfc822;Dr+2BMartin@hopital.fr"
    rcpt = RecipientStatus("dr+martin@hopital.fr", "delivered", "2.0.0", xtext_decode(orcpt_param))
    head, block = fields(dsn(report(rcpt, envid=xtext_decode(envid_param))))
    assert head["Original-Envelope-Id"] == "QQ+id=7"
    assert block["Original-Recipient"] == "rfc822;Dr+Martin@hopital.fr"
    assert xtext_encode(head["Original-Envelope-Id"]) == envid_param


# covers: TS-6
def test_no_envelope_id_means_no_field() -> None:
    (head, _) = fields(dsn(report(DELIVERED, envid=None)))
    assert list(head.keys()) == ["Reporting-MTA", "Arrival-Date"]


# covers: TS-6
def test_non_ascii_recipient_keeps_the_machine_part_seven_bit() -> None:
    rcpt = RecipientStatus("hélène@hôpital.fr", "delivered", "2.0.0")
    raw = dsn(report(rcpt))
    body = raw_part(raw, 1)
    assert body.isascii()
    assert b"Final-Recipient: utf-8; h\\x{E9}l\\x{E8}ne@h\\x{F4}pital.fr" in body
    assert "hélène@hôpital.fr" in human(raw)


# ---------------------------------------------------------------- the original


# covers: TS-6
def test_ret_full_returns_the_original_byte_exact() -> None:
    raw = dsn(report(FAILED, ret="full"))
    third = parts(raw)[2]
    assert third.get_content_type() == "message/rfc822"
    assert raw_part(raw, 2) == ORIGINAL
    assert "SECRET-BODY-LINE" not in human(raw)
    assert "joint en entier" in human(raw)


# covers: TS-6
def test_ret_full_with_eight_bit_original_is_declared_8bit_and_kept() -> None:
    original = "Subject: é\r\n\r\nCorps accentué\r\n".encode("latin-1")
    raw = dsn(report(FAILED, ret="full"), original=original)
    assert parts(raw)[2]["Content-Transfer-Encoding"] == "8bit"
    assert parse(raw)["Content-Transfer-Encoding"] == "8bit"
    assert raw_part(raw, 2) == original


# covers: TS-6
def test_ret_hdrs_returns_only_the_header_block() -> None:
    raw = dsn(report(FAILED, ret="headers"))
    assert parts(raw)[2].get_content_type() == "text/rfc822-headers"
    assert raw_part(raw, 2) == ORIGINAL.split(b"\r\n\r\n")[0] + b"\r\n"
    assert b"SECRET-BODY-LINE" not in raw


# covers: TS-6
def test_original_over_one_mib_falls_back_to_headers_and_says_so() -> None:
    big = ORIGINAL + (b"y" * 76 + b"\r\n") * (MAX_FULL_ORIGINAL // 78 + 1)
    assert len(big) > MAX_FULL_ORIGINAL
    raw = dsn(report(FAILED, ret="full"), original=big)
    assert parts(raw)[2].get_content_type() == "text/rfc822-headers"
    assert b"SECRET-BODY-LINE" not in raw
    assert len(raw) < 64 * 1024
    text = human(raw)
    assert "dépasse 1 Mio" in text and "over 1 MiB" in text


# covers: TS-6
def test_boundary_never_occurs_inside_the_original() -> None:
    first = dsn(report(FAILED, ret="full"))
    boundary = parse(first).get_boundary()
    assert boundary
    trap = ORIGINAL + b"--" + boundary.encode() + b"\r\n"
    raw = dsn(report(FAILED, ret="full"), original=trap)
    assert parse(raw).get_boundary() != boundary
    assert raw_part(raw, 2) == trap


@pytest.mark.parametrize(
    ("original", "expected"),
    [
        (b"Subject: no separator\r\nX-A: 1\r\n", b"Subject: no separator\r\nX-A: 1\r\n"),
        (b"Subject: bare\nX-A: 1\n\nbody\n", b"Subject: bare\r\nX-A: 1\r\n"),
        (b"Subject: mixed\r\nX-A: 1\n\r\nbody\r\n", b"Subject: mixed\r\nX-A: 1\r\n"),
        (b"Subject: \xff\xfe\x80 bad\r\n\r\nbody\r\n", b"Subject: \xff\xfe\x80 bad\r\n"),
        (b"Subject: cr\ronly\r\n\r\n", b"Subject: cr\r\nonly\r\n"),
        (b"\r\nbody only\r\n", b""),
        (b"", b""),
        (b"\x00\x01 not a header at all", b"\x00\x01 not a header at all\r\n"),
    ],
)
# covers: TS-6
def test_malformed_originals_never_raise(original: bytes, expected: bytes) -> None:
    for ret in ("headers", "full"):
        raw = dsn(report(FAILED, ret=ret), original=original)
        assert_crlf(raw)
        assert len(parts(raw)) == 3
    raw = dsn(report(FAILED), original=original)
    assert raw_part(raw, 2) == expected
    assert b"body" not in raw_part(raw, 2)


# covers: TS-6
def test_enormous_header_block_is_capped_on_a_line_boundary() -> None:
    line = b"X-Filler: " + b"a" * 90 + b"\n"
    original = b"Message-ID: <big@x.fr>\n" + line * (200 * 1024 // len(line)) + b"\nbody\n"
    raw = dsn(report(FAILED), original=original)
    headers = raw_part(raw, 2)
    assert len(headers) <= MAX_HEADER_BLOCK
    assert headers.endswith(b"a" * 90 + b"\r\n")
    assert_crlf(raw)
    assert parse(raw)["In-Reply-To"] == "<big@x.fr>"


# covers: TS-6
def test_single_huge_header_line_is_cut() -> None:
    raw = dsn(report(FAILED), original=b"Subject: " + b"z" * 300_000)
    assert len(raw_part(raw, 2)) <= MAX_HEADER_BLOCK
    assert parts(raw)[2]["Content-Transfer-Encoding"] == "binary"


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(["headers", "full"]))
# covers: TS-6
def test_any_original_bytes_give_a_parseable_crlf_report(original: bytes, ret: str) -> None:
    raw = dsn(report(FAILED, DELIVERED, ret=ret), original=original)
    assert_crlf(raw)
    assert [p.get_content_type() for p in parts(raw)][:2] == [
        "text/plain",
        "message/delivery-status",
    ]
    assert len(fields(raw)) == 3


# ---------------------------------------------------------------- injection


# covers: TS-6
def test_header_and_field_injection_is_neutralised() -> None:
    rcpt = RecipientStatus(
        "a@b.fr\r\nAction: delivered\r\n\r\nFinal-Recipient: rfc822; ghost@x.fr",
        "failed",
        "5.7.1",
        original_recipient="rfc822;a@b.fr\nStatus: 2.0.0",
        diagnostic_code="smtp; 550 no\r\n\r\nFinal-Recipient: rfc822; ghost2@x.fr\x00\x1b[31m",
        remote_mta="mx.b.fr\rRemote-MTA: dns; evil",
    )
    raw = build_dsn(
        Report("mx.operateur.fr\r\nX-Evil: 1", "E\r\nX-Evil: 2", T0, (rcpt,)),
        original=ORIGINAL,
        sender="x@y.fr>\r\nBcc: victim@z.fr\r\nX-Evil: 3",
        postmaster="postmaster@operateur.fr\nX-Evil: 4",
        now=NOW,
        message_id="id@x\r\nX-Evil: 5",
    )
    assert_crlf(raw)
    msg = parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert len(msg["To"].addresses) == 1
    head, block = fields(raw)
    assert list(head.keys()) == ["Reporting-MTA", "Original-Envelope-Id", "Arrival-Date"]
    assert list(block.keys()) == [
        "Original-Recipient",
        "Final-Recipient",
        "Action",
        "Status",
        "Remote-MTA",
        "Diagnostic-Code",
    ]
    assert block["Action"] == "failed" and block["Status"] == "5.7.1"
    assert b"\x00" not in raw and b"\x1b" not in raw
    text = human(raw)
    assert "ghost@x.fr" in text  # shown, but inside its own line, not as a field
    assert not re.search(r"^Final-Recipient:", text, re.M)


# covers: TS-6
def test_long_values_are_capped_to_legal_lines() -> None:
    rcpt = RecipientStatus("a@b.fr", "failed", "5.0.0", diagnostic_code="smtp; " + "d" * 5000)
    raw = dsn(report(rcpt), sender="s" * 5000 + "@x.fr")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    (_, block) = fields(raw)
    assert 900 < len(block["Diagnostic-Code"]) <= 998


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("action", "status"),
    [
        ("failed", "5.1"),
        ("failed", "6.1.1"),
        ("failed", "5.1.1000"),
        ("failed", "5.1.1 "),
        ("failed", "5.١.1"),
        ("failed", "2.0.0"),
        ("delivered", "5.1.1"),
        ("delayed", "5.4.7"),
        ("bounced", "5.1.1"),
    ],
)
def test_recipient_status_is_validated(action: str, status: str) -> None:
    with pytest.raises(ValueError):
        RecipientStatus("a@b.fr", action, status)  # type: ignore[arg-type]


def test_report_needs_recipients_and_a_known_return_content() -> None:
    with pytest.raises(ValueError, match="recipients"):
        Report("mx", None, T0, ())
    with pytest.raises(ValueError, match="return_content"):
        Report("mx", None, T0, (DELIVERED,), "body")  # type: ignore[arg-type]


# ---------------------------------------------------------------- ESMTP parameters


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NEVER", {"NEVER"}),
        ("never", {"NEVER"}),
        ("SUCCESS", {"SUCCESS"}),
        ("success,Failure,DELAY", {"SUCCESS", "FAILURE", "DELAY"}),
        ("FAILURE,DELAY", {"FAILURE", "DELAY"}),
    ],
)
# covers: TS-6
def test_parse_notify_accepts(value: str, expected: set[str]) -> None:
    assert parse_notify(value) == frozenset(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "needs a value"),
        ("NEVER,SUCCESS", "cannot be combined"),
        ("SUCCESS,,DELAY", "empty item"),
        ("SUCCESS,", "empty item"),
        ("SUCCESS, DELAY", "unknown keyword"),
        ("ALWAYS", "unknown keyword.*ALWAYS"),
    ],
)
# covers: TS-6
def test_parse_notify_refuses(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_notify(value)


# covers: TS-6
def test_parse_ret() -> None:
    assert parse_ret("HDRS") == "headers"
    assert parse_ret("full") == "full"
    for bad in ("", "HEADERS", "FULL ", "BODY"):
        with pytest.raises(ValueError, match="HDRS or FULL"):
            parse_ret(bad)


@pytest.mark.parametrize(
    ("notify", "action", "wanted"),
    [
        (None, "failed", True),
        (None, "delayed", True),
        (None, "delivered", False),
        (None, "relayed", False),
        (None, "expanded", False),
        (frozenset({"NEVER"}), "failed", False),
        (frozenset({"NEVER"}), "delayed", False),
        (frozenset({"NEVER"}), "delivered", False),
        (frozenset({"SUCCESS"}), "delivered", True),
        (frozenset({"SUCCESS"}), "relayed", True),
        (frozenset({"SUCCESS"}), "expanded", True),
        (frozenset({"SUCCESS"}), "failed", False),
        (frozenset({"SUCCESS"}), "delayed", False),
        (frozenset({"FAILURE"}), "failed", True),
        (frozenset({"FAILURE"}), "delayed", False),
        (frozenset({"FAILURE"}), "delivered", False),
        (frozenset({"DELAY"}), "delayed", True),
        (frozenset({"DELAY"}), "failed", False),
        (frozenset({"SUCCESS", "FAILURE", "DELAY"}), "delivered", True),
        (frozenset({"SUCCESS", "FAILURE", "DELAY"}), "failed", True),
        (frozenset({"SUCCESS", "FAILURE", "DELAY"}), "delayed", True),
    ],
)
# covers: TS-6
def test_notify_wants_truth_table(notify: frozenset[str] | None, action: str, wanted: bool) -> None:
    assert notify_wants(notify, action) is wanted


def test_notify_wants_refuses_unknown_actions() -> None:
    with pytest.raises(ValueError, match="unknown DSN action"):
        notify_wants(None, "bounced")


@pytest.mark.parametrize(
    ("sender", "suppressed"),
    [
        ("", True),
        ("<>", True),
        (" < > ", True),
        ("martin@hopital.mssante.fr", False),
        ("<martin@hopital.mssante.fr>", False),
        ("MAILER-DAEMON@x.fr", False),
        ("postmaster@x.fr", False),
    ],
)
# covers: TS-6
def test_must_not_send_dsn_only_for_the_null_sender(sender: str, suppressed: bool) -> None:
    assert must_not_send_dsn(sender) is suppressed


# ---------------------------------------------------------------- xtext


# covers: TS-6
def test_xtext_known_values() -> None:
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    assert xtext_encode("é") == "+C3+A9"
    assert xtext_decode("a+2Bb+3Dc+20d") == "a+b=c d"
    assert xtext_decode("rfc822;x+40y") == "rfc822;x@y"
    assert xtext_decode("") == ""


@pytest.mark.parametrize(
    "bad",
    ["+", "ab+2", "+2b", "+ZZ", "+-1", "a b", "a=b", "é", "\x7f", "+FF", "x" * 1001],
)
# covers: TS-6
def test_xtext_decode_refuses_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        xtext_decode(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=60))
# covers: TS-6
def test_xtext_round_trip(value: str) -> None:
    encoded = xtext_encode(value)
    assert all(33 <= ord(c) <= 126 and c != "=" for c in encoded)
    assert xtext_decode(encoded) == value
