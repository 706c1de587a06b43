"""Reading the messages the server writes back with the stdlib email parser (not a test module).

DSNs, automatic returns and read receipts are ``multipart/report`` (RFC 6522):
a human part, a machine part of field blocks, and the original's headers.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(raw: bytes) -> list[EmailMessage]:
    return list(parse(raw).iter_parts())  # type: ignore[arg-type]


def fields(raw: bytes) -> list[EmailMessage]:
    """The field blocks of the second (machine) part."""
    payload = parts(raw)[1].get_payload()
    assert isinstance(payload, list)
    return [block for block in payload if isinstance(block, EmailMessage)]


def raw_part(raw: bytes, index: int) -> bytes:
    """The exact bytes of part ``index``, cut from the wire form between boundaries."""
    boundary = parse(raw).get_boundary()
    assert boundary
    chunk = raw.split(b"\r\n--" + boundary.encode())[index + 1]
    return chunk[2:].split(b"\r\n\r\n", 1)[1]


def assert_crlf(raw: bytes) -> None:
    assert not re.search(rb"(?<!\r)\n", raw), "bare LF"
    assert not re.search(rb"\r(?!\n)", raw), "bare CR"


def assert_report(raw: bytes, report_type: str, machine_type: str) -> EmailMessage:
    """A ``multipart/report`` of three parts, marked automatic; returns the parsed message."""
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == report_type
    assert [p.get_content_type() for p in parts(raw)] == [
        "text/plain",
        machine_type,
        "text/rfc822-headers",
    ]
    assert msg["MIME-Version"] == "1.0"
    assert msg["Auto-Submitted"] == "auto-replied"
    return msg
