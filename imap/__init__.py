"""IMAP server (being built with the IMAP issue).

What will live here: a sans-IO IMAP4rev1/IMAP4rev2 parser and session state
machine, and the mailbox view over the shared mailbox index
(:mod:`mssante.index`), which is a cache: the stored message is the truth.

Built so far: :mod:`imap.grammar`, the command tokenizer (atoms, quoted
strings, literals ``{n}``/``{n+}``/``~{n}``, lists, bounded and resumable) and
the response serializer.
"""

from imap.grammar import (
    NEED_DATA,
    NIL,
    Adjacent,
    Atom,
    Command,
    CommandParser,
    Continuation,
    Event,
    Limits,
    ListValue,
    LiteralFile,
    NeedContinuation,
    NeedData,
    Nil,
    Number,
    ParseError,
    Response,
    SequenceSet,
    String,
    Tagged,
    Untagged,
    Value,
    adjacent,
    as_astring,
    as_sequence_set,
    encode_value,
    parse_response_line,
    serialize,
)

__all__ = [
    "NEED_DATA",
    "NIL",
    "Adjacent",
    "Atom",
    "Command",
    "CommandParser",
    "Continuation",
    "Event",
    "Limits",
    "ListValue",
    "LiteralFile",
    "NeedContinuation",
    "NeedData",
    "Nil",
    "Number",
    "ParseError",
    "Response",
    "SequenceSet",
    "String",
    "Tagged",
    "Untagged",
    "Value",
    "adjacent",
    "as_astring",
    "as_sequence_set",
    "encode_value",
    "parse_response_line",
    "serialize",
]
