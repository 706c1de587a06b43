"""Modified UTF-7 mailbox names (RFC 3501 §5.1.3), for clients that did not ENABLE UTF8=ACCEPT.

Printable ASCII stands for itself, ``&`` is written ``&-``, and every other run
of characters is UTF-16BE in base64 (``,`` for ``/``, no padding) between ``&``
and ``-``. The encoding is unique, and :func:`decode` accepts only that unique
form: a name with two spellings could make two mailboxes that look the same,
or slip past a check done on the other spelling.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["decode", "encode"]

_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_SHIFTED = re.compile(r"[A-Za-z0-9+,]*")


def encode(name: str) -> str:
    """The wire form of ``name``; ``ValueError`` if it holds a lone surrogate."""
    out: list[str] = []
    pos = 0
    while pos < len(name):
        m = _PRINTABLE.match(name, pos)
        if m is not None:
            out.append(m.group().replace("&", "&-"))
            pos = m.end()
            continue
        end = _PRINTABLE.search(name, pos)
        stop = end.start() if end is not None else len(name)
        utf16 = name[pos:stop].encode("utf-16-be")  # UnicodeEncodeError on a lone surrogate
        out.append(
            "&" + base64.b64encode(utf16).decode("ascii").rstrip("=").replace("/", ",") + "-"
        )
        pos = stop
    return "".join(out)


def decode(wire: str) -> str:
    """The name ``wire`` stands for; ``ValueError`` unless ``wire`` is its canonical form."""
    out: list[str] = []
    pos = 0
    while pos < len(wire):
        m = _PRINTABLE.match(wire, pos)
        if m is None:
            raise ValueError(f"character {wire[pos]!r} outside printable ASCII")
        text = m.group()
        amp = text.find("&")
        if amp < 0:
            out.append(text)
            pos = m.end()
            continue
        out.append(text[:amp])
        pos += amp + 1
        shifted = _SHIFTED.match(wire, pos)
        assert shifted is not None  # the pattern matches the empty string
        pos = shifted.end()
        if wire[pos : pos + 1] != "-":
            raise ValueError("'&' not closed by '-' after modified base64")
        pos += 1
        out.append(_decode_run(shifted.group()) if shifted.group() else "&")
    name = "".join(out)
    if encode(name) != wire:
        # encoded printable ASCII, runs that should be one, non-zero padding bits
        raise ValueError("not the canonical modified UTF-7 form of the name")
    return name


def _decode_run(b64: str) -> str:
    try:
        utf16 = base64.b64decode(b64.replace(",", "/") + "=" * (-len(b64) % 4), validate=True)
    except binascii.Error:
        raise ValueError(f"bad modified base64 {b64!r}") from None
    try:
        return utf16.decode("utf-16-be")
    except UnicodeDecodeError:
        raise ValueError(f"{b64!r} is not UTF-16 (odd length or unpaired surrogate)") from None
