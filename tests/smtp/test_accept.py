# covers: TS-1
"""The spool's pure helpers: where headers end, and fields left out of a stored message."""

from __future__ import annotations

from smtp.accept import drop_fields, header_end

BLOCK = (
    b"Received: from x\r\n\tby y; date\r\n"
    b"Authentication-Results: mx.b.test; dkim=pass\r\n\theader.d=a.test\r\n"
    b"Subject: hello\r\n"
    b"Authentication-Results: other.example; spf=pass\r\n"
    b"\r\n"
)


def forged(field: bytes) -> bool:
    return field.lower().startswith(b"authentication-results: mx.b.test")


def test_header_end() -> None:
    assert header_end(b"\r\nbody") == 2
    assert header_end(b"A: b\r\n\r\nbody") == 8
    assert header_end(b"A: b\r\n") == -1


def test_drop_fields_removes_whole_folded_fields_only() -> None:
    assert drop_fields(BLOCK, forged) == (
        b"Received: from x\r\n\tby y; date\r\n"
        b"Subject: hello\r\n"
        b"Authentication-Results: other.example; spf=pass\r\n"
        b"\r\n"
    )


def test_drop_nothing_is_byte_exact() -> None:
    assert drop_fields(BLOCK, lambda field: False) == BLOCK
