"""SEARCH: the search program, its evaluation over a mailbox, and the replies.

Pure: no I/O and no database. The session hands over the command's arguments
(values of :mod:`imap.grammar`) and the selected mailbox as :class:`MessageView`
objects, and gets back sequence numbers and reply text::

    prog = parse_search(args, uid_command=False)  # raises ParseError -> tag BAD
    views = matching(prog, messages, ctx)  # or evaluate(...) for sequence numbers
    if prog.return_options is None:
        reply = search_response(prog, views)  # "SEARCH 2 5 (MODSEQ 9)"
    else:
        reply = esearch_response(prog, tag, views)  # None for RETURN (SAVE) alone
        if "SAVE" in prog.return_options:
            saved = saved_uids(prog, views)

``args`` are the arguments after ``SEARCH`` / ``UID SEARCH``: an optional
``RETURN (...)`` (RFC 4731 MIN MAX ALL COUNT and RFC 5182 SAVE; ``RETURN ()``
means ALL), an optional ``CHARSET`` (UTF-8 or US-ASCII; any other raises
:class:`UnsupportedCharset`, a :class:`ParseError` with the ``BADCHARSET``
code that RFC 9051 answers with a tagged NO rather than BAD), then the keys of
RFC 9051 §6.4.4 plus RFC 7162's MODSEQ (its entry name and type are checked
and ignored) and RFC 5182's ``$``.

Design:

* The keys become a tree of small frozen records (:data:`Key`). NEW, OLD and
  the UN- keys are spelt with NOT/AND over a few primitives, so each primitive
  is evaluated in one place. ``prog.needs`` says whether the tree reads
  headers or the body, so a caller can leave message bytes unloaded.
* :func:`matching` compiles the tree once into closures and runs them per
  message. AND and OR evaluate their cheap operands (flags, UID, size,
  internal date, modseq) first and stop early, so on a large mailbox only the
  messages the index keys let through are asked for headers or body.
* Strings are compared with :func:`casemap` (compatibility decomposition, then
  upper case: the spirit of i;unicode-casemap), substring anywhere; an empty
  string asks for the field to be present. SORT and THREAD collate with the
  same function.
* FROM, TO, CC and BCC match the header's addresses written back in one
  normal form (``Name <local@domain>``, groups as ``name: members;``), so a
  comment, odd spacing or a name given as a comment does not hide an address.
  :func:`parse_addresses` is shared with SORT.
* A sequence set beyond the mailbox matches nothing; ``*`` is the last
  sequence number or UID given in :class:`SearchContext`. BEFORE/ON/SINCE
  read the internal date in the server's zone (``ctx.tz``); the SENT- keys
  read the Date: header in its own zone, and never match without one.
"""

from __future__ import annotations

import bisect
import itertools
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Literal, Protocol

from imap.grammar import (
    MAX_NUMBER,
    Atom,
    ListValue,
    Number,
    ParseError,
    SequenceSet,
    String,
    Value,
    as_astring,
    as_sequence_set,
    encode_value,
)

__all__ = [
    "RETURN_OPTIONS",
    "Address",
    "AllKey",
    "AndKey",
    "DateKey",
    "FlagKey",
    "Group",
    "HeaderKey",
    "Key",
    "MessageView",
    "ModSeqKey",
    "NotKey",
    "OrKey",
    "RecentKey",
    "SearchContext",
    "SearchProgram",
    "SetKey",
    "SizeKey",
    "TextKey",
    "UnsupportedCharset",
    "address_text",
    "casemap",
    "esearch_response",
    "evaluate",
    "matching",
    "parse_addresses",
    "parse_charset",
    "parse_keys",
    "parse_return",
    "parse_search",
    "required_texts",
    "saved_uids",
    "search_response",
    "sequence_text",
]

RETURN_OPTIONS = frozenset({"MIN", "MAX", "ALL", "COUNT", "SAVE"})
_CHARSETS = {"UTF-8": "utf-8", "US-ASCII": "ascii"}
BADCHARSET = "BADCHARSET (UTF-8 US-ASCII)"
_MAX_DEPTH = 100  # NOT/OR/parentheses nesting: keeps the recursion well inside Python's


class UnsupportedCharset(ParseError):
    """CHARSET names a charset we cannot decode.

    Still a :class:`ParseError` (the command is refused whole), but RFC 9051
    §6.4.4 wants ``tag NO [BADCHARSET (...)]`` here, not BAD: catch it first.
    """


# --- what the evaluation reads --------------------------------------------------------


class MessageView(Protocol):
    """One message of the selected mailbox, as SEARCH, SORT and THREAD read it.

    The attributes come from the index; the methods may parse the message, and
    are only called when a key needs them (see :attr:`SearchProgram.needs`).
    """

    @property
    def seq(self) -> int: ...
    @property
    def uid(self) -> int: ...
    @property
    def flags(self) -> frozenset[str]: ...
    @property
    def internal_date(self) -> datetime: ...  # timezone-aware
    @property
    def size(self) -> int: ...
    @property
    def modseq(self) -> int: ...

    def header(self, name: str) -> list[str]:
        """Unfolded, RFC 2047-decoded values of every ``name`` field; empty if absent."""
        ...

    def headers_text(self) -> str:
        """The whole decoded header block."""
        ...

    def body_text(self) -> str:
        """The decoded text of the body."""
        ...

    def sent_date(self) -> datetime | None:
        """The parsed Date: header, aware, or None when missing or unreadable."""
        ...


@dataclass(frozen=True, slots=True)
class SearchContext:
    """What the keys need from the session beyond the messages themselves."""

    max_seq: int  # what "*" means in a sequence set
    max_uid: int  # what "*" means in a UID set
    saved: frozenset[int] | None = None  # the "$" result (UIDs); None reads as empty
    recent: frozenset[int] = frozenset()  # UIDs this session sees as \Recent
    tz: tzinfo = UTC  # the server's zone for BEFORE / ON / SINCE


# --- the key tree ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AllKey:
    """ALL."""


@dataclass(frozen=True, slots=True)
class FlagKey:
    """A system flag or keyword is set (flags compare case-insensitively)."""

    flag: str


@dataclass(frozen=True, slots=True)
class RecentKey:
    """The session sees the message as \\Recent."""


@dataclass(frozen=True, slots=True)
class SetKey:
    """A sequence set, a UID set, or ``$``."""

    messages: SequenceSet
    uid: bool


@dataclass(frozen=True, slots=True)
class SizeKey:
    """LARGER (``larger``) or SMALLER than ``size`` octets."""

    size: int
    larger: bool


@dataclass(frozen=True, slots=True)
class DateKey:
    """BEFORE/ON/SINCE on the internal date, or on the Date: header when ``sent``."""

    op: Literal["BEFORE", "ON", "SINCE"]
    day: date
    sent: bool


@dataclass(frozen=True, slots=True)
class HeaderKey:
    """``text`` (already casemapped) in a field; ``address`` fields are normalised first."""

    name: str
    text: str
    address: bool


@dataclass(frozen=True, slots=True)
class TextKey:
    """BODY (``headers`` false) or TEXT; ``text`` is already casemapped."""

    text: str
    headers: bool


@dataclass(frozen=True, slots=True)
class ModSeqKey:
    """CONDSTORE: the message's mod-sequence is at least ``modseq``."""

    modseq: int


@dataclass(frozen=True, slots=True)
class NotKey:
    key: Key


@dataclass(frozen=True, slots=True)
class AndKey:
    keys: tuple[Key, ...]


@dataclass(frozen=True, slots=True)
class OrKey:
    keys: tuple[Key, ...]


Key = (
    AllKey
    | FlagKey
    | RecentKey
    | SetKey
    | SizeKey
    | DateKey
    | HeaderKey
    | TextKey
    | ModSeqKey
    | NotKey
    | AndKey
    | OrKey
)


@dataclass(frozen=True, slots=True)
class SearchProgram:
    """A parsed SEARCH; also the search part of SORT and THREAD."""

    key: Key
    charset: str = "UTF-8"
    return_options: frozenset[str] | None = None  # None: plain SEARCH, no RETURN
    uid: bool = False  # UID SEARCH: replies carry UIDs
    needs: frozenset[str] = field(init=False)  # "headers" and/or "body"
    uses_modseq: bool = field(init=False)  # a MODSEQ key: replies carry the highest modseq

    def __post_init__(self) -> None:
        object.__setattr__(self, "needs", _needs(self.key))
        object.__setattr__(self, "uses_modseq", _has_modseq(self.key))


def _needs(key: Key) -> frozenset[str]:
    if isinstance(key, HeaderKey) or (isinstance(key, DateKey) and key.sent):
        return _HEADERS
    if isinstance(key, TextKey):
        return _HEADERS_AND_BODY if key.headers else _BODY
    if isinstance(key, NotKey):
        return _needs(key.key)
    if isinstance(key, AndKey | OrKey):
        return frozenset().union(*(_needs(k) for k in key.keys))
    return frozenset()


_HEADERS = frozenset({"headers"})
_BODY = frozenset({"body"})
_HEADERS_AND_BODY = _HEADERS | _BODY


def _has_modseq(key: Key) -> bool:
    if isinstance(key, ModSeqKey):
        return True
    if isinstance(key, NotKey):
        return _has_modseq(key.key)
    if isinstance(key, AndKey | OrKey):
        return any(_has_modseq(k) for k in key.keys)
    return False


# --- parsing --------------------------------------------------------------------------


def _bad(text: str) -> ParseError:
    return ParseError(None, None, text)


def _is_word(value: Value, word: str) -> bool:
    return isinstance(value, Atom) and value.value.upper() == word


def _shown(value: Value) -> str:
    """A short, printable name for an offending argument in an error text."""
    if isinstance(value, Atom):
        return value.value[:40]
    if isinstance(value, Number):
        return str(value.value)
    return type(value).__name__.lower()


def parse_search(args: Sequence[Value], *, uid_command: bool = False) -> SearchProgram:
    """``[RETURN (...)] [CHARSET name] key...`` as SEARCH and UID SEARCH take them."""
    options, rest = parse_return(args)
    charset = "UTF-8"
    if rest and _is_word(rest[0], "CHARSET"):
        if len(rest) < 2:
            raise _bad("CHARSET needs a charset name")
        charset = parse_charset(rest[1])
        rest = rest[2:]
    return parse_keys(rest, charset=charset, return_options=options, uid=uid_command)


def parse_return(args: Sequence[Value]) -> tuple[frozenset[str] | None, Sequence[Value]]:
    """Split off ``RETURN (options)``; ``RETURN ()`` means ALL (RFC 4731)."""
    if not args or not _is_word(args[0], "RETURN"):
        return None, args
    if len(args) < 2 or not isinstance(args[1], ListValue):
        raise _bad("RETURN needs a parenthesised list of options")
    options: set[str] = set()
    for item in args[1].items:
        word = item.value.upper() if isinstance(item, Atom) else None
        if word not in RETURN_OPTIONS:
            raise _bad(f"unsupported RETURN option {_shown(item)}")
        options.add(word)
    return frozenset(options or {"ALL"}), args[2:]


def parse_charset(value: Value) -> str:
    """The canonical name of a supported charset, or :class:`UnsupportedCharset`."""
    try:
        name = as_astring(value).decode("ascii").upper()
    except (ParseError, UnicodeDecodeError):
        raise _bad("expected a charset name") from None
    if name not in _CHARSETS:
        raise UnsupportedCharset(None, BADCHARSET, f"charset {name[:40]} is not supported")
    return name


def parse_keys(
    args: Sequence[Value],
    *,
    charset: str = "UTF-8",
    return_options: frozenset[str] | None = None,
    uid: bool = False,
) -> SearchProgram:
    """The search keys alone (what follows CHARSET), ANDed; SORT and THREAD use this too."""
    if not args:
        raise _bad("missing search criteria")
    return SearchProgram(_KeyParser(args, charset).program(0), charset, return_options, uid)


_SYSTEM_FLAGS = {
    "ANSWERED": "\\Answered",
    "DELETED": "\\Deleted",
    "DRAFT": "\\Draft",
    "FLAGGED": "\\Flagged",
    "SEEN": "\\Seen",
}
_SIMPLE: dict[str, Key] = {
    "ALL": AllKey(),
    "RECENT": RecentKey(),
    "OLD": NotKey(RecentKey()),
    "NEW": AndKey((RecentKey(), NotKey(FlagKey("\\Seen")))),
    **{word: FlagKey(flag) for word, flag in _SYSTEM_FLAGS.items()},
    **{f"UN{word}": NotKey(FlagKey(flag)) for word, flag in _SYSTEM_FLAGS.items()},
}

_ADDRESS_FIELDS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "TO": "To"}
_DATE_KEYS: dict[str, tuple[Literal["BEFORE", "ON", "SINCE"], bool]] = {
    "BEFORE": ("BEFORE", False),
    "ON": ("ON", False),
    "SINCE": ("SINCE", False),
    "SENTBEFORE": ("BEFORE", True),
    "SENTON": ("ON", True),
    "SENTSINCE": ("SINCE", True),
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DATE = re.compile(r"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})\Z")
_KEYWORD = re.compile(r'[^\x00-\x20\x7f(){%*"\\\]]+\Z')  # atom: flag-keyword (RFC 9051 §9)
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")  # printable ASCII except ":"
_ENTRY_TYPES = {"PRIV", "SHARED", "ALL"}


class _KeyParser:
    """Recursive descent over one level of arguments (a parenthesised group gets its own)."""

    def __init__(self, args: Sequence[Value], charset: str) -> None:
        self.args = args
        self.pos = 0
        self.charset = charset

    def program(self, depth: int) -> Key:
        keys: list[Key] = []
        while self.pos < len(self.args):
            keys.append(self.key(depth))
        return keys[0] if len(keys) == 1 else AndKey(tuple(keys))

    def take(self, what: str) -> Value:
        if self.pos >= len(self.args):
            raise _bad(f"missing {what}")
        value = self.args[self.pos]
        self.pos += 1
        return value

    def key(self, depth: int) -> Key:
        if depth > _MAX_DEPTH:
            raise _bad("search criteria nested too deep")
        value = self.take("search key")
        if isinstance(value, ListValue):
            if not value.items:
                raise _bad("empty parenthesised search key")
            return _KeyParser(value.items, self.charset).program(depth + 1)
        if isinstance(value, Atom):
            word = value.value.upper()
            simple = _SIMPLE.get(word)
            if simple is not None:
                return simple
            with_args = self.with_arguments(word, depth)
            if with_args is not None:
                return with_args
        if isinstance(value, Atom | Number):
            try:
                return SetKey(as_sequence_set(value), uid=False)
            except ParseError:
                pass
        raise _bad(f"unknown search key {_shown(value)}")

    def with_arguments(self, word: str, depth: int) -> Key | None:
        """The keys that take arguments; None if ``word`` is not one of them."""
        if word == "NOT":
            inner = self.key(depth + 1)
            return inner.key if isinstance(inner, NotKey) else NotKey(inner)
        if word == "OR":
            keys: list[Key] = []
            for operand in (self.key(depth + 1), self.key(depth + 1)):
                keys.extend(operand.keys if isinstance(operand, OrKey) else (operand,))
            return OrKey(tuple(keys))
        if word in _ADDRESS_FIELDS:
            return HeaderKey(_ADDRESS_FIELDS[word], casemap(self.string(word)), address=True)
        if word == "SUBJECT":
            return HeaderKey("Subject", casemap(self.string(word)), address=False)
        if word == "HEADER":
            name = self.string("HEADER field name")
            if not _FIELD_NAME.match(name):
                raise _bad("invalid header field name")
            return HeaderKey(name, casemap(self.string("HEADER string")), address=False)
        if word in ("BODY", "TEXT"):
            return TextKey(casemap(self.string(word)), headers=word == "TEXT")
        if word in ("KEYWORD", "UNKEYWORD"):
            flag = self.take(f"{word} flag")
            if not isinstance(flag, Atom) or not _KEYWORD.match(flag.value):
                raise _bad(f"{word} needs a keyword")
            return FlagKey(flag.value) if word == "KEYWORD" else NotKey(FlagKey(flag.value))
        if word in ("LARGER", "SMALLER"):
            return SizeKey(self.number(word), larger=word == "LARGER")
        if word in _DATE_KEYS:
            op, sent = _DATE_KEYS[word]
            return DateKey(op, self.date(word), sent)
        if word == "UID":
            return SetKey(as_sequence_set(self.take("UID set")), uid=True)
        if word == "MODSEQ":
            return self.modseq()
        return None

    def string(self, what: str) -> str:
        raw = as_astring(self.take(what))
        try:
            return raw.decode(_CHARSETS[self.charset])
        except UnicodeDecodeError:
            raise _bad(f"search string is not valid {self.charset}") from None

    def number(self, what: str) -> int:
        value = self.take(f"{what} number")
        if isinstance(value, Number):
            return value.value
        if isinstance(value, Atom) and value.value.isascii() and value.value.isdigit():
            number = int(value.value)  # leading zeros are still a number
            if number <= MAX_NUMBER:
                return number
        raise _bad(f"{what} needs a number")

    def date(self, what: str) -> date:
        value = self.take(f"{what} date")
        m = _DATE.match(as_astring(value).decode("ascii", "replace"))
        month = _MONTHS.get(m.group(2).upper()) if m else None
        if m is None or month is None:
            raise _bad(f"{what} needs a date like 1-Feb-1994")
        try:
            return date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise _bad(f"{what}: no such date") from None

    def modseq(self) -> ModSeqKey:
        """``MODSEQ ["/flags/<flag>" priv|shared|all] <mod-sequence>`` (RFC 7162 §3.1.5)."""
        entry = self.args[self.pos] if self.pos < len(self.args) else None
        if isinstance(entry, String):  # an entry name can only be quoted
            self.pos += 1
            if not entry.value.lower().startswith(b"/flags/"):
                raise _bad("MODSEQ entry name must be /flags/<flag>")
            kind = self.take("MODSEQ entry type")
            if not isinstance(kind, Atom) or kind.value.upper() not in _ENTRY_TYPES:
                raise _bad("MODSEQ entry type must be priv, shared or all")
        return ModSeqKey(self.number("MODSEQ"))


# --- string matching ------------------------------------------------------------------


def casemap(text: str) -> str:
    """Fold for comparison: compatibility decomposition, then upper case.

    Close to i;unicode-casemap (RFC 5051), which IMAP asks for in SEARCH
    (RFC 9051 §6.4.4) and SORT (RFC 5256); upper rather than lower case so
    that collation puts ``[`` and ``_`` after letters, as that comparator does.
    """
    upper = text.upper()
    return upper if upper.isascii() else unicodedata.normalize("NFKD", upper)


# --- addresses ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Address:
    """One mailbox of an address field."""

    name: str  # display name; a comment stands in when there is none; "" if neither
    mailbox: str  # local part
    host: str  # domain; "" when missing

    @property
    def spec(self) -> str:
        return f"{self.mailbox}@{self.host}" if self.host else self.mailbox


@dataclass(frozen=True, slots=True)
class Group:
    """``name: members;`` (RFC 5322 group)."""

    name: str
    members: tuple[Address, ...]


_ADDR_SPECIALS = frozenset('<>,:;@"([')


def _address_tokens(text: str) -> Iterable[tuple[str, str]]:
    """(kind, text): "word" (atoms, quoted strings, domain literals), "comment", or a special."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif c == '"':
            out, i = [], i + 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            yield "word", "".join(out)
            i += 1
        elif c == "(":
            depth, out, i = 1, [], i + 1
            while i < n:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                elif text[i] == "(":
                    depth += 1
                elif text[i] == ")":
                    depth -= 1
                    if depth == 0:
                        break
                out.append(text[i])
                i += 1
            yield "comment", "".join(out).strip()
            i += 1
        elif c == "[":
            end = text.find("]", i)
            end = n if end < 0 else end + 1
            yield "word", text[i:end]
            i = end
        elif c in _ADDR_SPECIALS:
            yield c, c
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _ADDR_SPECIALS:
                i += 1
            yield "word", text[start:i]


class _AddressBuilder:
    """Collects one mailbox's tokens, then turns them into an :class:`Address`."""

    def __init__(self) -> None:
        self.phrase: list[tuple[str, str]] = []  # words and "@" outside angle brackets
        self.angle: list[str] | None = None  # what <...> held
        self.in_angle = False
        self.comments: list[str] = []

    def add(self, kind: str, token: str) -> None:
        if self.in_angle:
            if kind == ">":
                self.in_angle = False
            elif kind != "comment" and self.angle is not None:
                self.angle.append(token)
        elif kind == "<":
            self.angle, self.in_angle = [], True
        elif kind == "comment":
            self.comments.append(token)
        elif kind != ">":
            self.phrase.append((kind, token))

    def address(self) -> Address | None:
        words = [text for kind, text in self.phrase if kind == "word"]
        comment = next((c for c in self.comments if c), "")
        if self.angle is not None:
            spec = "".join(self.angle).rsplit(":", 1)[-1]  # drop an obsolete route "@a,@b:"
            name = " ".join(words) or comment
        elif self.phrase:
            has_at = any(kind == "@" for kind, _ in self.phrase)
            spec = ("" if has_at else " ").join(text for _, text in self.phrase)
            name = comment
        else:
            return None
        mailbox, at, host = spec.rpartition("@")
        return Address(name, mailbox, host) if at else Address(name, spec, "")


def parse_addresses(text: str) -> list[Address | Group]:
    """An address field read leniently: never fails, keeps what looks like an address.

    Made for decoded header values (RFC 2047 already undone), so a display name
    holding a comma may split in two; nothing is lost for substring search.
    A group's name is what SORT takes as the first address (as in ENVELOPE).
    """
    items: list[Address | Group] = []
    group: tuple[str, list[Address]] | None = None
    current = _AddressBuilder()
    for kind, token in itertools.chain(_address_tokens(text), [(",", ",")]):  # "," ends the last
        if current.in_angle or kind not in (":", ",", ";"):
            current.add(kind, token)
        elif kind == ":" and group is None and current.angle is None:
            group = (" ".join(t for k, t in current.phrase if k == "word"), [])
            current = _AddressBuilder()
        elif kind == ":":
            current.add(kind, token)
        else:
            address = current.address()
            if address is not None:
                (group[1] if group is not None else items).append(address)
            current = _AddressBuilder()
            if kind == ";" and group is not None:
                items.append(Group(group[0], tuple(group[1])))
                group = None
    if group is not None:  # a group left open by a missing ";"
        items.append(Group(group[0], tuple(group[1])))
    return items


def address_text(items: Sequence[Address | Group]) -> str:
    """The normal form FROM/TO/CC/BCC search in: ``Name <a@b>, group: c@d;``."""

    def one(address: Address) -> str:
        return f"{address.name} <{address.spec}>" if address.name else address.spec

    parts = []
    for item in items:
        if isinstance(item, Group):
            parts.append(f"{item.name}: {', '.join(one(m) for m in item.members)};")
        else:
            parts.append(one(item))
    return ", ".join(parts)


# --- evaluation -----------------------------------------------------------------------

Predicate = Callable[[MessageView], bool]


def _always(message: MessageView) -> bool:
    return True


def _cost(key: Key) -> int:
    """Evaluate index facts before headers, headers before the body."""
    needs = _needs(key)
    return 2 if "body" in needs else 1 if needs else 0


def _flag_test(flag: str) -> Predicate:
    folded = flag.casefold()

    def test(m: MessageView) -> bool:
        flags = m.flags
        return flag in flags or any(f.casefold() == folded for f in flags)

    return test


def _set_test(key: SetKey, ctx: SearchContext) -> Predicate:
    if key.messages.saved:
        saved = ctx.saved or frozenset()
        return lambda m: m.uid in saved
    last = ctx.max_uid if key.uid else ctx.max_seq
    ranges = sorted(
        (min(a, b), max(a, b))
        for a, b in (
            (last if lo is None else lo, last if hi is None else hi)
            for lo, hi in key.messages.ranges
        )
    )
    starts: list[int] = []
    ends: list[int] = []
    for lo, hi in ranges:  # merge, so one bisection answers
        if ends and lo <= ends[-1] + 1:
            ends[-1] = max(ends[-1], hi)
        else:
            starts.append(lo)
            ends.append(hi)
    if len(starts) == 1:
        lo, hi = starts[0], ends[0]
        if key.uid:
            return lambda m: lo <= m.uid <= hi
        return lambda m: lo <= m.seq <= hi

    def test(m: MessageView) -> bool:
        n = m.uid if key.uid else m.seq
        i = bisect.bisect_right(starts, n) - 1
        return i >= 0 and n <= ends[i]

    return test


def _date_test(key: DateKey, ctx: SearchContext) -> Predicate:
    day, tz = key.day, ctx.tz
    compare: Callable[[date], bool] = {
        "BEFORE": lambda d: d < day,
        "ON": lambda d: d == day,
        "SINCE": lambda d: d >= day,
    }[key.op]
    if key.sent:

        def sent(m: MessageView) -> bool:
            when = m.sent_date()
            return when is not None and compare(when.date())

        return sent
    return lambda m: compare(m.internal_date.astimezone(tz).date())


def _header_test(key: HeaderKey) -> Predicate:
    name, text = key.name, key.text
    if not text:
        return lambda m: bool(m.header(name))
    if key.address:
        return lambda m: any(
            text in casemap(address_text(parse_addresses(v))) for v in m.header(name)
        )
    return lambda m: any(text in casemap(v) for v in m.header(name))


def _text_test(key: TextKey) -> Predicate:
    text = key.text
    if key.headers:
        # The body first: reading it parses the whole message, whose header block
        # then comes for free (the other way round parses the message twice).
        return lambda m: text in casemap(m.body_text()) or text in casemap(m.headers_text())
    return lambda m: text in casemap(m.body_text())


def _compile(key: Key, ctx: SearchContext) -> Predicate:
    if isinstance(key, AllKey):
        return _always
    if isinstance(key, FlagKey):
        return _flag_test(key.flag)
    if isinstance(key, RecentKey):
        recent = ctx.recent
        return lambda m: m.uid in recent
    if isinstance(key, SetKey):
        return _set_test(key, ctx)
    if isinstance(key, SizeKey):
        size = key.size
        return (lambda m: m.size > size) if key.larger else (lambda m: m.size < size)
    if isinstance(key, DateKey):
        return _date_test(key, ctx)
    if isinstance(key, HeaderKey):
        return _header_test(key)
    if isinstance(key, TextKey):
        return _text_test(key)
    if isinstance(key, ModSeqKey):
        modseq = key.modseq
        return lambda m: m.modseq >= modseq
    if isinstance(key, NotKey):
        inner = _compile(key.key, ctx)
        return lambda m: not inner(m)
    tests = tuple(_compile(k, ctx) for k in sorted(key.keys, key=_cost))
    if len(tests) == 1:
        return tests[0]
    if isinstance(key, AndKey):
        if len(tests) == 2:
            first, second = tests
            return lambda m: first(m) and second(m)
        return lambda m: all(t(m) for t in tests)
    return lambda m: any(t(m) for t in tests)


def required_texts(key: Key, field: str) -> list[str]:
    """Casemapped strings that the (non-address) header ``field`` must contain for ``key``
    to match: those of its non-empty header keys joined by AND at the top.

    A caller that can test them cheaply (the index caches the Subject) may
    leave out the messages failing one before evaluating the program.
    """
    keys = key.keys if isinstance(key, AndKey) else (key,)
    out: list[str] = []
    for k in keys:
        if isinstance(k, AndKey):
            out += required_texts(k, field)
        elif isinstance(k, HeaderKey) and not k.address and k.text and k.name.lower() == field:
            out.append(k.text)
    return out


def matching(
    prog: SearchProgram, messages: Sequence[MessageView], ctx: SearchContext
) -> list[MessageView]:
    """The messages the program selects, in the order given (sequence order)."""
    if isinstance(prog.key, AllKey):
        return list(messages)
    test = _compile(prog.key, ctx)
    return [m for m in messages if test(m)]


def evaluate(prog: SearchProgram, messages: Sequence[MessageView], ctx: SearchContext) -> list[int]:
    """Sequence numbers of the matching messages, ascending."""
    return [m.seq for m in matching(prog, messages, ctx)]


# --- replies --------------------------------------------------------------------------


def sequence_text(numbers: Sequence[int]) -> str:
    """A sequence set keeping the given order: ascending runs become ranges (``5,3:4,2``)."""
    ranges: list[tuple[int | None, int | None]] = []
    for n in numbers:
        last = ranges[-1][1] if ranges else None
        if last is not None and n == last + 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    return encode_value(SequenceSet(tuple(ranges))).decode("ascii")


def _number(m: MessageView, uid: bool) -> int:
    return m.uid if uid else m.seq


def search_response(
    prog: SearchProgram, matches: Sequence[MessageView], *, name: str = "SEARCH"
) -> str:
    """``SEARCH 1 2 3`` (or ``SORT ...``), with ``(MODSEQ n)`` after a MODSEQ key (RFC 7162)."""
    text = " ".join([name, *(str(_number(m, prog.uid)) for m in matches)])
    if prog.uses_modseq and matches:
        text += f" (MODSEQ {max(m.modseq for m in matches)})"
    return text


def _reported(options: frozenset[str], matches: Sequence[MessageView]) -> Sequence[MessageView]:
    """The messages the reply speaks of: all of them, or only the MIN/MAX ones.

    Decides both the MODSEQ value of an ESEARCH reply (RFC 4731 §3.2) and what
    SAVE keeps (RFC 5182 §2.1). MIN and MAX are the first and last of the
    result as ordered, which for SORT is the sort order (RFC 5267 §3.2).
    """
    if not matches or options & {"ALL", "COUNT"} or not options & {"MIN", "MAX"}:
        return matches
    return [m for option, m in (("MIN", matches[0]), ("MAX", matches[-1])) if option in options]


def esearch_response(prog: SearchProgram, tag: str, matches: Sequence[MessageView]) -> str | None:
    """``ESEARCH (TAG "t") [UID] [MIN n] [MAX n] [ALL set] [COUNT n] [MODSEQ m]``.

    None when SAVE is the only option: RFC 5182 suppresses the reply then.
    Without RETURN (an IMAP4rev2 plain SEARCH) ALL is reported.
    """
    options = prog.return_options or frozenset({"ALL"})
    if options == {"SAVE"}:
        return None
    numbers = [_number(m, prog.uid) for m in matches]
    parts = ["ESEARCH", f"(TAG {encode_value(String(tag.encode())).decode()})"]
    if prog.uid:
        parts.append("UID")
    if numbers:
        if "MIN" in options:
            parts.append(f"MIN {numbers[0]}")
        if "MAX" in options:
            parts.append(f"MAX {numbers[-1]}")
        if "ALL" in options:
            parts.append(f"ALL {sequence_text(numbers)}")
    if "COUNT" in options:
        parts.append(f"COUNT {len(numbers)}")
    if prog.uses_modseq and matches:
        parts.append(f"MODSEQ {max(m.modseq for m in _reported(options, matches))}")
    return " ".join(parts)


def saved_uids(prog: SearchProgram, matches: Sequence[MessageView]) -> frozenset[int]:
    """What ``RETURN (SAVE ...)`` stores as ``$``: UIDs, MIN/MAX only when asked alone."""
    return frozenset(m.uid for m in _reported(prog.return_options or frozenset(), matches))
