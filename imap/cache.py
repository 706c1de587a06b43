"""What the index caches about a message for IMAP, computed once from its bytes.

The message (the blob) is the truth; these columns of ``mailbox_messages``
are a cache of it, like Dovecot's ``dovecot.index.cache``, so that the big
questions over a whole mailbox never open a message:

* ``structure``: the parsed MIME structure (:class:`imap.mime.Part` as JSON),
  for BODYSTRUCTURE and sections;
* ``envelope``: the ENVELOPE exactly as it goes on the wire, so ``FETCH 1:*
  (ENVELOPE)`` is a column read and a concatenation;
* ``subject``: the Subject values, unfolded and RFC 2047 decoded, each
  preceded by ``\\n`` (``""``: no Subject field), for SEARCH SUBJECT.

They are written together: with the row by APPEND (and copied by COPY/MOVE),
or, for a row without them (a delivery, a row older than the cache), by the
first FETCH or SEARCH that needs them, in bulk and in the background. NULL
always means "not computed yet", never "empty". Nothing here depends on the
session (UTF8=ACCEPT does not change an ENVELOPE: its strings are the raw
header bytes).
"""

from __future__ import annotations

from typing import Any

from imap.grammar import encode_value
from imap.mime import Part, envelope, header_values, parse_message
from imap.state import structure_json

__all__ = ["COLUMNS", "columns", "envelope_bytes", "join_subject", "split_subject"]

#: The cache columns, all NULL until computed.
COLUMNS = ("structure", "envelope", "subject")


def envelope_bytes(root: Part) -> bytes:
    return encode_value(envelope(root))


def join_subject(values: list[str]) -> str:
    # Unfolded values hold no line break, so "\n" separates them unambiguously.
    return "".join("\n" + v.replace("\n", " ") for v in values)


def split_subject(text: str) -> list[str]:
    return text.split("\n")[1:]


def columns(data: bytes, root: Part | None = None) -> dict[str, Any]:
    """The cache columns of one message (``root``: its parse, when the caller has it)."""
    if root is None:
        root = parse_message(data)
    return {
        "structure": structure_json(root),
        "envelope": envelope_bytes(root),
        "subject": join_subject(header_values(data, root, "Subject")),
    }
