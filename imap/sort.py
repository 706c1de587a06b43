"""SORT and THREAD (RFC 5256, with RFC 5957 DISPLAYFROM/DISPLAYTO), pure.

Both commands select messages with a search program from :mod:`imap.search`
and then order them::

    prog = parse_sort(args, uid_command=False)  # (criteria) charset keys...
    seqs = sort_messages(prog, messages, ctx)  # or sort_views(...) for the views
    reply = search_response(prog.search, views, name="SORT")  # or esearch_response (ESORT)

    prog = parse_thread(args, uid_command=False)  # algorithm charset keys...
    threads = thread_messages(prog, messages, ctx)
    reply = "THREAD " + format_threads(threads, use_uid=prog.search.uid)

``format_threads`` gives the text after ``* THREAD `` and is empty when no
message matched (send ``* THREAD`` then). ESORT's RETURN options are parsed
as SEARCH's; MIN and MAX are then the first and last in sort order.

Design:

* One sort key per criterion, computed once per message: ARRIVAL the internal
  date, DATE the Date: header falling back to the internal date (both as UTC
  instants), SIZE, SUBJECT the base subject, FROM/TO/CC the first address's
  local part, DISPLAYFROM/DISPLAYTO its display name or else its address
  (a group counts by its name, as in an ENVELOPE). Strings collate with
  :func:`imap.search.casemap`. The messages start in sequence order and are
  stably sorted by each criterion from the last to the first, each one
  reversed on its own, so ties fall back to the sequence number as §3 asks.
* :func:`base_subject` follows §2.1 step by step and also says whether it
  stripped a reply or forward marker, which REFERENCES' subject merging needs.
* REFERENCES (§3) builds containers keyed by Message-ID (a missing or
  repeated one gets a private container), links each References chain
  without ever creating a loop or moving an existing parent, gives each
  message the last reference as parent (dropping any parent it had), prunes
  the empty containers, merges roots of one base subject, and sorts siblings
  by sent date. Loops, pruning, sorting and output are iterative, so a reply
  chain thousands deep does not exhaust Python's stack.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from imap.grammar import Atom, ListValue, ParseError, Value
from imap.search import (
    Address,
    MessageView,
    SearchContext,
    SearchProgram,
    casemap,
    matching,
    parse_addresses,
    parse_charset,
    parse_keys,
    parse_return,
)

__all__ = [
    "SORT_KEYS",
    "THREAD_ALGORITHMS",
    "SortCriterion",
    "SortProgram",
    "Thread",
    "ThreadProgram",
    "base_subject",
    "format_threads",
    "parse_sort",
    "parse_thread",
    "sort_messages",
    "sort_views",
    "thread_messages",
]

SORT_KEYS = frozenset(
    {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}
)
THREAD_ALGORITHMS = frozenset({"ORDEREDSUBJECT", "REFERENCES"})


def _bad(text: str) -> ParseError:
    return ParseError(None, None, text)


# --- programs -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str  # one of SORT_KEYS
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortProgram:
    criteria: tuple[SortCriterion, ...]
    search: SearchProgram  # carries the charset, the RETURN options (ESORT) and UID-ness

    @property
    def needs(self) -> frozenset[str]:
        """What the search and the criteria read beyond the index."""
        index_only = all(c.key in ("ARRIVAL", "SIZE") for c in self.criteria)
        return self.search.needs if index_only else self.search.needs | {"headers"}


@dataclass(frozen=True, slots=True)
class ThreadProgram:
    algorithm: str  # one of THREAD_ALGORITHMS
    search: SearchProgram

    @property
    def needs(self) -> frozenset[str]:
        return self.search.needs | {"headers"}


def parse_sort(args: Sequence[Value], *, uid_command: bool = False) -> SortProgram:
    """``[RETURN (...)] (criteria) charset key...`` (RFC 5256 §3, RFC 5267 ESORT)."""
    options, rest = parse_return(args)
    if not rest or not isinstance(rest[0], ListValue) or not rest[0].items:
        raise _bad("SORT needs a parenthesised list of sort criteria")
    criteria: list[SortCriterion] = []
    reverse = False
    for item in rest[0].items:
        word = item.value.upper() if isinstance(item, Atom) else ""
        if word == "REVERSE" and not reverse:
            reverse = True
        elif word in SORT_KEYS:
            criteria.append(SortCriterion(word, reverse))
            reverse = False
        else:
            raise _bad("invalid sort criterion")
    if reverse:
        raise _bad("REVERSE must precede a sort criterion")
    if len(rest) < 2:
        raise _bad("SORT needs a charset")
    charset = parse_charset(rest[1])
    search = parse_keys(rest[2:], charset=charset, return_options=options, uid=uid_command)
    return SortProgram(tuple(criteria), search)


def parse_thread(args: Sequence[Value], *, uid_command: bool = False) -> ThreadProgram:
    """``algorithm charset key...`` (RFC 5256 §3)."""
    if not args or not isinstance(args[0], Atom):
        raise _bad("THREAD needs an algorithm")
    algorithm = args[0].value.upper()
    if algorithm not in THREAD_ALGORITHMS:
        raise _bad("unsupported threading algorithm")
    if len(args) < 2:
        raise _bad("THREAD needs a charset")
    charset = parse_charset(args[1])
    return ThreadProgram(algorithm, parse_keys(args[2:], charset=charset, uid=uid_command))


# --- base subject (RFC 5256 §2.1) -----------------------------------------------------

_BLOB = r"\[[^\[\]]*\]\s*"
_TRAILER = re.compile(r"(?:\s|\(fwd\))+\Z", re.IGNORECASE)  # step 2
_LEADER = re.compile(rf"(?:{_BLOB})*(?:re|fwd?)\s*(?:{_BLOB})?:|\s+", re.IGNORECASE)  # step 3
_BLOB_PREFIX = re.compile(_BLOB)  # step 4


def base_subject(subject: str) -> tuple[str, bool]:
    """The base subject of a decoded Subject:, and whether it was a reply or forward."""
    text = " ".join(subject.split())  # step 1: one space for any run of white space
    marked = False
    while True:
        trailer = _TRAILER.search(text)  # step 2
        if trailer:
            marked = marked or "(" in trailer.group()
            text = text[: trailer.start()]
        changed = True
        while changed:  # step 5: repeat 3 and 4 until nothing changes
            changed = False
            while leader := _LEADER.match(text):  # step 3
                marked = marked or not leader.group().isspace()
                text = text[leader.end() :]
                changed = True
            blob = _BLOB_PREFIX.match(text)  # step 4: unless nothing would remain
            if blob and text[blob.end() :]:
                text = text[blob.end() :]
                changed = True
        if text[:5].upper() == "[FWD:" and text.endswith("]"):  # step 6
            text = text[5:-1]
            marked = True
            continue
        return text, marked


# --- sort keys ------------------------------------------------------------------------


def _sent_instant(m: MessageView) -> float:
    """The sent date as a UTC instant; the internal date when Date: is missing or bad."""
    return (m.sent_date() or m.internal_date).timestamp()


def _subject_key(m: MessageView) -> str:
    values = m.header("Subject")
    return casemap(base_subject(values[0])[0]) if values else ""


def _first_address(m: MessageView, name: str) -> Address | None:
    """The first address of the first ``name`` field; a group stands as its name."""
    values = m.header(name)
    items = parse_addresses(values[0]) if values else []
    if not items:
        return None
    return items[0] if isinstance(items[0], Address) else Address("", items[0].name, "")


def _mailbox_key(name: str) -> Callable[[MessageView], str]:
    def key(m: MessageView) -> str:
        first = _first_address(m, name)
        return casemap(first.mailbox) if first else ""

    return key


def _display_key(name: str) -> Callable[[MessageView], str]:
    def key(m: MessageView) -> str:
        first = _first_address(m, name)
        return casemap(first.name or first.spec) if first else ""

    return key


_SORT_KEY_FUNCTIONS: dict[str, Callable[[MessageView], str | float | int]] = {
    "ARRIVAL": lambda m: m.internal_date.timestamp(),
    "DATE": _sent_instant,
    "SIZE": lambda m: m.size,
    "SUBJECT": _subject_key,
    "FROM": _mailbox_key("From"),
    "TO": _mailbox_key("To"),
    "CC": _mailbox_key("Cc"),
    "DISPLAYFROM": _display_key("From"),
    "DISPLAYTO": _display_key("To"),
}


def sort_views(
    prog: SortProgram, messages: Sequence[MessageView], ctx: SearchContext
) -> list[MessageView]:
    """The matching messages in the requested order, ties in sequence order."""
    views = sorted(matching(prog.search, messages, ctx), key=lambda m: m.seq)
    for criterion in reversed(prog.criteria):
        views.sort(key=_SORT_KEY_FUNCTIONS[criterion.key], reverse=criterion.reverse)
    return views


def sort_messages(
    prog: SortProgram, messages: Sequence[MessageView], ctx: SearchContext
) -> list[int]:
    """Sequence numbers in the requested order."""
    return [m.seq for m in sort_views(prog, messages, ctx)]


# --- threads --------------------------------------------------------------------------


@dataclass(eq=False)
class Thread:
    """A node of a thread tree; ``message`` is None for a placeholder (dummy) node.

    Compared and hashed by identity: the algorithm keys its tables by node.
    """

    message: MessageView | None
    children: list[Thread] = field(default_factory=list)
    parent: Thread | None = field(default=None, repr=False)


def thread_messages(
    prog: ThreadProgram, messages: Sequence[MessageView], ctx: SearchContext
) -> list[Thread]:
    """The matching messages as threads: the top-level nodes, in output order."""
    views = sorted(matching(prog.search, messages, ctx), key=lambda m: m.seq)
    if prog.algorithm == "ORDEREDSUBJECT":
        return _ordered_subject(views)
    return _references(views)


def _date_order(m: MessageView) -> tuple[float, int]:
    return _sent_instant(m), m.seq


def _ordered_subject(views: list[MessageView]) -> list[Thread]:
    """Group by base subject; the earliest message leads, the others are its children."""
    keyed = sorted(((_subject_key(m), _date_order(m), m) for m in views), key=lambda t: t[:2])
    threads: list[tuple[tuple[float, int], Thread]] = []
    previous: str | None = None
    for subject, order, m in keyed:
        if subject == previous:
            _link(threads[-1][1], Thread(m))
        else:
            threads.append((order, Thread(m)))
            previous = subject
    return [thread for _, thread in sorted(threads, key=lambda t: t[0])]


_MSG_ID = re.compile(r"<([^<>]+)>")


def _message_ids(m: MessageView, name: str) -> list[str]:
    return ["".join(found.split()) for value in m.header(name) for found in _MSG_ID.findall(value)]


def _references_of(m: MessageView) -> list[str]:
    """References, else the first In-Reply-To id (§3 step 1A)."""
    return _message_ids(m, "References") or _message_ids(m, "In-Reply-To")[:1]


def _link(parent: Thread, child: Thread) -> None:
    child.parent = parent
    parent.children.append(child)


def _unlink(child: Thread) -> None:
    if child.parent is not None:
        child.parent.children.remove(child)
        child.parent = None


def _would_loop(parent: Thread, child: Thread) -> bool:
    """Whether making ``parent`` the parent of ``child`` would close a cycle.

    A childless container can only loop onto itself: that shortcut keeps a
    long chain of replies, arriving in order, linear rather than quadratic.
    """
    if not child.children:
        return parent is child
    node: Thread | None = parent
    while node is not None:
        if node is child:
            return True
        node = node.parent
    return False


def _references(views: list[MessageView]) -> list[Thread]:
    by_id: dict[str, Thread] = {}
    nodes: list[Thread] = []

    def container(message_id: str) -> Thread:
        node = by_id.get(message_id)
        if node is None:
            node = by_id[message_id] = Thread(None)
            nodes.append(node)
        return node

    for m in views:  # step 1
        ids = _message_ids(m, "Message-ID")
        own = by_id.get(ids[0]) if ids else None
        if own is not None and own.message is None:
            own.message = m
        else:  # no Message-ID, or one an earlier message already has
            own = Thread(m)
            nodes.append(own)
            if ids and ids[0] not in by_id:
                by_id[ids[0]] = own
        parent: Thread | None = None
        for ref in _references_of(m):  # 1A: chain the references, never re-parenting
            node = container(ref)
            if parent is not None and node.parent is None and not _would_loop(parent, node):
                _link(parent, node)
            parent = node
        _unlink(own)  # 1B: the message's own references decide its parent
        if parent is not None and not _would_loop(parent, own):
            _link(parent, own)
    roots = _prune([n for n in nodes if n.parent is None])  # steps 2-4
    roots = _merge_subjects(roots)  # step 5
    return _sort_tree(roots)  # step 6


def _walk(roots: Iterable[Thread]) -> list[Thread]:
    """Every node under ``roots``, parents before their children."""
    order: list[Thread] = []
    stack = list(roots)
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children)
    return order


def _prune(roots: list[Thread]) -> list[Thread]:
    """Step 4: drop empty placeholders, lift the children of the others a level up.

    A placeholder at the top stays when it holds several children, so that
    they remain one thread.
    """
    for node in reversed(_walk(roots)):  # children first: theirs are already pruned
        kept: list[Thread] = []
        for child in node.children:
            if child.message is None:
                kept.extend(child.children)
            else:
                kept.append(child)
        node.children = kept
        for child in kept:
            child.parent = node
    top: list[Thread] = []
    for root in roots:
        if root.message is None and len(root.children) == 1:
            root.children[0].parent = None
            top.append(root.children[0])
        elif root.message is not None or root.children:
            top.append(root)
    return top


def _first_message(node: Thread) -> MessageView:
    """The message that speaks for a node: its own, or its earliest child's."""
    while node.message is None:
        node = min(node.children, key=_node_order)
    return node.message


def _node_order(node: Thread) -> tuple[float, int]:
    return _date_order(_first_message(node))


def _merge_subjects(roots: list[Thread]) -> list[Thread]:
    """Step 5: gather top-level threads whose base subjects are equal."""
    subjects: dict[Thread, tuple[str, bool]] = {}
    for root in roots:
        values = _first_message(root).header("Subject")
        text, marked = base_subject(values[0]) if values else ("", False)
        subjects[root] = (casemap(text), marked)
    table: dict[str, Thread] = {}
    for root in roots:  # 5B: prefer a placeholder, then a non-reply
        subject, marked = subjects[root]
        if not subject:
            continue
        held = table.get(subject)
        if (
            held is None
            or (root.message is None and held.message is not None)
            or (subjects[held][1] and not marked and held.message is not None)
        ):
            table[subject] = root
    out = list(roots)
    for root in roots:  # 5C
        subject, marked = subjects[root]
        held = table.get(subject) if subject else None
        if held is None or held is root or root.parent is not None:
            continue
        held_marked = subjects[held][1]
        if held.message is None and root.message is None:
            for child in list(root.children):
                _unlink(child)
                _link(held, child)
        elif held.message is None:
            _link(held, root)
        elif root.message is None:
            _link(root, held)
            table[subject] = root
        elif marked and not held_marked:
            _link(held, root)
        elif held_marked and not marked:  # they arrived in the wrong order
            _link(root, held)
            table[subject] = root
        else:  # both replies or neither: siblings under a new placeholder
            placeholder = Thread(None)
            subjects[placeholder] = (subject, False)
            for node in (held, root):
                _link(placeholder, node)
            table[subject] = placeholder
            out.append(placeholder)
    return [r for r in out if r.parent is None and (r.message is not None or r.children)]


def _sort_tree(roots: list[Thread]) -> list[Thread]:
    """Step 6: siblings by sent date (a placeholder by its first child's), then sequence."""
    order: dict[Thread, tuple[float, int]] = {}
    for node in reversed(_walk(roots)):  # children first
        node.children.sort(key=order.__getitem__)
        if node.message is not None:
            order[node] = _date_order(node.message)
        else:
            order[node] = order[node.children[0]]
    return sorted(roots, key=order.__getitem__)


def format_threads(threads: Sequence[Thread], use_uid: bool) -> str:
    """The THREAD data: ``(1 2)(3 (4)(5))``; a lone child follows its parent in line."""
    out: list[str] = []
    stack: list[Thread | str] = []
    for thread in reversed(threads):
        stack += [")", thread, "("]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        if item.message is not None:
            number = item.message.uid if use_uid else item.message.seq
            out.append(str(number) if out[-1] == "(" else f" {number}")
            if len(item.children) == 1:
                stack.append(item.children[0])
                continue
            if item.children:
                out.append(" ")
        for child in reversed(item.children):
            stack += [")", child, "("]
    return "".join(out)
