"""MIME structure of one stored message, for IMAP FETCH, SEARCH and SORT; pure and bounded.

:func:`parse_message` splits the raw RFC 5322 bytes once into a tree of frozen
:class:`Part` records. A part holds byte offsets into the message (where its
header starts, where its body starts and ends; the header always ends where the
body starts) plus everything BODYSTRUCTURE and ENVELOPE need, already parsed:
content type, parameters, transfer encoding, disposition, and the envelope
(field values and address lists) of the top-level and every embedded
message. The tree converts
to and from a compact JSON dict (:meth:`Part.to_json`), so the server caches it
and answers ENVELOPE/BODYSTRUCTURE without reading the message again. Only
:func:`section_bytes`, :func:`binary_section`, :func:`header_values` and
:func:`text_content` look at the bytes, and only at the offsets the tree names.

The splitting follows Dovecot's message parser, the reference of the imaptest
conformance corpus: a boundary line is ``--boundary`` at the start of a line,
matched by prefix against every enclosing multipart's boundary (the longest
wins) and the line break before it belongs to the boundary; a boundary line
also ends a header that has no blank line; a part without Content-Type (or in
a message with neither Content-Type nor MIME-Version) is text/plain, or
message/rfc822 inside multipart/digest. Missing close delimiters, bodies
without their boundary, odd parameter quoting and bare LF are all read the way
Dovecot reads them, and addresses it cannot parse come out as Dovecot renders
them (``MISSING_MAILBOX``, ``MISSING_DOMAIN``, ``SYNTAX_ERROR``,
``INVALID_ROUTE``). RFC 2231 parameter continuations are joined and extended
values left encoded (``name*`` = ``charset'lang'%xx``), as Dovecot does.

Nothing here raises on message bytes (only :class:`MimeError` where a BINARY
fetch cannot decode), and every walk is bounded: :data:`MAX_DEPTH` levels of
nesting, :data:`MAX_PARTS` parts per message, :data:`MAX_ADDRESSES` addresses
and :data:`MAX_ADDRESS_FIELD` bytes per address field; past a bound the rest
is kept as opaque bytes. Boundary lines and header fields are found with
regular expressions, so crafted input costs no Python loop per line. Byte
strings travel in the tree as latin-1 ``str`` so that JSON carries them
unchanged; header values keep their 8-bit bytes and RFC 2047 words as they
are (RFC 3501), with line breaks removed and NUL made 0x80.
"""

from __future__ import annotations

import binascii
import codecs
import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from imap.grammar import NIL, ListValue, Number, ParseError, String, Value, adjacent

__all__ = [
    "MAX_ADDRESSES",
    "MAX_ADDRESS_FIELD",
    "MAX_DEPTH",
    "MAX_PARTS",
    "Envelope",
    "MimeError",
    "Part",
    "SectionSpec",
    "binary_section",
    "body_structure",
    "envelope",
    "header_values",
    "parse_message",
    "parse_section",
    "section_bytes",
    "text_content",
]

MAX_DEPTH = 32  # nesting of multiparts and embedded messages
MAX_PARTS = 2000  # parts per message, embedded messages included
MAX_ADDRESSES = 2000  # addresses (and group markers) per header field
MAX_ADDRESS_FIELD = 64 * 1024  # bytes of an address field ENVELOPE reads


class MimeError(Exception):
    """A BINARY fetch cannot decode the part; ``code`` is the IMAP response code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# --- the tree ------------------------------------------------------------------------


Address = tuple[str | None, str | None, str | None, str | None]  # name, route, mailbox, host
Addresses = tuple[Address, ...]


class Envelope(NamedTuple):
    """An ENVELOPE, parsed once: unfolded field values (latin-1) and address lists.

    None is NIL: a field that is absent, or an address list with no address.
    A group is ``(None, None, name, None)``, its members, then all-None.
    """

    date: str | None = None
    subject: str | None = None
    from_: Addresses | None = None
    sender: Addresses | None = None
    reply_to: Addresses | None = None
    to: Addresses | None = None
    cc: Addresses | None = None
    bcc: Addresses | None = None
    in_reply_to: str | None = None
    message_id: str | None = None

    def to_json(self) -> list[Any]:
        return [
            value if value is None or isinstance(value, str) else [list(a) for a in value]
            for value in self
        ]

    @classmethod
    def from_json(cls, obj: Any) -> Envelope:
        date, subject, from_, sender, reply_to, to, cc, bcc, in_reply_to, message_id = _list(
            obj, 10
        )
        return cls(
            _opt_str(date),
            _opt_str(subject),
            _addresses(from_),
            _addresses(sender),
            _addresses(reply_to),
            _addresses(to),
            _addresses(cc),
            _addresses(bcc),
            _opt_str(in_reply_to),
            _opt_str(message_id),
        )


Params = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity; offsets index the message bytes, strings are latin-1.

    ``type`` is None when the part has no usable Content-Type (text/plain
    defaults apply, or message/rfc822 under multipart/digest). ``message`` is
    the embedded message of a message/rfc822 part, ``envelope`` is set on the
    top-level message and on every embedded one, ``lines`` is counted for
    text and message/rfc822 parts only.
    """

    header_start: int
    body_start: int
    body_end: int
    type: str | None = None
    subtype: str = ""
    params: Params = ()
    id: str | None = None
    description: str | None = None
    encoding: str | None = None
    md5: str | None = None
    disposition: str | None = None
    disposition_params: Params = ()
    language: tuple[str, ...] = ()
    location: str | None = None
    lines: int = 0
    children: tuple[Part, ...] = ()
    message: Part | None = None
    envelope: Envelope | None = None

    @property
    def is_multipart(self) -> bool:
        return self.type is not None and self.type.lower() == "multipart"

    @property
    def is_text(self) -> bool:
        """Text parts carry a line count and default to charset us-ascii."""
        if self.message is not None:
            return False
        return self.type is None or self.type.lower() == "text"

    def param(self, name: str) -> str | None:
        """First Content-Type parameter of that name (case-insensitive)."""
        for key, value in self.params:
            if key.lower() == name.lower():
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        """A compact JSON-compatible dict; fields at their default are left out.

        Keys: ``o`` offsets, ``t`` [type, subtype], ``p`` params, ``i`` id,
        ``d`` description, ``c`` encoding, ``m`` md5, ``D`` [disposition,
        params], ``L`` languages, ``l`` location, ``n`` lines, ``k`` children,
        ``r`` embedded message, ``v`` envelope (addresses as 4-item lists).
        """
        out: dict[str, Any] = {"o": [self.header_start, self.body_start, self.body_end]}
        if self.type is not None:
            out["t"] = [self.type, self.subtype]
        if self.params:
            out["p"] = [list(pair) for pair in self.params]
        for key, text in _JSON_TEXTS:
            value = getattr(self, text)
            if value is not None:
                out[key] = value
        if self.disposition is not None:
            out["D"] = [self.disposition, [list(pair) for pair in self.disposition_params]]
        if self.language:
            out["L"] = list(self.language)
        if self.lines:
            out["n"] = self.lines
        if self.children:
            out["k"] = [child.to_json() for child in self.children]
        if self.message is not None:
            out["r"] = self.message.to_json()
        if self.envelope is not None:
            out["v"] = self.envelope.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Part:
        """Rebuild a part from :meth:`to_json`; raises ValueError on anything else."""
        if not isinstance(obj, Mapping):
            raise ValueError("a part must be a JSON object")
        header_start, body_start, body_end = (_int(value) for value in _list(obj.get("o"), 3))
        kind = ["", ""] if obj.get("t") is None else _list(obj["t"], 2)
        disposition = [None, []] if obj.get("D") is None else _list(obj["D"], 2)
        envelope = obj.get("v")
        message = obj.get("r")
        return cls(
            header_start,
            body_start,
            body_end,
            type=None if obj.get("t") is None else _str(kind[0]),
            subtype=_str(kind[1]),
            params=_pairs(obj.get("p", [])),
            disposition=_opt_str(disposition[0]),
            disposition_params=_pairs(disposition[1]),
            language=tuple(_str(item) for item in _list(obj.get("L", []))),
            lines=_int(obj.get("n", 0)),
            children=tuple(cls.from_json(child) for child in _list(obj.get("k", []))),
            message=None if message is None else cls.from_json(message),
            envelope=None if envelope is None else Envelope.from_json(envelope),
            id=_opt_str(obj.get("i")),
            description=_opt_str(obj.get("d")),
            encoding=_opt_str(obj.get("c")),
            md5=_opt_str(obj.get("m")),
            location=_opt_str(obj.get("l")),
        )


_JSON_TEXTS = (
    ("i", "id"),
    ("d", "description"),
    ("c", "encoding"),
    ("m", "md5"),
    ("l", "location"),
)


def _list(value: Any, size: int | None = None) -> list[Any]:
    if not isinstance(value, list) or (size is not None and len(value) != size):
        raise ValueError("expected a JSON list")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a JSON string")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError("expected a non-negative integer")
    return value


def _addresses(value: Any) -> Addresses | None:
    if value is None:
        return None
    out: list[Address] = []
    for item in _list(value):
        name, route, mailbox, host = map(_opt_str, _list(item, 4))
        out.append((name, route, mailbox, host))
    return tuple(out)


def _pairs(value: Any) -> Params:
    out: list[tuple[str, str]] = []
    for pair in _list(value):
        key, text = _list(pair, 2)
        out.append((_str(key), _str(text)))
    return tuple(out)


# --- header fields -------------------------------------------------------------------

# one field: its first line and the continuation lines that start with SP or TAB
_FIELD = re.compile(rb"[^\n]*(?:\n[ \t][^\n]*)*\n?")
_BLANK_LINE = re.compile(rb"\n\r?\n")
_NEWLINE = re.compile(rb"\r?\n")


class _Field(NamedTuple):
    name: bytes  # upper-cased; the whole first line when there is no colon
    start: int
    end: int  # just after the field's last line break
    value: bytes  # unfolded, leading blanks removed, NUL made 0x80


def _field_at(data: bytes, pos: int, end: int) -> _Field | None:
    """The field whose first line starts at ``pos``; None for the blank line (or nothing)."""
    match = _FIELD.match(data, pos, end)
    stop = match.end() if match else end
    raw = data[pos:stop]
    first_line = raw.find(b"\n")
    colon = raw.find(b":", 0, len(raw) if first_line < 0 else first_line)
    if colon >= 0:
        value = _NEWLINE.sub(b"", raw[colon + 1 :]).lstrip(b" \t").replace(b"\0", b"\x80")
        return _Field(raw[:colon].rstrip(b" \t").upper(), pos, stop, value)
    if raw.strip(b"\r\n"):
        return _Field(raw.rstrip(b"\r\n").upper(), pos, stop, b"")
    return None


def _fields(data: bytes, start: int, end: int) -> Iterator[_Field]:
    """Every header field in ``data[start:end]``, skipping the blank line that ends them."""
    pos = start
    while pos < end:
        item = _field_at(data, pos, end)
        if item is None:
            return
        yield item
        pos = item.end


def _name_pattern(names: Iterable[bytes]) -> re.Pattern[bytes]:
    """Matches the start of a field with one of these names (continuations start blank)."""
    alternatives = b"|".join(re.escape(name) for name in names)
    return re.compile(rb"^(?:" + alternatives + rb")[ \t]*:", re.IGNORECASE | re.MULTILINE)


def _named_fields(data: bytes, start: int, end: int, names: Iterable[bytes]) -> Iterator[_Field]:
    """The fields with these names, in order, found without walking the others."""
    names = list(names)
    if not names:
        return
    for match in _name_pattern(names).finditer(data, start, end):
        item = _field_at(data, match.start(), end)
        if item is not None:
            yield item


_ENVELOPE_FIELDS = (
    b"DATE",
    b"SUBJECT",
    b"FROM",
    b"SENDER",
    b"REPLY-TO",
    b"TO",
    b"CC",
    b"BCC",
    b"IN-REPLY-TO",
    b"MESSAGE-ID",
)
_MIME_FIELDS = (
    b"MIME-VERSION",
    b"CONTENT-TYPE",
    b"CONTENT-TRANSFER-ENCODING",
    b"CONTENT-ID",
    b"CONTENT-DESCRIPTION",
    b"CONTENT-DISPOSITION",
    b"CONTENT-LANGUAGE",
    b"CONTENT-LOCATION",
    b"CONTENT-MD5",
)
_WANTED = _ENVELOPE_FIELDS + _MIME_FIELDS
_WANTED_FIELD = _name_pattern(_WANTED)


def _first_values(data: bytes, start: int, end: int) -> dict[bytes, bytes]:
    """First value of each field we use: duplicates after the first are ignored."""
    values: dict[bytes, bytes] = {}
    for match in _WANTED_FIELD.finditer(data, start, end):
        item = _field_at(data, match.start(), end)
        if item is not None and item.name not in values:
            values[item.name] = item.value
            if len(values) == len(_WANTED):
                break
    return values


def _latin1(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


# --- RFC 822 tokens ------------------------------------------------------------------

_ATEXT_CHARS = rb"A-Za-z0-9!#$%&'*+\-/=?^_`{|}~\x80-\xff"
_ATEXT = frozenset(
    b"!#$%&'*+-/=?^_`{|}~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    + bytes(range(128, 256))
)
_ATEXT_RUN = re.compile(rb"[" + _ATEXT_CHARS + rb"]*")
_ATOM_OR_DOT_RUN = re.compile(rb"[" + _ATEXT_CHARS + rb".]*")
_TOKEN_RUN = re.compile(rb"[A-Za-z0-9!#$%&'*+\-^_`{|}~.\x80-\xff]*")  # MIME token: no / = ?
_BLANKS_RUN = re.compile(rb"[ \t\r\n]*")
_COMMENT_RUN = re.compile(rb"[^()\\]*")
_QUOTED_RUN = re.compile(rb'[^"\n\\]*')
_LITERAL_RUN = re.compile(rb"[^\]\\]*")
_RAW_VALUE_RUN = re.compile(rb"[^; \t\r\n]*")
_MAX_ITEMS = 1000  # parameters or languages per header field
_DQUOTE, _LPAREN, _RPAREN, _BACKSLASH, _DOT, _SLASH = 0x22, 0x28, 0x29, 0x5C, 0x2E, 0x2F
_COMMA, _COLON, _SEMICOLON, _LT, _EQUALS, _GT = 0x2C, 0x3A, 0x3B, 0x3C, 0x3D, 0x3E
_AT, _LBRACKET, _RBRACKET = 0x40, 0x5B, 0x5D


def _end(pattern: re.Pattern[bytes], data: bytes, pos: int) -> int:
    match = pattern.match(data, pos)
    return match.end() if match else pos


class _Lexer:
    """RFC 822 tokens over one header value, with Dovecot's leniency.

    Methods return 1 when input follows, 0 at the end and -1 on malformed
    input: the address parser branches on exactly these, which is what makes
    invalid addresses come out as Dovecot renders them. ``comment`` keeps the
    text of the last comment skipped (the display name of ``a@b (Name)``).
    """

    __slots__ = ("comment", "data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.comment = bytearray()

    def more(self) -> int:
        return 1 if self.pos < len(self.data) else 0

    def peek(self) -> int:
        """The next byte, or 0 at the end (NUL never occurs: values map it to 0x80)."""
        return self.data[self.pos] if self.pos < len(self.data) else 0

    def skip(self) -> int:
        """Skip blanks, line breaks and comments."""
        while True:
            self.pos = _end(_BLANKS_RUN, self.data, self.pos)
            if self.peek() != _LPAREN:
                return self.more()
            if not self._comment():
                return -1

    def _comment(self) -> bool:
        data, level = self.data, 1
        self.comment.clear()
        pos = start = self.pos + 1
        while True:
            pos = _end(_COMMENT_RUN, data, pos)
            if pos >= len(data):
                break
            c = data[pos]
            if c == _LPAREN:
                level += 1
            elif c == _RPAREN:
                level -= 1
                if level == 0:
                    self.comment += data[start:pos]
                    self.pos = pos + 1
                    return True
            else:  # a backslash quotes the next byte
                self.comment += data[start:pos]
                start = pos + 1
                pos += 1
            pos += 1
        self.pos = len(data)
        return False

    def run(self, pattern: re.Pattern[bytes], out: bytearray) -> int:
        """A run of bytes (maybe empty), then blanks and comments unless at the end."""
        end = _end(pattern, self.data, self.pos)
        out += self.data[self.pos : end]
        self.pos = end
        return self.skip() if end < len(self.data) else 0

    def atom(self, out: bytearray) -> int:
        if self.peek() not in _ATEXT:
            return -1
        return self.run(_ATEXT_RUN, out)

    def dot_atom(self, out: bytearray) -> int:
        """atext runs joined by dots, blanks allowed around the dots (RFC 822)."""
        if self.peek() not in _ATEXT:
            return -1
        while True:
            end = _end(_ATEXT_RUN, self.data, self.pos)
            out += self.data[self.pos : end]
            self.pos = end
            if end >= len(self.data):
                return 0
            ret = self.skip()
            if ret <= 0:
                return ret
            if self.peek() != _DOT:
                return 1
            self.pos += 1
            out += b"."
            ret = self.skip()
            if ret <= 0:
                return ret

    def quoted(self, out: bytearray) -> int:
        """A quoted string: escapes removed, folding line breaks dropped."""
        data = self.data
        pos = start = self.pos + 1
        while True:
            pos = _end(_QUOTED_RUN, data, pos)
            if pos >= len(data):
                break
            c = data[pos]
            if c == _DQUOTE:
                out += data[start:pos]
                self.pos = pos + 1
                return self.skip()
            if c == _BACKSLASH:
                out += data[start:pos]
                start = pos + 1
                pos += 1
                if pos >= len(data):
                    break
            else:
                out += data[start : pos - 1] if data[pos - 1 : pos] == b"\r" else data[start:pos]
                start = pos + 1
            pos += 1
        self.pos = len(data)
        return -1

    def phrase(self, out: bytearray) -> int:
        """Words (atoms, dots, quoted strings) joined by one space."""
        if not self.more():
            return 0
        if self.peek() == _DOT:
            return -1
        while True:
            ret = self.quoted(out) if self.peek() == _DQUOTE else self.run(_ATOM_OR_DOT_RUN, out)
            if ret <= 0:
                return ret
            c = self.peek()
            if c not in _ATEXT and c not in (_DQUOTE, _DOT):
                return self.skip()
            out += b" "

    def domain(self, out: bytearray) -> int:
        """``@`` then a dot-atom or a domain literal."""
        self.pos += 1
        if self.skip() <= 0:
            return -1
        if self.peek() != _LBRACKET:
            return self.dot_atom(out)
        data, pos, start = self.data, self.pos + 1, self.pos
        while True:
            pos = _end(_LITERAL_RUN, data, pos)
            if pos >= len(data):
                break
            if data[pos] == _RBRACKET:
                out += data[start : pos + 1]
                self.pos = pos + 1
                return self.skip()
            pos += 2
        self.pos = len(data)
        return -1


# --- MIME header values --------------------------------------------------------------


def _content_type(value: bytes) -> tuple[str, str, Params] | None:
    """type, subtype and parameters; None when unusable (RFC 2045: text/plain then)."""
    lex = _Lexer(value)
    lex.skip()
    main = bytearray()
    lex.run(_TOKEN_RUN, main)
    if not main or lex.peek() != _SLASH:
        return None
    lex.pos += 1
    lex.skip()
    sub = bytearray()
    lex.run(_TOKEN_RUN, sub)
    if not sub:
        return None
    return main.decode("latin-1"), sub.decode("latin-1"), _params(lex)


def _transfer_encoding(value: bytes) -> str | None:
    """A single token, or None (then 7bit) when there is anything else."""
    lex = _Lexer(value)
    lex.skip()
    token = bytearray()
    if lex.run(_TOKEN_RUN, token) < 0 or lex.skip() != 0 or not token:
        return None
    return token.decode("latin-1")


def _disposition(value: bytes) -> tuple[str, Params] | None:
    lex = _Lexer(value)
    lex.skip()
    token = bytearray()
    if lex.run(_TOKEN_RUN, token) < 0:
        return None
    return token.decode("latin-1"), _params(lex)


def _languages(value: bytes) -> tuple[str, ...]:
    lex = _Lexer(value)
    lex.skip()
    out: list[str] = []
    while len(out) < _MAX_ITEMS:
        tag = bytearray()
        if lex.atom(tag) < 0:
            break
        out.append(tag.decode("latin-1"))
        if lex.peek() != _COMMA:
            break
        lex.pos += 1
        lex.skip()
    return tuple(out)


def _param(lex: _Lexer) -> tuple[bytes, bytes] | int:
    """``; key=value``: the pair, or 0 at the end, -1 when malformed."""
    if not lex.more():
        return 0
    if lex.peek() != _SEMICOLON:
        return -1
    lex.pos += 1
    if lex.skip() <= 0:
        return -1
    key, value = bytearray(), bytearray()
    if lex.run(_TOKEN_RUN, key) <= 0 or lex.peek() != _EQUALS:
        return -1
    lex.pos += 1
    ret = lex.skip()
    if ret > 0:  # else no value
        if lex.peek() == _DQUOTE:
            ret = lex.quoted(value)
        elif lex.peek() == _EQUALS:  # an unquoted encoded word: name==?utf-8?b?...?=
            ret = lex.run(_RAW_VALUE_RUN, value)
        else:
            ret = lex.run(_TOKEN_RUN, value)
    return -1 if ret < 0 else (bytes(key), bytes(value))


class _Continuation(NamedTuple):
    key: bytes
    number: int
    extended: bool
    value: bytes


_SECTION_KEY = re.compile(rb"([^*]*)\*([0-9]{0,9})(\*?)\Z")


def _params(lex: _Lexer) -> Params:
    """Parameters, RFC 2231 sections joined after the plain ones (as Dovecot)."""
    plain: list[tuple[bytes, bytes]] = []
    sections: list[_Continuation] = []
    while len(plain) + len(sections) < _MAX_ITEMS:
        item = _param(lex)
        if item == 0:
            break
        if isinstance(item, int):  # malformed: go on from the next ";"
            lex.pos = lex.data.find(b";", lex.pos)
            if lex.pos < 0:
                break
            continue
        key, value = item
        match = _SECTION_KEY.match(key)
        if match is None:
            plain.append((key, value))
        else:
            number, star = match.group(2), match.group(3)
            extended = bool(star) or not number  # "name*" is "name*0*"
            sections.append(_Continuation(match.group(1), int(number or b"0"), extended, value))
    out = plain + _join_sections(sections)
    return tuple((key.decode("latin-1"), value.decode("latin-1")) for key, value in out)


def _join_sections(sections: list[_Continuation]) -> list[tuple[bytes, bytes]]:
    """``name*0*``, ``name*1``... to one ``name*`` value; left apart if any is missing."""
    sections.sort(key=lambda s: (s.key, s.number))
    out: list[tuple[bytes, bytes]] = []
    i = 0
    while i < len(sections):
        j = i
        while j < len(sections) and sections[j].key.lower() == sections[i].key.lower():
            j += 1
        group = sections[i:j]
        extended = any(s.extended for s in group)
        if any(s.number != n for n, s in enumerate(group)):
            for s in group:
                out.append((b"%s*%d%s" % (s.key, s.number, b"*" if s.extended else b""), s.value))
        else:
            value = b"''" if extended and not group[0].extended else b""
            for s in group:
                plain_in_extended = extended and not s.extended
                value += s.value.replace(b"%", b"%25") if plain_in_extended else s.value
            out.append((group[0].key + (b"*" if extended else b""), value))
        i = j
    return out


# --- addresses -----------------------------------------------------------------------


@dataclass(slots=True)
class _Address:
    name: bytes | None = None
    route: bytes | None = None
    mailbox: bytes | None = None
    domain: bytes | None = None
    invalid: bool = False  # an addr-spec that did not parse


class _AddressParser:
    """RFC 5322 address-list with obsolete forms, read the way Dovecot reads it.

    A group is its start marker (only ``mailbox`` set: the group name), its
    members, then an end marker with every field None.
    """

    def __init__(self, value: bytes) -> None:
        self.lex = _Lexer(value)
        self.addr = _Address()
        self.out: list[_Address] = []

    def full(self) -> bool:
        return len(self.out) >= MAX_ADDRESSES

    def add(self) -> None:
        self.out.append(self.addr)
        self.addr = _Address()

    def add_fixed(self) -> None:
        """Fill what is missing so that the address cannot look like a group marker."""
        if self.addr.mailbox is None:
            self.addr.mailbox = b"MISSING_MAILBOX"
        if not self.addr.domain:
            self.addr.domain = b"MISSING_DOMAIN"
        self.add()

    def parse(self) -> list[_Address]:
        lex = self.lex
        if lex.skip() <= 0:
            return []
        while not self.full():
            if self.address() == 0 or lex.peek() != _COMMA:
                break
            lex.pos += 1
            ret = lex.skip()
            if ret <= 0:
                if ret < 0:  # ends with garbage
                    self.add_fixed()
                break
        return self.out

    def address(self) -> int:
        start = self.lex.pos
        ret = self.group()
        if ret < 0:
            self.lex.pos = start
            ret = self.mailbox()
        return ret

    def group(self) -> int:
        lex, name = self.lex, bytearray()
        if lex.phrase(name) <= 0 or lex.peek() != _COLON:
            return -1
        lex.pos += 1
        ret = lex.skip()
        self.addr.mailbox = bytes(name)
        self.add()
        if ret > 0 and lex.peek() != _SEMICOLON:
            while not self.full():
                self.mailbox()
                if lex.peek() != _COMMA:
                    break
                lex.pos += 1
                if lex.skip() <= 0:
                    ret = -1
                    break
        if ret >= 0:
            if lex.peek() != _SEMICOLON:
                ret = -1
            else:
                lex.pos += 1
                ret = lex.skip()
        self.add()
        return 0 if ret == 0 else 1

    def mailbox(self) -> int:
        start = self.lex.pos
        ret = self.name_addr()
        if ret < 0:
            self.lex.pos = start
            ret = self.addr_spec()
            addr = self.addr
            if addr.invalid and addr.name is None and addr.domain is None:
                addr.name, addr.mailbox = addr.mailbox, None
        self.add_fixed()
        return ret

    def name_addr(self) -> int:
        lex, name = self.lex, bytearray()
        if lex.phrase(name) <= 0 or lex.peek() != _LT:
            return -1
        self.addr.name = bytes(name) or None
        if self.angle_addr() < 0:
            self.addr.domain = b"SYNTAX_ERROR"
        return lex.more()

    def angle_addr(self) -> int:
        lex = self.lex
        lex.pos += 1
        if lex.skip() <= 0:
            return -1
        if lex.peek() == _AT:
            if self.route() > 0 and lex.peek() == _COLON:
                lex.pos += 1
            else:
                self.addr.route = b"INVALID_ROUTE"
                if not lex.more():
                    return -1
            if lex.skip() <= 0:
                return -1
        if lex.peek() != _GT:
            if self.local_part(bytearray()) <= 0:
                return -1
            if lex.peek() == _AT and self.domain() <= 0:
                return -1
        if lex.peek() != _GT:
            return -1
        lex.pos += 1
        return lex.skip()

    def route(self) -> int:
        lex, out = self.lex, bytearray()
        while True:
            if not lex.more():
                return 0
            if lex.peek() != _AT:
                break
            out += b",@" if out else b"@"
            ret = lex.domain(out)
            if ret <= 0:
                return ret
            while lex.skip() > 0 and lex.peek() == _COMMA:
                lex.pos += 1
        self.addr.route = bytes(out)
        return 1

    def local_part(self, out: bytearray) -> int:
        lex = self.lex
        ret = lex.quoted(out) if lex.peek() == _DQUOTE else lex.dot_atom(out)
        if ret < 0:
            return -1
        self.addr.mailbox = bytes(out)
        return ret

    def domain(self) -> int:
        out = bytearray()
        ret = self.lex.domain(out)
        if ret < 0:
            return -1
        self.addr.domain = bytes(out)
        return ret

    def addr_spec(self) -> int:
        """``local@domain``, or a bare word (mailbox) or words (display name)."""
        lex, text = self.lex, bytearray()
        lex.comment.clear()
        quoted = lex.peek() == _DQUOTE
        ret = self.local_part(text)
        if ret <= 0:
            self.addr.invalid = True
        ret2 = -2
        if ret != 0 and lex.peek() == _AT:
            ret2 = self.domain()
            if ret2 <= 0:
                ret = ret2
        if lex.comment:
            self.addr.name = bytes(lex.comment)
        elif ret2 == -2:
            text += b" "
            before = len(text)
            lex.phrase(text)
            if len(text) != before:
                self.addr.mailbox = None
                self.addr.name = bytes(text)
            elif not quoted:
                self.addr.domain = b""
            self.addr.invalid = True
            ret = -1
        return ret


_LINE_BREAKS = re.compile(rb"[\r\n]+")


def _for_humans(text: bytes) -> bytes:
    """Subjects and display names: unfolded, without blanks around (as Dovecot)."""
    return _LINE_BREAKS.sub(b"", text).strip(b" \t")


def _parse_addresses(value: bytes | None) -> Addresses | None:
    """An address field as ENVELOPE shows it; None (NIL) when it holds no address."""
    if value is None:
        return None
    parsed = _AddressParser(value[:MAX_ADDRESS_FIELD]).parse()
    return (
        tuple(
            (
                _latin1(None if a.name is None else _for_humans(a.name)),
                _latin1(a.route),
                _latin1(a.mailbox),
                _latin1(a.domain),
            )
            for a in parsed
        )
        or None
    )


# --- ENVELOPE and BODYSTRUCTURE ------------------------------------------------------


def _nstring(value: str | None) -> Value:
    return NIL if value is None else String(value.encode("latin-1"))


def envelope(part: Part) -> ListValue:
    """The ENVELOPE of the message ``part`` heads (the root, or an embedded message)."""
    env = part.envelope or Envelope()
    return ListValue(
        (
            _nstring(env.date),
            _nstring(env.subject),
            _address_list(env.from_),
            _address_list(env.sender or env.from_),  # RFC 3501: they default to From
            _address_list(env.reply_to or env.from_),
            _address_list(env.to),
            _address_list(env.cc),
            _address_list(env.bcc),
            _nstring(env.in_reply_to),
            _nstring(env.message_id),
        )
    )


def _address_list(addresses: Addresses | None) -> Value:
    if addresses is None:
        return NIL
    return ListValue((adjacent([ListValue(tuple(map(_nstring, a))) for a in addresses]),))


def body_structure(part: Part, extensible: bool = True) -> ListValue:
    """BODYSTRUCTURE (``extensible``) or BODY of a part, the root included."""
    if part.is_multipart:
        return ListValue(tuple(_multipart(part, extensible)))
    return ListValue(tuple(_single(part, extensible)))


def _multipart(part: Part, extensible: bool) -> Iterator[Value]:
    if part.children:  # the bodies back to back, no space (RFC 3501 body-type-mpart)
        yield adjacent([body_structure(child, extensible) for child in part.children])
    else:  # a multipart needs one body: Dovecot writes an empty text/plain
        yield body_structure(Part(0, 0, 0), extensible)
    yield String(part.subtype.encode("latin-1"))
    if extensible:
        yield _param_list(part.params, default_charset=False)
        yield from _extension(part)


def _single(part: Part, extensible: bool) -> Iterator[Value]:
    if part.message is not None:
        yield from (String(b"message"), String(b"rfc822"))
    elif part.type is None:
        yield from (String(b"text"), String(b"plain"))
    else:
        yield from (String(part.type.encode("latin-1")), String(part.subtype.encode("latin-1")))
    yield _param_list(part.params, default_charset=part.is_text)
    yield _nstring(part.id)
    yield _nstring(part.description)
    yield String((part.encoding or "7bit").encode("latin-1"))
    yield Number(part.body_end - part.body_start)
    if part.message is not None:
        yield envelope(part.message)
        yield body_structure(part.message, extensible)
    if part.is_text or part.message is not None:
        yield Number(part.lines)
    if extensible:
        yield _nstring(part.md5)
        yield from _extension(part)


def _extension(part: Part) -> Iterator[Value]:
    """Disposition, language and location, shared by every kind of part."""
    if part.disposition is None:
        yield NIL
    else:
        disposition = _param_list(part.disposition_params, default_charset=False)
        yield ListValue((String(part.disposition.encode("latin-1")), disposition))
    if part.language:
        yield ListValue(tuple(String(tag.encode("latin-1")) for tag in part.language))
    else:
        yield NIL
    yield _nstring(part.location)


def _param_list(params: Params, *, default_charset: bool) -> Value:
    items: list[Value] = []
    for key, value in params:
        items += (String(key.encode("latin-1")), String(value.encode("latin-1")))
    if default_charset and not any(key.lower() == "charset" for key, _ in params):
        items += (String(b"charset"), String(b"us-ascii"))
    return ListValue(tuple(items)) if items else NIL


# --- the parser ----------------------------------------------------------------------


class _Hit(NamedTuple):
    """A boundary line found while scanning."""

    cut: int  # where the content before it ends: its line break belongs to the boundary
    line_end: int  # just after the line (its LF), or the end of the message
    has_newline: bool
    level: int  # index of the matched boundary in the stack
    close: bool  # ``--boundary--``


class _Head(NamedTuple):
    fields_end: int
    body_start: int
    complete: bool  # ended by a blank line, not by a boundary or the end of the message
    hit: _Hit | None


@dataclass(slots=True)
class _Mime:
    """What the Content-* fields of one part say."""

    type: str | None = None
    subtype: str = ""
    params: Params = ()
    encoding: str | None = None
    id: str | None = None
    description: str | None = None
    md5: str | None = None
    location: str | None = None
    disposition: str | None = None
    disposition_params: Params = ()
    language: tuple[str, ...] = ()

    @property
    def boundary(self) -> bytes | None:
        """The boundary of a multipart; None without one (its body is then opaque)."""
        if self.type is None or self.type.lower() != "multipart":
            return None
        for key, value in self.params:
            if key.lower() == "boundary":
                return value.encode("latin-1") or None
        return None


def _mime(values: dict[bytes, bytes]) -> _Mime:
    info = _Mime()
    if b"CONTENT-TYPE" in values:
        kind = _content_type(values[b"CONTENT-TYPE"])
        if kind is not None:
            info.type, info.subtype, info.params = kind
    if b"CONTENT-TRANSFER-ENCODING" in values:
        info.encoding = _transfer_encoding(values[b"CONTENT-TRANSFER-ENCODING"])
    if b"CONTENT-DISPOSITION" in values:
        disposition = _disposition(values[b"CONTENT-DISPOSITION"])
        if disposition is not None:
            info.disposition, info.disposition_params = disposition
    if b"CONTENT-LANGUAGE" in values:
        info.language = _languages(values[b"CONTENT-LANGUAGE"])
    info.id = _latin1(values.get(b"CONTENT-ID"))
    info.description = _latin1(values.get(b"CONTENT-DESCRIPTION"))
    info.md5 = _latin1(values.get(b"CONTENT-MD5"))
    info.location = _latin1(values.get(b"CONTENT-LOCATION"))
    return info


class _Parser:
    """Splits one message; ``stack`` holds the boundaries of the enclosing multiparts."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.stack: list[bytes] = []
        self.patterns: tuple[re.Pattern[bytes], re.Pattern[bytes]] | None = None
        self.count = 0
        self.hit: _Hit | None = None  # the boundary line that ended the last entity

    def push(self, boundary: bytes) -> None:
        self.stack.append(boundary)
        self.patterns = _boundary_patterns(self.stack)

    def pop(self) -> None:
        self.stack.pop()
        self.patterns = _boundary_patterns(self.stack) if self.stack else None

    def boundary(self, pos: int, limit: int) -> _Hit | None:
        """The first boundary line starting in ``data[pos:limit]`` (``pos`` starts a line)."""
        if self.patterns is None:
            return None
        first_line, later_line = self.patterns
        if first_line.match(self.data, pos, limit):
            return self._match(pos, pos)
        match = later_line.search(self.data, pos, limit)
        return None if match is None else self._match(match.start() + 1, pos)

    def _match(self, start: int, pos: int) -> _Hit | None:
        """The boundary the line at ``start`` begins with: the longest, the innermost of equals."""
        data = self.data
        newline = data.find(b"\n", start)
        line_end = len(data) if newline < 0 else newline + 1
        level, size = -1, -1
        for i in range(len(self.stack) - 1, -1, -1):  # innermost first
            candidate = self.stack[i]
            if len(candidate) > size and data.startswith(candidate, start + 2, line_end):
                level, size = i, len(candidate)
        if level < 0:
            return None
        close = data.startswith(b"--", start + 2 + size, line_end)
        cut = start
        if start > pos:
            cut -= 2 if start - 2 >= pos and data[start - 2] == 0x0D else 1
        return _Hit(cut, line_end, newline >= 0, level, close)

    def head(self, start: int) -> _Head:
        """Where the header ends: a blank line, a boundary line or the end of the message."""
        data = self.data
        if data.startswith(b"\n", start) or data.startswith(b"\r\n", start):
            blank, body, complete = start, data.index(b"\n", start) + 1, True
        elif match := _BLANK_LINE.search(data, start):
            blank, body, complete = match.start() + 1, match.end(), True
        else:
            blank = body = len(data)
            complete = False
        hit = self.boundary(start, blank)
        if hit is not None:
            return _Head(hit.cut, hit.cut, False, hit)
        return _Head(blank, body, complete, None)

    def entity(self, start: int, depth: int, *, child: bool, digest: bool, top: bool) -> Part:
        """One part from ``start``: its header, then its body up to a boundary or the end.

        ``child`` marks a multipart member (always MIME), ``digest`` one of
        multipart/digest, ``top`` a message (the root or an embedded one).
        """
        self.count += 1
        head = self.head(start)
        self.hit = head.hit
        values = _first_values(self.data, start, head.fields_end)
        mime = child or b"MIME-VERSION" in values or b"CONTENT-TYPE" in values
        info = _mime(values) if mime else _Mime()
        rfc822 = (info.type is None and digest) or (
            info.type is not None and f"{info.type}/{info.subtype}".lower() == "message/rfc822"
        )
        if rfc822 and (depth >= MAX_DEPTH or self.count >= MAX_PARTS):
            info.type, info.subtype, info.params, rfc822 = None, "", (), False
        children: tuple[Part, ...] = ()
        message: Part | None = None
        body_end = head.body_start
        if rfc822:
            message = self.embedded(head, depth)
            body_end = message.body_end
        elif head.complete:
            boundary = info.boundary if depth < MAX_DEPTH else None
            if boundary is not None:
                children, body_end = self.multipart(head.body_start, boundary, depth, info)
            else:
                self.hit = self.boundary(head.body_start, len(self.data))
                body_end = len(self.data) if self.hit is None else self.hit.cut
        text = message is None and (info.type is None or info.type.lower() == "text")
        counted = message is not None or text
        return Part(
            start,
            head.body_start,
            body_end,
            type=info.type,
            subtype=info.subtype,
            params=info.params,
            id=info.id,
            description=info.description,
            encoding=info.encoding,
            md5=info.md5,
            disposition=info.disposition,
            disposition_params=info.disposition_params,
            language=info.language,
            location=info.location,
            lines=self.data.count(b"\n", head.body_start, body_end) if counted else 0,
            children=children,
            message=message,
            envelope=_envelope(values) if top else None,
        )

    def embedded(self, head: _Head, depth: int) -> Part:
        """The message inside a message/rfc822 part (empty if its header never ended)."""
        if head.complete:
            return self.entity(head.body_start, depth + 1, child=False, digest=False, top=True)
        self.count += 1
        at = head.body_start
        return Part(at, at, at, envelope=Envelope())

    def multipart(
        self, body_start: int, boundary: bytes, depth: int, info: _Mime
    ) -> tuple[tuple[Part, ...], int]:
        """Members up to the close delimiter, then the epilogue; returns where the body ends.

        Past :data:`MAX_PARTS` the rest of the body is opaque: it ends at the
        next boundary line of an enclosing multipart.
        """
        self.push(boundary)
        level = len(self.stack) - 1
        digest = info.subtype.lower() == "digest"
        children: list[Part] = []
        hit = self.boundary(body_start, len(self.data))
        while hit is not None and hit.level == level and not hit.close:
            if not hit.has_newline:  # ``--boundary`` as the last line: no member follows
                hit = None
                break
            if self.count >= MAX_PARTS:
                break
            member = self.entity(hit.line_end, depth + 1, child=True, digest=digest, top=False)
            children.append(member)
            hit = self.hit
        self.pop()
        if hit is not None and hit.level == level:  # the close delimiter, or the part limit
            hit = self.boundary(hit.line_end, len(self.data))
        self.hit = hit
        return tuple(children), len(self.data) if hit is None else hit.cut


def _boundary_patterns(stack: list[bytes]) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    """A line starting with any of the boundaries: at the scan's start, and after a LF.

    The second starts with a literal, which the regex engine finds as fast as
    ``bytes.find``; :meth:`_Parser._match` then picks the boundary.
    """
    alternatives = rb"--(?:" + b"|".join(re.escape(boundary) for boundary in set(stack)) + rb")"
    return re.compile(alternatives), re.compile(b"\n" + alternatives)


def _envelope(values: dict[bytes, bytes]) -> Envelope:
    subject = values.get(b"SUBJECT")
    return Envelope(
        date=_latin1(values.get(b"DATE")),
        subject=_latin1(None if subject is None else _for_humans(subject)),
        from_=_parse_addresses(values.get(b"FROM")),
        sender=_parse_addresses(values.get(b"SENDER")),
        reply_to=_parse_addresses(values.get(b"REPLY-TO")),
        to=_parse_addresses(values.get(b"TO")),
        cc=_parse_addresses(values.get(b"CC")),
        bcc=_parse_addresses(values.get(b"BCC")),
        in_reply_to=_latin1(values.get(b"IN-REPLY-TO")),
        message_id=_latin1(values.get(b"MESSAGE-ID")),
    )


def parse_message(data: bytes) -> Part:
    """The MIME tree of a whole message; never raises, whatever the bytes."""
    return _Parser(data).entity(0, 0, child=False, digest=False, top=True)


# --- BODY[section] -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SectionSpec:
    """The inside of ``BODY[...]``: a part number and what to take of it.

    ``text`` is ``""`` (the whole message, or a part's body), ``HEADER``,
    ``HEADER.FIELDS``, ``HEADER.FIELDS.NOT``, ``TEXT`` or ``MIME``;
    ``fields`` holds the upper-cased names of a HEADER.FIELDS list.
    """

    part: tuple[int, ...] = ()
    text: str = ""
    fields: tuple[str, ...] = ()


_PART_NUMBER = re.compile(r"[1-9][0-9]{0,9}(?:\.[1-9][0-9]{0,9})*")
_FIELDS_TEXT = re.compile(r"(HEADER\.FIELDS(?:\.NOT)?) \((.*)\)", re.IGNORECASE | re.DOTALL)
_FIELD_NAME = re.compile(r'"((?:[^"\\\r\n]|\\["\\])*)"|([^\x00-\x20\x7f(){%*"\\]+)')


def parse_section(text: str) -> SectionSpec:
    """Parse a section spec (RFC 9051 ``section-spec``); raises ParseError when invalid."""
    match = _PART_NUMBER.match(text)
    part = tuple(int(n) for n in match.group().split(".")) if match else ()
    rest = text[match.end() :] if match else text
    if part and rest:
        if not rest.startswith(".") or rest == ".":
            raise _bad_section()
        rest = rest[1:]
    keyword = rest.upper()
    if keyword == "" or keyword in ("HEADER", "TEXT") or (keyword == "MIME" and part):
        return SectionSpec(part, keyword)
    fields = _FIELDS_TEXT.fullmatch(rest)
    if fields is None:
        raise _bad_section()
    return SectionSpec(part, fields.group(1).upper(), _header_list(fields.group(2)))


def _header_list(text: str) -> tuple[str, ...]:
    """``header-fld-name *(SP header-fld-name)``, each an atom or a quoted string."""
    names: list[str] = []
    pos = 0
    while True:
        match = _FIELD_NAME.match(text, pos)
        if match is None:
            raise _bad_section()
        quoted = match.group(1)
        name = match.group(2) if quoted is None else re.sub(r"\\(.)", r"\1", quoted)
        names.append(name.upper())
        pos = match.end()
        if pos == len(text):
            return tuple(names)
        if text[pos] != " ":
            raise _bad_section()
        pos += 1


def _bad_section() -> ParseError:
    return ParseError(None, None, "invalid section")


def _find(root: Part, path: Sequence[int]) -> Part | None:
    """The part a section number names, as Dovecot resolves it.

    In a non-multipart only ``1`` exists (the body itself, so ``1.1`` of a
    text part is that part again), and a number after a message/rfc822 part
    goes on inside its embedded message.
    """
    part = root
    for i, number in enumerate(path):
        more = i + 1 < len(path)
        if part.is_multipart:
            if not 1 <= number <= len(part.children):
                return None
            part = part.children[number - 1]
        elif number != 1 or (more and part.message is None):
            return None
        if more and part.message is not None:
            part = part.message
    return part


def section_bytes(data: bytes, root: Part, spec: SectionSpec) -> bytes:
    """The exact bytes of ``BODY[spec]``; a part that does not exist gives ``b""``."""
    message = root
    if spec.part:
        part = _find(root, spec.part)
        if part is None:
            return b""
        if spec.text == "":
            return data[part.body_start : part.body_end]
        if spec.text == "MIME":
            return data[part.header_start : part.body_start]
        if part.message is None:  # HEADER and TEXT only exist for an embedded message
            return b""
        message = part.message
    if spec.text == "":
        return data[message.header_start : message.body_end]
    if spec.text == "HEADER":
        return data[message.header_start : message.body_start]
    if spec.text == "TEXT":
        return data[message.body_start : message.body_end]
    names = [name.encode("latin-1", "replace") for name in spec.fields]
    start, end = message.header_start, message.body_start
    if spec.text == "HEADER.FIELDS":
        chosen = _named_fields(data, start, end, names)
    else:
        unwanted = frozenset(name.upper() for name in names)
        chosen = (item for item in _fields(data, start, end) if item.name not in unwanted)
    out = bytearray()
    for item in chosen:
        out += data[item.start : item.end]
        if not out.endswith(b"\n"):
            out += b"\r\n"
    return bytes(out + b"\r\n")


# --- BINARY[section] -----------------------------------------------------------------

_IDENTITY_CTE = frozenset({"7bit", "8bit", "binary"})
_BASE64_NOISE = re.compile(rb"[^A-Za-z0-9+/=]+")
_BASE64_QUANTA = re.compile(rb"([A-Za-z0-9+/]*)=*")
_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def binary_section(data: bytes, root: Part, part_path: Sequence[int]) -> bytes:
    """``BINARY[part_path]``: the section with its content-transfer-encoding undone.

    An empty path is the whole message. Inside a multipart or an embedded
    message every base64 or quoted-printable part is decoded and its
    Content-Transfer-Encoding rewritten to binary, as Dovecot does. Raises
    MimeError("UNKNOWN-CTE") for an encoding it does not know or cannot decode.
    """
    if not part_path:
        return _binary_entity(data, root)
    part = _find(root, part_path)
    return b"" if part is None else _binary_body(data, part)


def _binary_entity(data: bytes, part: Part) -> bytes:
    header = data[part.header_start : part.body_start]
    if _converted(part):
        header = _binary_header(data, part)
    return header + _binary_body(data, part)


def _binary_body(data: bytes, part: Part) -> bytes:
    if part.message is not None:
        return _binary_entity(data, part.message)
    if not part.is_multipart:
        return _decode(data[part.body_start : part.body_end], part.encoding)
    out = bytearray()
    pos = part.body_start
    for child in part.children:
        out += data[pos : child.header_start] + _binary_entity(data, child)
        pos = child.body_end
    return bytes(out + data[pos : part.body_end])


def _converted(part: Part) -> bool:
    """A leaf whose body :func:`_decode` changes."""
    if part.message is not None or part.is_multipart or part.encoding is None:
        return False
    return part.encoding.lower() not in _IDENTITY_CTE


def _binary_header(data: bytes, part: Part) -> bytes:
    out = bytearray()
    replaced = False
    for item in _fields(data, part.header_start, part.body_start):
        if item.name == b"CONTENT-TRANSFER-ENCODING" and not replaced:
            out += b"Content-Transfer-Encoding: binary\r\n"
            replaced = True
        else:
            out += data[item.start : item.end]
    return bytes(out + data[part.body_start - _blank_size(data, part) : part.body_start])


def _blank_size(data: bytes, part: Part) -> int:
    """Size of the blank line that ends a part's header (0 if it has none)."""
    header = data[part.header_start : part.body_start]
    if header in (b"\r\n", b"\n"):
        return len(header)
    for end in (b"\n\r\n", b"\n\n"):
        if header.endswith(end):
            return len(end) - 1
    return 0


def _decode(body: bytes, encoding: str | None) -> bytes:
    """Undo a content-transfer-encoding; MimeError when unknown or undecodable."""
    cte = "7bit" if encoding is None else encoding.lower()
    if cte in _IDENTITY_CTE:
        return body
    if cte == "base64":
        return _base64(body)
    if cte == "quoted-printable":
        return _quoted_printable(body)
    raise MimeError("UNKNOWN-CTE")


def _base64(body: bytes) -> bytes:
    """RFC 2045 §6.8: bytes outside the alphabet are ignored; missing padding is tolerated."""
    out = bytearray()
    for match in _BASE64_QUANTA.finditer(_BASE64_NOISE.sub(b"", body)):
        chunk = match.group(1)
        if len(chunk) % 4 == 1:
            raise MimeError("UNKNOWN-CTE")
        if chunk:
            out += binascii.a2b_base64(chunk + b"=" * (-len(chunk) % 4))
    return bytes(out)


#: What binascii's decoder reads differently: blanks ending a line, a bare CR, "==" .
_QP_NOT_PLAIN = re.compile(rb"[ \t](?:\r?\n|\Z)|\r(?!\n)|==")


def _quoted_printable(body: bytes) -> bytes:
    """RFC 2045 §6.7: trailing blanks dropped, ``=`` ends a soft break; bad escapes kept."""
    if _QP_NOT_PLAIN.search(body) is None:
        return binascii.a2b_qp(body)  # the usual body, in C (a body search decodes GBs)
    return _quoted_printable_lines(body)


def _quoted_printable_lines(body: bytes) -> bytes:
    """:func:`_quoted_printable`, line by line: what the fast path must agree with."""
    out = bytearray()
    lines = body.split(b"\n")
    for i, line in enumerate(lines):
        newline = b"" if i == len(lines) - 1 else b"\n"
        if newline and line.endswith(b"\r"):
            line, newline = line[:-1], b"\r\n"
        line = line.rstrip(b" \t")
        if line.endswith(b"="):
            line, newline = line[:-1], b""
        out += _QP_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), line) + newline
    return bytes(out)


# --- text for SEARCH and SORT --------------------------------------------------------

# codecs that are no character sets, or cost far more than their input size
_UNSAFE_CODECS = frozenset(
    {"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape"}
)
_ENCODED_WORD = re.compile(
    r"=\?([A-Za-z0-9!#$%&'+\-^_`{|}~.]+)(?:\*[A-Za-z0-9\-]*)?\?([BbQq])\?([!->@-~]*)\?="
)


def _to_str(raw: bytes, charset: str | None) -> str:
    """Decode with a declared charset; anything unknown or wrong falls back to UTF-8."""
    if charset and len(charset) <= 64:
        try:
            if codecs.lookup(charset.strip()).name not in _UNSAFE_CODECS:
                return raw.decode(charset.strip())
        except (LookupError, UnicodeError, ValueError):
            pass
    return raw.decode("utf-8", "replace")


def _header_text(value: bytes) -> str:
    """A raw header value as text: UTF-8 (RFC 6532) if it is, else latin-1."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _word_bytes(match: re.Match[str]) -> bytes | None:
    """The bytes of one RFC 2047 encoded word, or None if it does not decode."""
    text = match.group(3).encode("ascii")
    if match.group(2) in "Qq":
        text = _QP_ESCAPE.sub(lambda m: bytes((int(m.group(1), 16),)), text.replace(b"_", b" "))
        return text
    try:
        return _base64(text)
    except MimeError:
        return None


def _decode_words(text: str) -> str:
    """RFC 2047: decode encoded words, dropping the blanks between adjacent ones."""
    out: list[str] = []
    run, run_charset = bytearray(), ""
    pos, after_word = 0, False
    for match in _ENCODED_WORD.finditer(text):
        raw = _word_bytes(match)
        gap = text[pos : match.start()]
        pos = match.end()
        adjacent = after_word and not gap.strip(" \t")
        if raw is None or not adjacent or match.group(1).lower() != run_charset:
            out.append(_to_str(bytes(run), run_charset))
            run = bytearray()
            if not adjacent:
                out.append(gap)
        if raw is None:
            out.append(match.group())
            after_word = False
            continue
        run += raw
        run_charset, after_word = match.group(1).lower(), True
    out.append(_to_str(bytes(run), run_charset))
    out.append(text[pos:])
    return "".join(out)


def header_values(data: bytes, root: Part, name: str) -> list[str]:
    """Every value of a top-level header field, unfolded and RFC 2047 decoded."""
    wanted = [name.encode("utf-8", "replace")]
    fields = _named_fields(data, root.header_start, root.body_start, wanted)
    return [_decode_words(_header_text(item.value)) for item in fields]


def text_content(data: bytes, root: Part) -> str:
    """All text/* bodies, transfer- and charset-decoded, one per line, for SEARCH."""
    return "\n".join(_texts(data, root))


def _texts(data: bytes, part: Part) -> Iterator[str]:
    if part.message is not None:
        yield from _texts(data, part.message)
    elif part.is_multipart:
        for child in part.children:
            yield from _texts(data, child)
    elif part.is_text:
        body = data[part.body_start : part.body_end]
        with contextlib.suppress(MimeError):  # searched as it is stored
            body = _decode(body, part.encoding)
        yield _to_str(body, part.param("charset"))


def _leaves(part: Part) -> Iterator[Part]:
    if part.children:
        for child in part.children:
            yield from _leaves(child)
    elif part.message is not None:
        yield from _leaves(part.message)
    else:
        yield part


def encode_binary_parts(data: bytes, root: Part) -> bytes:
    """The message with each ``binary`` leaf part re-encoded in base64.

    An APPEND of a literal8 (RFC 3516 §4.4) may carry raw binary parts; we store
    what every client can read, as Dovecot does, so ``BODY[n]`` never returns
    NULs while ``BINARY[n]`` still gives the original bytes back.
    """
    edits: list[tuple[int, int, bytes]] = []
    for part in _leaves(root):
        if (part.encoding or "").lower() != "binary":
            continue
        field = next(
            (
                f
                for f in _fields(data, part.header_start, part.body_start)
                if f.name == b"CONTENT-TRANSFER-ENCODING"
            ),
            None,
        )
        if field is None:
            continue
        body = binascii.b2a_base64(data[part.body_start : part.body_end], newline=False)
        lines = b"\r\n".join(body[i : i + 76] for i in range(0, len(body), 76))
        edits.append((field.start, field.end, b"Content-Transfer-Encoding: base64\r\n"))
        edits.append((part.body_start, part.body_end, lines + b"\r\n"))
    out = bytearray(data)
    for start, end, replacement in sorted(edits, reverse=True):
        out[start:end] = replacement
    return bytes(out)
