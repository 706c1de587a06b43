"""FETCH: what the client asked for, and the data items of one message's answer.

:func:`parse_fetch` reads the attribute list (macros, ``BODY[section]<partial>``,
``BINARY``, CONDSTORE's ``CHANGEDSINCE``, QRESYNC's ``VANISHED``) into a
:class:`FetchRequest` that also says what it costs: flags and UIDs come from
the session's view, sizes and dates from the index row, ENVELOPE and
BODYSTRUCTURE from the structure cached in the index, and only sections read
the message itself. :func:`message_items` builds the data items.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from imap import mime
from imap.grammar import (
    Atom,
    ListValue,
    Number,
    ParseError,
    String,
    Value,
)

__all__ = [
    "FetchItem",
    "FetchRequest",
    "MessageData",
    "add_flags",
    "apply_partial",
    "internal_date_text",
    "message_items",
    "parse_fetch",
]

_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE = {
    "FLAGS",
    "UID",
    "MODSEQ",
    "INTERNALDATE",
    "RFC822.SIZE",
    "ENVELOPE",
    "BODY",
    "BODYSTRUCTURE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.TEXT",
}
_SECTIONED = re.compile(
    r"(BODY|BODY\.PEEK|BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([^\]]*)\](?:<([0-9]+)(?:\.([0-9]+))?>)?\Z",
    re.IGNORECASE | re.DOTALL,
)
_PART = re.compile(r"(?:[1-9][0-9]*(?:\.[1-9][0-9]*)*)?\Z")


@dataclass(frozen=True, slots=True)
class FetchItem:
    name: str  # FLAGS, UID, ..., or BODY / BINARY / BINARY.SIZE for a section
    section: str | None = None  # the text between the brackets
    partial: tuple[int, int | None] | None = None
    peek: bool = False


@dataclass(frozen=True, slots=True)
class FetchRequest:
    items: tuple[FetchItem, ...]
    changed_since: int | None = None
    vanished: bool = False

    def wants(self, name: str) -> bool:
        return any(i.name == name for i in self.items)

    @property
    def needs_row(self) -> bool:
        """Anything the session's view (flags, UID, MODSEQ) cannot answer."""
        return any(i.name not in {"FLAGS", "UID", "MODSEQ"} for i in self.items)

    @property
    def needs_structure(self) -> bool:
        return any(i.name in {"ENVELOPE", "BODY", "BODYSTRUCTURE"} for i in self.items)

    @property
    def needs_bytes(self) -> bool:
        return any(
            i.section is not None or i.name in {"RFC822", "RFC822.HEADER", "RFC822.TEXT"}
            for i in self.items
        )

    @property
    def sets_seen(self) -> bool:
        """Reading a body (not PEEK, not the header alone) marks the message \\Seen."""
        return any(
            (i.section is not None and not i.peek and i.name != "BINARY.SIZE")
            or i.name in {"RFC822", "RFC822.TEXT"}
            for i in self.items
        )


def _item(value: Value) -> FetchItem:
    if not isinstance(value, Atom):
        raise ParseError(None, None, "invalid fetch attribute")
    text = value.value
    upper = text.upper()
    if upper in _SIMPLE:
        return FetchItem(upper)
    m = _SECTIONED.match(text)
    if m is None:
        raise ParseError(None, None, f"unknown fetch attribute {text[:40]}")
    kind, section, origin, length = m.groups()
    kind = kind.upper()
    if kind.startswith("BINARY"):
        if not _PART.match(section):
            raise ParseError(None, None, "BINARY takes a part number only")
        if kind == "BINARY.SIZE" and origin is not None:
            raise ParseError(None, None, "BINARY.SIZE takes no partial range")
    else:
        mime.parse_section(section)  # raises ParseError on bad syntax
    if origin is not None and length is None:
        raise ParseError(None, None, "a partial range needs a length: <origin.length>")
    partial = None if origin is None else (int(origin), int(length))
    return FetchItem(
        kind.replace(".PEEK", ""),
        section,
        partial,
        peek=kind.endswith(".PEEK"),
    )


def parse_fetch(
    attributes: Value, modifiers: Value | None, *, uid: bool, qresync: bool
) -> FetchRequest:
    """The attribute argument and the optional modifier list (RFC 4466)."""
    if isinstance(attributes, Atom) and attributes.value.upper() in _MACROS:
        items = [FetchItem(n) for n in _MACROS[attributes.value.upper()]]
    elif isinstance(attributes, ListValue):
        if not attributes.items:
            raise ParseError(None, None, "empty fetch attribute list")
        items = [_item(v) for v in attributes.items]
    else:
        items = [_item(attributes)]
    changed_since, vanished = None, False
    if modifiers is not None:
        if not isinstance(modifiers, ListValue):
            raise ParseError(None, None, "fetch modifiers must be a list")
        words = list(modifiers.items)
        while words:
            word = words.pop(0)
            name = word.value.upper() if isinstance(word, Atom) else ""
            following = words[0] if words else None
            if name == "CHANGEDSINCE" and isinstance(following, Number):
                changed_since = following.value
                words.pop(0)
            elif name == "VANISHED" and uid and qresync:
                vanished = True
            else:
                raise ParseError(None, None, "unknown fetch modifier")
        if vanished and changed_since is None:
            raise ParseError(None, None, "VANISHED needs CHANGEDSINCE")
    if uid and not any(i.name == "UID" for i in items):
        items.insert(0, FetchItem("UID"))
    if changed_since is not None and not any(i.name == "MODSEQ" for i in items):
        items.append(FetchItem("MODSEQ"))
    return FetchRequest(tuple(items), changed_since, vanished)


def add_flags(request: FetchRequest) -> FetchRequest:
    """The request plus FLAGS: a FETCH that just set \\Seen shows the new flags with it."""
    if request.wants("FLAGS"):
        return request
    return replace(request, items=(*request.items, FetchItem("FLAGS")))


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def internal_date_text(when: datetime) -> str:
    """``dd-Mon-yyyy hh:mm:ss +zzzz`` in the date's own offset (UTC for ours)."""
    offset = when.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return (
        f"{when.day:02d}-{_MONTHS[when.month - 1]}-{when.year:04d} "
        f"{when:%H:%M:%S} {sign}{minutes // 60:02d}{minutes % 60:02d}"
    )


def apply_partial(data: bytes, partial: tuple[int, int | None] | None) -> bytes:
    """``<origin.length>`` of FETCH and ``;partial=`` of IMAP URLs (RFC 5092)."""
    if partial is None:
        return data
    origin, length = partial
    return data[origin:] if length is None else data[origin : origin + length]


def _label(item: FetchItem) -> str:
    origin = f"<{item.partial[0]}>" if item.partial is not None else ""
    return f"{item.name}[{item.section}]{origin}"


@dataclass(frozen=True, slots=True)
class MessageData:
    """One message as FETCH sees it; ``data``/``root`` are loaded only when needed."""

    uid: int
    flags: ListValue
    modseq: int
    size: int
    internal_date: datetime
    root: mime.Part | None
    data: Callable[[], bytes]


def message_items(request: FetchRequest, msg: MessageData) -> tuple[Value, ...]:
    """The ``(item value item value …)`` of one FETCH response, in the requested order.

    Raises :class:`imap.mime.MimeError` for a BINARY of an undecodable part
    (the command then fails with ``NO [UNKNOWN-CTE]``).
    """
    out: list[Value] = []
    for item in request.items:
        name = item.name
        if name == "UID":
            out += [Atom("UID"), Number(msg.uid)]
        elif name == "FLAGS":
            out += [Atom("FLAGS"), msg.flags]
        elif name == "MODSEQ":
            out += [Atom("MODSEQ"), ListValue((Number(msg.modseq),))]
        elif name == "INTERNALDATE":
            out += [Atom("INTERNALDATE"), String(internal_date_text(msg.internal_date).encode())]
        elif name == "RFC822.SIZE":
            out += [Atom("RFC822.SIZE"), Number(msg.size)]
        elif name == "ENVELOPE":
            assert msg.root is not None
            out += [Atom("ENVELOPE"), mime.envelope(msg.root)]
        elif name in {"BODY", "BODYSTRUCTURE"} and item.section is None:
            assert msg.root is not None
            out += [Atom(name), mime.body_structure(msg.root, extensible=name == "BODYSTRUCTURE")]
        elif name in {"RFC822", "RFC822.HEADER", "RFC822.TEXT"}:
            section = {"RFC822": "", "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[name]
            out += [Atom(name), _section(msg, section)]
        elif name == "BODY":
            assert item.section is not None
            out += [
                Atom(_label(item)),
                _literal(apply_partial(_raw(msg, item.section), item.partial)),
            ]
        else:
            assert item.section is not None and msg.root is not None
            path = tuple(int(n) for n in item.section.split(".")) if item.section else ()
            decoded = mime.binary_section(msg.data(), msg.root, path)
            if name == "BINARY.SIZE":
                out += [Atom(f"BINARY.SIZE[{item.section}]"), Number(len(decoded))]
            else:
                chunk = apply_partial(decoded, item.partial)
                out += [Atom(_label(item)), String(chunk, binary=b"\x00" in chunk)]
    return tuple(out)


def _raw(msg: MessageData, section: str) -> bytes:
    assert msg.root is not None
    return mime.section_bytes(msg.data(), msg.root, mime.parse_section(section))


def _section(msg: MessageData, section: str) -> Value:
    return _literal(_raw(msg, section))


def _literal(data: bytes) -> Value:
    """Message bytes always go as a literal, as clients expect for body parts."""
    return String(data, literal=True)
