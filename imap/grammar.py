"""IMAP formal syntax, sans-IO: the client's command lines in, the server's responses out.

:class:`CommandParser` takes bytes with :meth:`~CommandParser.feed` and hands back
one event per :meth:`~CommandParser.next` call: a :class:`Command`, :data:`NEED_DATA`,
:class:`NeedContinuation` (a synchronising literal waits for the server's ``+``)
or a :class:`ParseError` (the server answers ``tag BAD``). It never raises on
client bytes and always resynchronises at the end of the offending command,
skipping the bytes of any non-synchronising literal announced on the way.

Only the generic tokenization lives here (RFC 9051 §9 / RFC 3501 §9): atoms,
quoted strings, literals (``{n}``, ``{n+}``, ``~{n}``), NIL, numbers and nested
lists. Per-command meaning (FETCH attributes, SEARCH keys) belongs to the
session. Sequence sets are *not* recognised by the tokenizer, since ``5`` or
``1:3`` may just as well be a mailbox name: the session calls
:func:`as_sequence_set` on the argument it expects to be one.

A bare token may carry a bracketed section with spaces and parentheses inside,
so ``BODY.PEEK[HEADER.FIELDS (From To)]<0.100>`` is one :class:`Atom`.

Every length, count and depth is bounded by :class:`Limits`; literals bigger
than ``literal_memory`` (or beyond that much per command) go to a spooled
temporary file instead of memory.
"""

from __future__ import annotations

import enum
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import IO, Literal

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

MAX_NUMBER = 2**63 - 1  # number64 (RFC 9051)
MAX_NZ_NUMBER = 2**32 - 1  # sequence numbers and UIDs are 32-bit


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one client can make the parser hold."""

    max_line: int = 64 * 1024  # per command, literals not counted
    literal_memory: int = 1024 * 1024  # beyond this (per literal or command) spool to a file
    max_literal: int = 50 * 1024 * 1024
    max_literal_total: int = 200 * 1024 * 1024  # all literals of one command
    max_depth: int = 16  # nested parenthesised lists


# --- values -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Atom:
    """A bare token (also flags like ``\\Seen`` and fetch items like ``BODY[1]``)."""

    value: str


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or an in-memory literal.

    ``literal`` only records how it was sent and is left out of equality, so a
    value compares equal whichever encoding carried it; ``binary`` (literal8) is
    meaningful to BINARY and APPEND and is compared.
    """

    value: bytes
    literal: bool = field(default=False, compare=False)
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Number:
    """A canonical decimal number (no leading zero), up to 2**63 - 1."""

    value: int


@dataclass(frozen=True, slots=True)
class Nil:
    """The NIL atom."""


NIL = Nil()


@dataclass(frozen=True, slots=True)
class ListValue:
    items: tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Adjacent:
    """Two or more lists written with no space between them (response side only).

    RFC 3501 writes the addresses of an address list and the bodies of a
    multipart BODYSTRUCTURE back to back: ``((…)(…))``, ``((…)(…) "mixed")``.
    Use :func:`adjacent` to build one.
    """

    items: tuple[ListValue, ...]


def adjacent(items: Sequence[ListValue]) -> Value:
    """The items back to back: the list itself when there is only one."""
    if len(items) == 1:
        return items[0]
    return Adjacent(tuple(items))


@dataclass(frozen=True, slots=True)
class SequenceSet:
    """Ranges as written (``None`` is ``*``; ``n`` is ``(n, n)``); ``saved`` is ``$`` (RFC 5182)."""

    ranges: tuple[tuple[int | None, int | None], ...]
    saved: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class LiteralFile:
    """A literal too big for memory, positioned at 0; the consumer closes ``file``."""

    file: IO[bytes]
    size: int
    binary: bool = False


Value = Atom | String | Number | Nil | ListValue | Adjacent | SequenceSet | LiteralFile


# --- parser events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """One complete command; ``name`` is upper-cased, ``UID FETCH`` included."""

    tag: str
    name: str
    args: tuple[Value, ...]


class NeedData:
    """More bytes are needed before anything can be said."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronising literal was announced: answer ``+`` and call ``accept_literal``
    (or answer with a tagged NO/BAD and call ``reject_literal``)."""

    size: int
    #: The command's tag, to refuse the literal with ``tag NO [TOOBIG]`` (not compared).
    tag: str | None = field(default=None, compare=False)


@dataclass(eq=True)
class ParseError(Exception):
    """The command is refused as a whole: answer ``tag BAD [code] text`` (``*`` if no tag).

    It is returned by :meth:`CommandParser.next`, and raised by the helpers.
    """

    tag: str | None
    code: str | None
    text: str

    def __str__(self) -> str:
        return self.text


Event = Command | NeedData | NeedContinuation | ParseError


# --- tokenizer ----------------------------------------------------------------------

# ATOM-CHAR: CHAR minus atom-specials ( ) { SP CTL % * " \ ]
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')  # ASTRING-CHAR minus "+"
# a bare argument: atom chars plus ] (astring), % * (list-mailbox) and \ (flags)
_BARE = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\[]+')
_QUOTED = re.compile(rb'"((?:[^"\\\r\n\x00]|\\["\\])*)"')
_MARKER = re.compile(rb"(~?)\{([0-9]+)(\+?)\}\Z")
_TAG_PREFIX = re.compile(rb'([^\x00-\x20\x7f-\xff(){%*"\\+]+) ')
_SEQ_PART = re.compile(r"(\*|[1-9][0-9]{0,9})(?::(\*|[1-9][0-9]{0,9}))?\Z")
_SP, _LPAREN, _RPAREN, _DQUOTE, _LBRACKET = 0x20, 0x28, 0x29, 0x22, 0x5B


def _bad(text: str, code: str | None = None) -> ParseError:
    return ParseError(None, code, text)


class _Tokens:
    """Recursive descent over a command's text, literals sitting at recorded offsets."""

    def __init__(
        self,
        text: bytes,
        literals: list[tuple[int, Value]],
        max_depth: int,
        pos: int = 0,
        *,
        responses: bool = False,
    ) -> None:
        self.text = text
        self.literals = literals
        self.max_depth = max_depth
        self.pos = pos
        self.li = 0
        self.responses = responses  # server output: lists may follow each other unspaced

    def limit(self) -> int:
        """Text may be scanned up to the next literal, never across it."""
        if self.li < len(self.literals):
            return self.literals[self.li][0]
        return len(self.text)

    def at_literal(self) -> bool:
        return self.li < len(self.literals) and self.literals[self.li][0] == self.pos

    def at_end(self) -> bool:
        return self.pos >= len(self.text) and not self.at_literal()

    def peek(self) -> int | None:
        return self.text[self.pos] if self.pos < self.limit() else None

    def expect_sp(self) -> None:
        if self.peek() != _SP:
            raise _bad("expected a space")
        self.pos += 1

    def match(self, pattern: re.Pattern[bytes]) -> bytes | None:
        m = pattern.match(self.text, self.pos, self.limit())
        if m is None:
            return None
        self.pos = m.end()
        return m.group()

    def args(self) -> tuple[Value, ...]:
        out: list[Value] = []
        while not self.at_end():
            self.expect_sp()
            out.append(self.value(0))
        return tuple(out)

    def value(self, depth: int) -> Value:
        if self.at_literal():
            literal = self.literals[self.li][1]
            self.li += 1
            return literal
        c = self.peek()
        if c is None:
            raise _bad("expected a value")
        if c == _DQUOTE:
            return self.quoted()
        if c == _LPAREN:
            return self.list(depth)
        return self.bare()

    def quoted(self) -> String:
        m = _QUOTED.match(self.text, self.pos, self.limit())
        if m is None:
            raise _bad("bad quoted string")
        self.pos = m.end()
        raw = m.group(1)
        data = raw.replace(b'\\"', b'"').replace(b"\\\\", b"\\") if b"\\" in raw else raw
        if data.isascii():
            return String(data)
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("quoted string is not UTF-8") from None
        return String(data)

    def list(self, depth: int) -> ListValue:
        if depth >= self.max_depth:
            raise _bad("lists nested too deep")
        self.pos += 1
        items: list[Value] = []
        if self.peek() == _RPAREN:
            self.pos += 1
            return ListValue(())
        while True:
            item = self.value(depth + 1)
            if self.responses and isinstance(item, ListValue) and self.peek() == _LPAREN:
                run = [item]
                while self.peek() == _LPAREN:
                    run.append(self.list(depth + 1))
                item = Adjacent(tuple(run))
            items.append(item)
            if self.peek() == _RPAREN:
                self.pos += 1
                return ListValue(tuple(items))
            self.expect_sp()

    def bare(self) -> Value:
        start = self.pos
        while True:
            self.match(_BARE)
            if self.peek() != _LBRACKET:
                break
            if not self.section():
                self.pos += 1  # a lone "[" is an ordinary ATOM-CHAR (mailbox names)
        token = self.text[start : self.pos]
        if not token:
            raise _bad("unexpected character")
        nxt = self.peek()
        if nxt is not None and nxt not in (_SP, _RPAREN):
            raise _bad("unexpected character")
        if token.isdigit() and (len(token) == 1 or token[0] != 0x30):
            number = int(token)
            if number > MAX_NUMBER:
                raise _bad("number too large")
            return Number(number)
        if token.upper() == b"NIL":
            return NIL
        return Atom(token.decode("ascii"))

    def section(self) -> bool:
        """Consume ``[...]`` inside a bare token (printable ASCII, brackets balanced).

        False, consuming nothing, when the brackets do not close: the ``[`` is
        then just a character of an atom (``select a[b`` names a mailbox).
        """
        depth, limit, start = 0, self.limit(), self.pos
        while self.pos < limit:
            c = self.text[self.pos]
            if c == _DQUOTE:  # a quoted header name may hold brackets
                m = _QUOTED.match(self.text, self.pos, limit)
                self.pos = m.end() if m is not None else self.pos + 1
                continue
            self.pos += 1
            if c < 0x20 or c > 0x7E:
                break
            if c == _LBRACKET:
                depth += 1
            elif c == 0x5D:
                depth -= 1
                if depth == 0:
                    return True
        self.pos = start
        return False


def _parse_command(text: bytes, literals: list[tuple[int, Value]], limits: Limits) -> Command:
    tokens = _Tokens(text, literals, limits.max_depth)
    raw_tag = tokens.match(_TAG)
    if raw_tag is None or not (tokens.at_end() or tokens.peek() == _SP):
        raise _bad("missing or invalid tag")
    tag = raw_tag.decode("ascii")
    try:
        if tokens.at_end():
            raise _bad("missing command name")
        tokens.expect_sp()
        name = tokens.match(_ATOM)
        if name is None:
            raise _bad("missing command name")
        command = name.decode("ascii").upper()
        if command == "UID":
            tokens.expect_sp()
            sub = tokens.match(_ATOM)
            if sub is None:
                raise _bad("missing command name after UID")
            command = f"UID {sub.decode('ascii').upper()}"
        if not tokens.at_end() and tokens.peek() != _SP:
            raise _bad("bad command name")
        return Command(tag, command, tokens.args())
    except ParseError as error:
        raise replace(error, tag=tag) from None


def _tag_of(line: bytes | bytearray) -> str | None:
    m = _TAG_PREFIX.match(line)
    return m.group(1).decode("ascii") if m else None


def _close_files(literals: list[tuple[int, Value]]) -> None:
    for _, value in literals:
        if isinstance(value, LiteralFile):
            value.file.close()


# --- the incremental command parser -------------------------------------------------


class _State(enum.Enum):
    LINE = "line"  # reading command text up to CRLF
    CONTINUATION = "continuation"  # a synchronising literal waits for accept/reject
    LITERAL = "literal"  # reading literal bytes
    SKIP_LITERAL = "skip-literal"  # after an error: discarding a non-sync literal
    SKIP_LINE = "skip-line"  # after an error: discarding to the end of the command


_TAIL = 48  # enough of a skipped line's end to see a literal marker


class CommandParser:
    """Splits the client's byte stream into commands; see the module docstring."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already known to hold no CRLF (slow clients)
        self._state = _State.LINE
        self._tail = bytearray()
        self._skip_left = 0
        self._new_command()

    def _new_command(self) -> None:
        self._text = bytearray()  # command text with literal markers removed
        self._literals: list[tuple[int, Value]] = []
        self._in_memory = 0  # literal bytes of this command held in memory
        self._total = 0  # literal bytes of this command
        self._lit_left = 0
        self._lit_binary = False
        self._lit_data = bytearray()
        self._lit_file: IO[bytes] | None = None

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next(self) -> Event:
        while True:
            if self._state is _State.LINE:
                event = self._line()
            elif self._state is _State.CONTINUATION:
                return NeedContinuation(self._lit_left, _tag_of(self._text))
            elif self._state is _State.LITERAL:
                event = self._literal()
            elif self._state is _State.SKIP_LITERAL:
                event = self._skip_literal()
            else:
                event = self._skip_line()
            if event is not None:
                return event

    def accept_literal(self) -> None:
        """The server sent ``+``: the announced literal bytes are read next."""
        if self._state is not _State.CONTINUATION:
            raise RuntimeError("no literal is waiting for a continuation")
        self._state = _State.LITERAL

    def reject_literal(self) -> None:
        """The server refused the literal (tagged NO/BAD): the command is dropped."""
        if self._state is not _State.CONTINUATION:
            raise RuntimeError("no literal is waiting for a continuation")
        self._abandon()
        self._state = _State.LINE

    def read_raw_line(self) -> bytes | NeedData | ParseError:
        """One line outside command syntax (AUTHENTICATE responses), without its CRLF."""
        if self._state is not _State.LINE or self._text or self._literals:
            raise RuntimeError("a command is being read")
        limit = self.limits.max_line
        idx = self._find_crlf(limit)
        if idx < 0:
            if len(self._buf) < limit + 2:
                return NEED_DATA
            self._state = _State.SKIP_LINE
            return _bad("line too long")
        line = bytes(self._buf[:idx])
        self._consume(idx + 2)
        return line

    def close(self) -> None:
        """Release a partly read command's spooled literals."""
        self._abandon()

    def _abandon(self) -> None:
        _close_files(self._literals)
        if self._lit_file is not None:
            self._lit_file.close()
        self._new_command()

    def _find_crlf(self, budget: int) -> int:
        """CRLF within ``budget`` bytes of line, never rescanning what was already seen."""
        idx = self._buf.find(b"\r\n", max(0, self._scanned - 1), budget + 2)
        if idx < 0:
            self._scanned = min(len(self._buf), budget + 2)
        return idx

    def _consume(self, size: int) -> None:
        del self._buf[:size]
        self._scanned = 0

    def _error(self, code: str | None, text: str, line: bytes | bytearray) -> ParseError:
        """Report now, then discard whatever remains of this command."""
        tag = _tag_of(line)
        self._abandon()
        self._tail = bytearray()
        return ParseError(tag, code, text)

    def _line(self) -> Event | None:
        budget = self.limits.max_line - len(self._text)
        idx = self._find_crlf(budget)
        if idx < 0:
            if len(self._buf) < budget + 2:
                return NEED_DATA
            error = self._error(None, "line too long", self._text or self._buf[:256])
            self._state = _State.SKIP_LINE
            return error
        segment = bytes(self._buf[:idx])
        self._consume(idx + 2)
        marker = _MARKER.search(segment)
        if marker is None:
            self._text += segment
            return self._finish()
        self._text += segment[: marker.start()]
        digits = marker.group(2)
        size = int(digits) if len(digits) <= 20 else self.limits.max_literal_total + 1
        nonsync = bool(marker.group(3))
        if size > self.limits.max_literal or self._total + size > self.limits.max_literal_total:
            error = self._error("TOOBIG", "literal too big", self._text)
            if nonsync:
                self._skip_left = size
                self._state = _State.SKIP_LITERAL
            return error
        self._lit_left = size
        self._lit_binary = bool(marker.group(1))
        self._total += size
        if self._in_memory + size > self.limits.literal_memory:
            # handed over to the consumer inside a LiteralFile, who closes it
            spool = tempfile.SpooledTemporaryFile(max_size=self.limits.literal_memory)  # noqa: SIM115
            self._lit_file = spool
        else:
            self._in_memory += size
        if nonsync:
            self._state = _State.LITERAL
            return None
        self._state = _State.CONTINUATION
        return NeedContinuation(size, _tag_of(self._text))

    def _literal(self) -> Event | None:
        take = min(self._lit_left, len(self._buf))
        if take:
            chunk = bytes(self._buf[:take])
            self._consume(take)
            if self._lit_file is not None:
                self._lit_file.write(chunk)
            else:
                self._lit_data += chunk
            self._lit_left -= take
        if self._lit_left:
            return NEED_DATA
        value: Value
        if self._lit_file is not None:
            size = self._lit_file.tell()
            self._lit_file.seek(0)
            value = LiteralFile(self._lit_file, size, self._lit_binary)
            self._lit_file = None
        else:
            value = String(bytes(self._lit_data), literal=True, binary=self._lit_binary)
            self._lit_data = bytearray()
        self._literals.append((len(self._text), value))
        self._state = _State.LINE
        return None

    def _finish(self) -> Event:
        text, literals = bytes(self._text), self._literals
        self._new_command()
        if not text and not literals:
            return _bad("empty command line")
        try:
            return _parse_command(text, literals, self.limits)
        except ParseError as error:
            _close_files(literals)
            return error

    def _skip_literal(self) -> Event | None:
        take = min(self._skip_left, len(self._buf))
        self._consume(take)
        self._skip_left -= take
        if self._skip_left:
            return NEED_DATA
        self._state = _State.SKIP_LINE
        return None

    def _skip_line(self) -> Event | None:
        idx = self._buf.find(b"\r\n")
        if idx < 0:
            drop = len(self._buf) - (1 if self._buf.endswith(b"\r") else 0)
            self._tail = (self._tail + self._buf[max(0, drop - _TAIL) : drop])[-_TAIL:]
            self._consume(drop)
            return NEED_DATA
        end = bytes((self._tail + self._buf[max(0, idx - _TAIL) : idx])[-_TAIL:])
        self._consume(idx + 2)
        self._tail = bytearray()
        marker = _MARKER.search(end)
        if marker is not None and marker.group(3):
            # the client sends a non-synchronising literal without waiting: skip it too
            self._skip_left = int(marker.group(2))
            self._state = _State.SKIP_LITERAL
        else:
            self._state = _State.LINE
        return None


# --- helpers for the session ----------------------------------------------------------


def as_sequence_set(value: Value) -> SequenceSet:
    """Read an argument as a sequence set (``1:*``, ``3,5:7,9``, ``$``), or raise ParseError.

    The error has no tag: the session, which knows the command, fills it in.
    """
    if isinstance(value, Number):
        text = str(value.value)
    elif isinstance(value, Atom):
        text = value.value
    else:
        raise _bad("expected a sequence set")
    if text == "$":
        return SequenceSet((), saved=True)
    ranges: list[tuple[int | None, int | None]] = []
    for part in text.split(","):
        m = _SEQ_PART.match(part)
        if m is None:
            raise _bad("invalid sequence set")
        low = _seq_number(m.group(1))
        ranges.append((low, _seq_number(m.group(2)) if m.group(2) else low))
    return SequenceSet(tuple(ranges))


def _seq_number(text: str) -> int | None:
    if text == "*":
        return None
    number = int(text)
    if number > MAX_NZ_NUMBER:
        raise _bad("sequence number too large")
    return number


def as_astring(value: Value) -> bytes:
    """Read an argument as an astring (mailbox names, user names), or raise ParseError.

    NIL reads as the atom ``NIL``; a streamed literal is never an astring.
    """
    if isinstance(value, String):
        return value.value
    if isinstance(value, Atom):
        return value.value.encode("ascii")
    if isinstance(value, Number):
        return str(value.value).encode("ascii")
    if isinstance(value, Nil):
        return b"NIL"
    raise _bad("expected a string")


# --- responses ------------------------------------------------------------------------

Status = Literal["OK", "NO", "BAD"]


@dataclass(frozen=True, slots=True)
class Tagged:
    """The completion of a command: ``tag OK|NO|BAD [code] text``."""

    tag: str
    status: Status
    code: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Untagged:
    """``* ...``: preformatted text, or values each encoded by :func:`encode_value`."""

    content: str | tuple[Value, ...]


@dataclass(frozen=True, slots=True)
class Continuation:
    text: str = ""


Response = Tagged | Untagged | Continuation

_QUOTABLE_MAX = 1024  # longer strings go as literals


def _text(text: str) -> bytes:
    """Free text can never break the line: CR and LF become spaces."""
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8")


def serialize(response: Response) -> bytes:
    if isinstance(response, Tagged):
        if response.status not in ("OK", "NO", "BAD"):
            raise ValueError(f"bad status {response.status!r}")
        head = f"{response.tag} {response.status}".encode("ascii")
        if response.code is not None:
            if "]" in response.code:
                raise ValueError("']' in a response code")
            head += b" [" + _text(response.code) + b"]"
        if response.code is None and response.text.startswith("["):
            raise ValueError("text opening with '[' would read as a response code")
        return head + (b" " + _text(response.text) if response.text else b"") + b"\r\n"
    if isinstance(response, Continuation):
        return b"+ " + _text(response.text) + b"\r\n" if response.text else b"+\r\n"
    if isinstance(response.content, str):
        return b"* " + _text(response.content) + b"\r\n"
    return b"* " + b" ".join(encode_value(v) for v in response.content) + b"\r\n"


def encode_value(value: Value, *, nonsync: bool = False) -> bytes:
    """The wire form of a value; ``nonsync`` writes ``{n+}`` literals as a client would.

    Strings are quoted when short 7-bit text without CR, LF or NUL, otherwise sent
    as literals (``~{n}`` when ``binary``). A non-binary string holding NUL still
    goes as a plain literal: the stored message is sent as it is.
    """
    if isinstance(value, String):
        data = value.value
        plain = (
            not value.binary
            and len(data) <= _QUOTABLE_MAX
            and data.isascii()
            and not any(c in data for c in b"\r\n\x00")
        )
        if plain:
            return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
        return _literal_head(len(data), value.binary, nonsync) + data
    if isinstance(value, Atom):
        if not value.value or any(c in value.value for c in "\r\n\x00"):
            raise ValueError(f"not an atom: {value.value!r}")
        return value.value.encode("ascii")
    if isinstance(value, Number):
        if not 0 <= value.value <= MAX_NUMBER:
            raise ValueError(f"number out of range: {value.value}")
        return str(value.value).encode("ascii")
    if isinstance(value, Nil):
        return b"NIL"
    if isinstance(value, ListValue):
        return b"(" + b" ".join(encode_value(v, nonsync=nonsync) for v in value.items) + b")"
    if isinstance(value, Adjacent):
        return b"".join(encode_value(v, nonsync=nonsync) for v in value.items)
    if isinstance(value, SequenceSet):
        if value.saved:
            return b"$"
        return ",".join(_encode_range(low, high) for low, high in value.ranges).encode("ascii")
    value.file.seek(0)
    data = value.file.read()
    value.file.seek(0)
    return _literal_head(len(data), value.binary, nonsync) + data


def _literal_head(size: int, binary: bool, nonsync: bool) -> bytes:
    return f"{'~' if binary else ''}{{{size}{'+' if nonsync else ''}}}\r\n".encode("ascii")


def _encode_range(low: int | None, high: int | None) -> str:
    first = "*" if low is None else str(low)
    return first if low == high else f"{first}:{'*' if high is None else high}"


def parse_response_line(data: bytes) -> Response:
    """Parse one whole server response (literals included); for tests and tools.

    Untagged responses come back as values, so ``Untagged`` built from text does
    not round-trip.
    """
    text, literals, pos = bytearray(), list[tuple[int, Value]](), 0
    while True:
        idx = data.find(b"\r\n", pos)
        if idx < 0:
            raise _bad("missing CRLF")
        segment = data[pos:idx]
        marker = _MARKER.search(segment)
        if marker is None:
            text += segment
            pos = idx + 2
            break
        text += segment[: marker.start()]
        start, size = idx + 2, int(marker.group(2))
        if start + size > len(data):
            raise _bad("truncated literal")
        chunk = data[start : start + size]
        literals.append((len(text), String(chunk, literal=True, binary=bool(marker.group(1)))))
        pos = start + size
    if pos != len(data):
        raise _bad("data after the response")
    line = bytes(text)
    if line == b"+" or line.startswith(b"+ "):
        return Continuation(line[2:].decode("utf-8", "replace"))
    if line.startswith(b"* "):
        tokens = _Tokens(line, literals, Limits().max_depth, pos=1, responses=True)
        return Untagged(tokens.args())
    m = re.match(rb"([^ ]+) (OK|NO|BAD)(?: \[([^\]]*)\])?(?: (.*))?\Z", line, re.DOTALL)
    if m is None:
        raise _bad("bad response line")
    status: Status = "OK" if m.group(2) == b"OK" else "NO" if m.group(2) == b"NO" else "BAD"
    code = m.group(3).decode("utf-8", "replace") if m.group(3) is not None else None
    words = (m.group(4) or b"").decode("utf-8", "replace")
    return Tagged(m.group(1).decode("ascii", "replace"), status, code, words)
