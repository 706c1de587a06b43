"""MSS-C automatic messages as bytes: returns, read receipts, test answer, notices.

Pure and sans-IO, deterministic given their arguments, CRLF lines, 7-bit
(French text travels quoted-printable). Policies decide *whether* to send;
these functions only build, with :mod:`smtp.dsn`'s assembly and sanitising so
there is one way to write a report. The wording is :mod:`policies.texts`.

Health data never leaves through here: no builder takes a subject or a body,
returns and receipts carry the original's header block only (never its body),
and the notification's only variable is the login URL. Every value that comes
from outside (addresses, Message-IDs, names) is cleaned so that it cannot add
a header line or a report field.
"""

from __future__ import annotations

from datetime import datetime
from email import policy as _policy
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime

from policies.texts import (
    DMP_NOTICE_SUBJECT,
    FROM_NAME,
    MDN_SUBJECT,
    NOTIFICATION_SUBJECT,
    RETURN_STATUS,
    TEST_ACK_SUBJECT,
    ReturnKind,
    acknowledgement_text,
    dmp_notice_text,
    mdn_text,
    notification_text,
    return_subject,
    return_text,
)
from smtp.dsn import (
    _TEXT_PART,
    RecipientStatus,
    Report,
    _address_field,
    _clean,
    _encoding,
    _field,
    _from_header,
    _mailbox,
    _message_id,
    _original_headers,
    _original_message_id,
    _qp,
    _report_body,
    _top_headers,
    _typed,
    build_dsn,
)

__all__ = [
    "MDN_DISPOSITION",
    "build_auto_return",
    "build_dmp_notice",
    "build_mdn",
    "build_notification",
    "build_test_ack",
    "mdn_body",
    "original_message_id",
]

MDN_DISPOSITION = "automatic-action/MDN-sent-automatically; displayed"
"""MSSC-MDN-1: the receipt goes out on first display and the patient cannot refuse it."""

_MB = 1024 * 1024  # the size caps are configured in bytes, 25 MB = 25 * 1024 * 1024


def original_message_id(headers: bytes) -> str | None:
    """The well-formed ``<id>`` of a message (or of its header block), else None."""
    return _original_message_id(_original_headers(headers))


def _header_value(headers: bytes, name: str) -> str | None:
    """One header of the original, UTF-8 decoded (bad bytes replaced), cleaned; None if absent.

    A sender wrote it, so the caller must still treat it as untrusted text.
    """
    text = headers.decode("utf-8", "replace")
    value = HeaderParser(policy=_policy.compat32).parsestr(text).get(name)
    cleaned = _clean(str(value)) if value is not None else ""
    return cleaned or None


def _sent_date(headers: bytes) -> datetime | None:
    """The original's Date when it parses."""
    value = _header_value(headers, "Date")
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# ---------------------------------------------------------------- returns (MSSC-RET-1)


def build_auto_return(
    kind: ReturnKind,
    *,
    original_headers: bytes,
    recipient: str,
    to: str,
    reporting_mta: str,
    from_address: str,
    arrival_date: datetime,
    now: datetime,
    message_id: str,
    size_limit: int | None = None,
    envelope_id: str | None = None,
) -> bytes:
    """An MSS-C automatic return: a failure DSN worded for people, French first.

    ``recipient`` is the address the original was for (the report's
    Final-Recipient), ``to`` who gets the return, ``from_address`` its sender.
    ``size_limit`` (bytes) is required for :attr:`ReturnKind.TOO_BIG`;
    ``envelope_id`` is the original's ENVID, returned as RFC 3461 asks.
    Only the original's header block is returned, even if a whole message is
    passed as ``original_headers``.
    """
    kind = ReturnKind(kind)
    limit_mb: int | None = None
    if kind is ReturnKind.TOO_BIG:
        if size_limit is None or size_limit <= 0:
            raise ValueError("a too_big return needs the size limit in bytes")
        limit_mb = size_limit // _MB
    report = Report(
        reporting_mta=reporting_mta,
        original_envelope_id=envelope_id,
        arrival_date=arrival_date,
        recipients=(RecipientStatus(recipient, "failed", RETURN_STATUS[kind]),),
        return_content="headers",
    )
    text = return_text(
        kind, recipient=_mailbox(recipient), received=arrival_date, limit_mb=limit_mb
    )
    return build_dsn(
        report,
        original=original_headers,
        sender=to,
        postmaster=from_address,
        now=now,
        message_id=message_id,
        human_text=text,
        subject=return_subject(kind),
        from_name=FROM_NAME,
    )


# ---------------------------------------------------------------- read receipt (MSSC-MDN-1)


def build_mdn(
    *,
    original_headers: bytes,
    patient_address: str,
    patient_display: str | None,
    to: str,
    reporting_ua: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """An RFC 8098 read receipt (``displayed``) from the patient's mailbox.

    Parts: bilingual text (never the original's subject), the
    ``message/disposition-notification`` fields, the original's header block.
    ``now`` is when the patient displayed the message.
    """
    headers = _original_headers(original_headers)
    original_id = _original_message_id(headers)
    patient = _mailbox(patient_address)
    human = _qp(mdn_text(patient=patient, sent=_sent_date(headers), displayed=now))

    mid = _message_id(message_id, "build_mdn")
    head = _top_headers(
        from_=_from_header(patient_display or "", patient_address),
        to=to,
        subject=MDN_SUBJECT,
        now=now,
        message_id=mid,
        in_reply_to=original_id,
        auto_submitted="auto-replied",
    )
    return head + mdn_body(
        headers,
        human=human,
        reporting_ua=reporting_ua,
        final_recipient=patient,
        disposition=MDN_DISPOSITION,
        seed=f"{mid}|{now.isoformat()}",
    )


def mdn_body(
    headers: bytes,
    *,
    human: bytes,
    reporting_ua: str,
    final_recipient: str,
    disposition: str,
    seed: str,
) -> bytes:
    """The body of an RFC 8098 report (read receipt, bridge acknowledgement): the
    encoded ``human`` text, the ``message/disposition-notification`` fields, then
    the original's header block ``headers`` (already trimmed by ``_original_headers``)."""
    ua_name = _clean(reporting_ua, 255).replace(";", "")
    fields = [_field("Reporting-UA", f"{ua_name}; mssante")]
    original_rcpt = _header_value(headers, "Original-Recipient")
    if original_rcpt is not None:
        fields.append(_field("Original-Recipient", _typed(original_rcpt, "rfc822")))
    fields.append(_address_field("Final-Recipient", final_recipient))
    original_id = _original_message_id(headers)
    if original_id is not None:
        fields.append(_field("Original-Message-ID", original_id))
    fields.append(_field("Disposition", disposition))
    notification = ("\r\n".join(fields) + "\r\n").encode("ascii")
    headers_cte = _encoding(headers)
    parts = [
        (_TEXT_PART, human),
        (b"Content-Type: message/disposition-notification\r\n"
         b"Content-Transfer-Encoding: 7bit\r\n", notification),
        (b"Content-Type: text/rfc822-headers\r\n"
         b"Content-Transfer-Encoding: " + headers_cte.encode() + b"\r\n", headers),
    ]  # fmt: skip
    return _report_body(
        "disposition-notification",
        parts,
        seed=seed,
        cte=headers_cte,
        preamble="This is a MIME-formatted message disposition notification.",
    )


# ---------------------------------------------------------------- plain messages


def _text_message(head: bytes, text: str) -> bytes:
    """Top headers, then one quoted-printable UTF-8 text body."""
    return head + _TEXT_PART + b"\r\n" + _qp(text)


def build_test_ack(
    *,
    original_headers: bytes,
    from_address: str,
    to: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """The predefined answer of ``reponse.automatique-test@<patient domain>`` (MSSC-TEST-1)."""
    head = _top_headers(
        from_=_from_header(FROM_NAME, from_address),
        to=to,
        subject=TEST_ACK_SUBJECT,
        now=now,
        message_id=_message_id(message_id, "build_test_ack"),
        in_reply_to=original_message_id(original_headers),
        auto_submitted="auto-replied",
    )
    return _text_message(head, acknowledgement_text(received=now))


def build_notification(
    *,
    from_address: str,
    to: str,
    url: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """The generic new-message notice to a patient's personal e-mail (MSSC-NOTIF-1).

    Fixed subject and text; the login ``url`` (operator configuration, an
    ``http(s)`` address without spaces) is the only variable.
    """
    link = _clean(url, 500)
    if not link.startswith(("https://", "http://")) or any(c.isspace() for c in link):
        raise ValueError(f"notification url must be an http(s) address: {link!r}")
    return _generic_notice(
        from_address, to, NOTIFICATION_SUBJECT, notification_text(url=link), now, message_id
    )


def build_dmp_notice(*, from_address: str, to: str, now: datetime, message_id: str) -> bytes:
    """The generic Y-5 notice to a patient's MSS-C mailbox: a document was added to
    their record (see :func:`policies.texts.dmp_notice_text`).

    Fixed subject and text: nothing about the document or the patient reaches it.
    """
    return _generic_notice(from_address, to, DMP_NOTICE_SUBJECT, dmp_notice_text(), now, message_id)


def _generic_notice(
    from_address: str, to: str, subject: str, text: str, now: datetime, message_id: str
) -> bytes:
    """A fixed notice about nothing in particular: auto-generated, answering no message."""
    head = _top_headers(
        from_=_from_header(FROM_NAME, from_address),
        to=to,
        subject=subject,
        now=now,
        message_id=_message_id(message_id, "notice"),
        in_reply_to=None,
        auto_submitted="auto-generated",
    )
    return _text_message(head, text)
