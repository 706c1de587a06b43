# covers: MSSC-ATT-1
"""policies.attachments: what a patient may attach, judged on MIME structure and magic bytes."""

from __future__ import annotations

import base64
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.attachments import (
    ALLOWED_KINDS,
    ATTACHED_MESSAGE,
    BAD_ENCODING,
    DUPLICATE_HEADERS,
    EMPTY,
    MALFORMED_MULTIPART,
    MISMATCH,
    NOT_ALLOWED,
    TOO_DEEP,
    TOO_MANY_PARTS,
    AttachmentProblem,
    check_patient_attachments,
)

# A file name that is health data: it must never show up in a reason.
SECRET_NAME = "Compte-rendu VIH Dupont Jeanne"

PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(64)
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02"
TIFF_LE = b"II*\x00\x08\x00\x00\x00" + bytes(32)
TIFF_BE = b"MM\x00*\x00\x00\x00\x08" + bytes(32)
RTF = b"{\\rtf1\\ansi\\deff0 {\\fonttbl {\\f0 Times;}} Bonjour \\'e9t\\'e9 }"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(64)
DOCX = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + bytes(64)


def message(*attachments: tuple[bytes, str, str], text: str = "Bonjour docteur") -> bytes:
    """A patient's message: body text then (data, content type, file name) attachments."""
    msg = EmailMessage()
    msg["From"] = "patient@patient.mssante.fr"
    msg["To"] = "dr@hopital.mssante.fr"
    msg["Subject"] = "Résultats"
    msg.set_content(text)
    for data, ctype, name in attachments:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return msg.as_bytes()


def check(raw: bytes, **bounds: int) -> list[AttachmentProblem]:
    problems = check_patient_attachments(raw, **bounds)
    for problem in problems:
        assert SECRET_NAME.lower() not in problem.reason.lower()
        assert "vih" not in problem.reason.lower()
    return problems


def reasons(raw: bytes, **bounds: int) -> list[str]:
    return [p.reason for p in check(raw, **bounds)]


# --- accepted --------------------------------------------------------------------------


def test_the_five_kinds_are_described() -> None:
    assert [k.name for k in ALLOWED_KINDS] == ["pdf", "jpeg", "png", "tiff", "rtf"]


@pytest.mark.parametrize(
    ("data", "ctype", "suffix"),
    [
        (PDF, "application/pdf", ".pdf"),
        (JPEG, "image/jpeg", ".jpg"),
        (JPEG, "image/jpg", ".jpeg"),
        (JPEG, "image/pjpeg", ".jpg"),
        (PNG, "image/png", ".png"),
        (TIFF_LE, "image/tiff", ".tif"),
        (TIFF_BE, "image/tiff", ".tiff"),
        (RTF, "application/rtf", ".rtf"),
        (RTF, "text/rtf", ".rtf"),
    ],
)
def test_each_allowed_kind_is_accepted(data: bytes, ctype: str, suffix: str) -> None:
    assert check(message((data, ctype, SECRET_NAME + suffix))) == []


@pytest.mark.parametrize("data", [PDF, JPEG, PNG, TIFF_LE, TIFF_BE, RTF])
def test_octet_stream_is_accepted_when_the_bytes_are_an_allowed_kind(data: bytes) -> None:
    assert check(message((data, "application/octet-stream", SECRET_NAME))) == []


def test_several_allowed_attachments_are_accepted() -> None:
    raw = message((PDF, "application/pdf", "a.pdf"), (PNG, "image/png", "b.png"))
    assert check(raw) == []


def test_plain_text_message_without_attachment_is_accepted() -> None:
    assert check(message()) == []
    assert check(b"From: p@patient.mssante.fr\r\nSubject: hi\r\n\r\nBonjour\r\n") == []


def test_alternative_text_and_html_is_accepted() -> None:
    msg = EmailMessage()
    msg.set_content("Bonjour")
    msg.add_alternative("<p>Bonjour</p>", subtype="html")
    assert check(msg.as_bytes()) == []


def test_png_inside_related_inside_mixed_is_accepted() -> None:
    msg = EmailMessage()
    msg.set_content("Bonjour")
    msg.add_alternative('<p>Bonjour <img src="cid:scan"></p>', subtype="html")
    parts = msg.get_payload()
    assert isinstance(parts, list)
    html = parts[1]
    assert isinstance(html, EmailMessage)
    html.add_related(PNG, maintype="image", subtype="png", cid="<scan>")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="a.pdf")
    raw = msg.as_bytes()
    assert b"multipart/related" in raw
    assert b"multipart/mixed" in raw
    assert check(raw) == []


def test_quoted_printable_rtf_is_accepted() -> None:
    msg = EmailMessage()
    msg.set_content("Bonjour")
    msg.add_attachment(
        RTF + b" caf\xe9", maintype="text", subtype="rtf", filename="a.rtf", cte="quoted-printable"
    )
    raw = msg.as_bytes()
    assert b"quoted-printable" in raw
    assert check(raw) == []


def test_qp_escaped_magic_is_decoded() -> None:
    raw = (
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"=25=50DF-1.4=\r\n\r\nrest\r\n"
    )
    assert check(raw) == []


@pytest.mark.parametrize("encoding", [b"7bit", b"8bit", b"binary", b"BASE64"])
def test_bare_attachment_as_whole_message(encoding: bytes) -> None:
    body = base64.encodebytes(PDF) if encoding == b"BASE64" else PDF
    raw = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: " + encoding
    assert check(raw + b"\r\n\r\n" + body) == []
    exe = base64.encodebytes(EXE) if encoding == b"BASE64" else EXE
    assert reasons(raw + b"\r\n\r\n" + exe) == [MISMATCH]


def test_eight_bit_magic_survives_a_charset_parameter() -> None:
    # get_payload() would re-decode these bytes with the charset (or raise on an RFC 2231 one)
    for param in (b'; charset="utf-8"', b"; charset*=utf-8''x"):
        raw = b"Content-Type: image/jpeg" + param + b"\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        assert check(raw + JPEG) == []
        assert reasons(raw + b"\x80" + EXE) == [MISMATCH]


def test_base64_with_odd_whitespace_and_short_payload() -> None:
    encoded = base64.b64encode(PDF)
    spaced = b"\r\n".join(encoded[i : i + 5] for i in range(0, len(encoded), 5))
    head = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    assert check(head + b"  \r\n\t" + spaced) == []
    assert check(head + base64.b64encode(b"%PDF-")) == []  # padded, shorter than 64 chars


# --- refused ---------------------------------------------------------------------------


def test_executable_renamed_pdf_is_refused() -> None:
    (problem,) = check(message((EXE, "application/pdf", SECRET_NAME + ".pdf")))
    assert problem == AttachmentProblem(2, "application/pdf", None, MISMATCH)


def test_executable_as_octet_stream_is_refused() -> None:
    assert reasons(message((EXE, "application/octet-stream", "setup.exe"))) == [NOT_ALLOWED]


def test_docx_is_refused() -> None:
    ctype = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    (problem,) = check(message((DOCX, ctype, SECRET_NAME + ".docx")))
    assert problem.reason == NOT_ALLOWED
    assert problem.detected is None
    assert all(k.label in problem.reason for k in ALLOWED_KINDS)


def test_docx_declared_as_pdf_is_refused() -> None:
    assert reasons(message((DOCX, "application/pdf", "a.pdf"))) == [MISMATCH]


def test_allowed_bytes_under_another_declared_type_are_refused() -> None:
    (problem,) = check(message((PDF, "image/png", "a.png")))
    assert (problem.detected, problem.reason) == ("pdf", MISMATCH)
    (problem,) = check(message((PNG, "application/zip", "a.zip")))
    assert (problem.detected, problem.reason) == ("png", MISMATCH)


def test_text_attachment_with_a_file_name_is_refused() -> None:
    msg = EmailMessage()
    msg.set_content("Bonjour")
    msg.add_attachment("notes", filename=SECRET_NAME + ".txt")
    (problem,) = check(msg.as_bytes())
    assert (problem.index, problem.declared_type, problem.reason) == (2, "text/plain", NOT_ALLOWED)


def test_text_with_name_parameter_or_attachment_disposition_is_an_attachment() -> None:
    named = b'Content-Type: text/html; name="x.html"\r\n\r\n<p>hi</p>\r\n'
    assert reasons(named) == [NOT_ALLOWED]
    disposed = b"Content-Type: text/plain\r\nContent-Disposition: attachment\r\n\r\nhi\r\n"
    assert reasons(disposed) == [NOT_ALLOWED]
    inline = b"Content-Type: text/plain\r\nContent-Disposition: inline\r\n\r\nhi\r\n"
    assert reasons(inline) == []


def test_garbled_content_type_is_not_body_text() -> None:
    # compat32 reads it as text/plain; it is still not the message text
    raw = b"Content-Type: application-x-msdownload\r\n\r\n" + EXE
    (problem,) = check(raw)
    assert (problem.declared_type, problem.reason) == ("text/plain", NOT_ALLOWED)


def test_attached_message_is_refused() -> None:
    inner = EmailMessage()
    inner["Subject"] = "fwd"
    inner.set_content("inner")
    msg = EmailMessage()
    msg.set_content("Bonjour")
    msg.add_attachment(inner)
    (problem,) = check(msg.as_bytes())
    assert (problem.index, problem.declared_type, problem.reason) == (
        2,
        "message/rfc822",
        ATTACHED_MESSAGE,
    )


def test_digest_parts_are_attached_messages() -> None:
    raw = (
        b"Content-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n\r\n"
        b"Subject: x\r\n\r\nhi\r\n--b--\r\n"
    )
    assert reasons(raw) == [ATTACHED_MESSAGE]


def test_empty_attachment_is_refused() -> None:
    assert reasons(message((b"", "application/pdf", "a.pdf"))) == [EMPTY]


@pytest.mark.parametrize("encoding", [b"x-uuencode", b"base65", b"7bit; junk"])
def test_unknown_transfer_encoding_is_refused(encoding: bytes) -> None:
    raw = b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: " + encoding
    assert reasons(raw + b"\r\n\r\n" + PDF) == [BAD_ENCODING]


def test_unknown_transfer_encoding_on_body_text_is_refused() -> None:
    raw = b"Content-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nhi\r\n"
    assert reasons(raw) == [BAD_ENCODING]


def test_encoded_multipart_is_refused() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n"
    )
    assert check(raw) == [AttachmentProblem(0, "multipart/mixed", None, BAD_ENCODING)]


def test_duplicate_content_type_is_refused() -> None:
    raw = b"Content-Type: text/plain\r\nContent-Type: application/x-msdownload\r\n\r\n" + EXE
    assert reasons(raw) == [DUPLICATE_HEADERS]


@pytest.mark.parametrize(
    "raw",
    [
        b"Content-Type: multipart/mixed\r\n\r\n" + EXE,  # no boundary
        b"Content-Type: multipart/mixed; boundary=zz\r\n\r\n" + EXE,  # boundary never found
    ],
)
def test_multipart_the_parser_cannot_split_is_refused(raw: bytes) -> None:
    assert reasons(raw) == [MALFORMED_MULTIPART]


def test_every_bad_part_is_reported_with_its_leaf_number() -> None:
    raw = message(
        (PDF, "application/pdf", "ok.pdf"),
        (EXE, "application/pdf", "bad.pdf"),
        (PNG, "image/png", "ok.png"),
        (DOCX, "application/msword", "bad.doc"),
    )
    assert [(p.index, p.reason) for p in check(raw)] == [(3, MISMATCH), (5, NOT_ALLOWED)]


# --- bounds ----------------------------------------------------------------------------


def nested(levels: int) -> bytes:
    opening = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(levels)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(levels)))
    return opening + b"Content-Type: application/pdf\r\n\r\n" + PDF + closing


def test_depth_bound() -> None:
    assert check(nested(20)) == []
    assert check(nested(21)) == [AttachmentProblem(0, "", None, TOO_DEEP)]
    assert check(nested(3), max_depth=2) == [AttachmentProblem(0, "", None, TOO_DEEP)]


def test_nesting_past_the_parser_stack_is_too_deep_not_an_error() -> None:
    # the stdlib parser recurses per level; a deep enough message raises RecursionError
    assert reasons(nested(5000), max_parts=10**6) == [TOO_DEEP]


def test_many_declared_containers_are_refused_before_parsing() -> None:
    assert reasons(nested(5000)) == [TOO_MANY_PARTS]
    forwarded = b"Content-Type: message/rfc822\r\n\r\n" * 300 + b"hi\r\n"
    assert reasons(forwarded) == [TOO_MANY_PARTS]
    assert reasons(forwarded, max_parts=10**6) == [ATTACHED_MESSAGE]
    very_deep = b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"hi\r\n"
    assert reasons(very_deep, max_parts=10**6) == [TOO_DEEP]


def test_part_count_bound() -> None:
    raw = message(*((PNG, "image/png", f"{i}.png") for i in range(10)))  # 12 entities
    assert check(raw, max_parts=12) == []
    assert check(raw, max_parts=11) == [AttachmentProblem(0, "", None, TOO_MANY_PARTS)]
    bad = message(*((EXE, "image/png", f"{i}.png") for i in range(300)))
    assert reasons(bad) == [TOO_MANY_PARTS]  # a single problem, not 300


# --- hostile input ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n--\r\n",
        b"Content-Type: ;;;===\r\nContent-Disposition: attachment; filename*=bogus''%ff%zz\r\n\r\n",
        b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\n--a\r\n--a--\r\n",
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!!=\r\n",
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\nA\r\n",
        b"Content-Type: image/png\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=Z",
        b'Content-Type: multipart/mixed; boundary="\xff\xfe"\r\n\r\n--\xff\xfe\r\n\xff: \xfe\r\n',
        b"From nobody\r\n\tfolded\r\nX: \r\n\r\n\r\n",
        b"Content-Type: image/png; name*0=a; name*1*=''%e9\r\n\r\n\x89PNG\r\n\x1a\n",
    ],
)
def test_junk_does_not_raise(raw: bytes) -> None:
    problems = check(raw)
    assert all(isinstance(p, AttachmentProblem) for p in problems)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    check(raw)


_FRAGMENTS = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: multipart/digest; boundary=c\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: application/pdf\r\n",
        b"Content-Type: text/plain; name=x\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment; filename*=utf-8''%C3%A9\r\n",
        b"\r\n",
        b"--b\r\n",
        b"--b--\r\n",
        b"--c\r\n",
        b"JVBERi0xLjQK\r\n",
        b"%PDF-1.4\r\n",
        b"=25PDF=\r\n",
        b"MZ\x90\x00\r\n",
    ]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_FRAGMENTS | st.binary(max_size=20), max_size=40).map(b"".join))
def test_mime_shaped_junk_never_raises(raw: bytes) -> None:
    check(raw, max_depth=4, max_parts=20)
