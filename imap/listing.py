"""LIST and LSUB: which names a pattern matches, and the attributes each line carries.

Pure: the session passes the owner's mailbox names, their special-use
attributes and subscriptions. The hierarchy separator is ``/``; ``*`` matches
anything, ``%`` anything but the separator (RFC 3501 §6.3.8). Parents that are
not mailboxes (a subscription to ``a/b`` without ``a``) appear with
``\\NonExistent``/``\\Noselect`` where RFC 5258 asks for them.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

__all__ = ["ListEntry", "ListOptions", "list_entries", "pattern_regex"]

SEPARATOR = "/"


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """The names ``reference`` + ``pattern`` matches; INBOX matches case-insensitively."""
    full = pattern if pattern.startswith(SEPARATOR) and reference else reference + pattern
    parts = []
    for char in full:
        if char == "*":
            parts.append(".*")
        elif char == "%":
            parts.append(f"[^{re.escape(SEPARATOR)}]*")
        else:
            parts.append(re.escape(char))
    body = "".join(parts)
    if full.upper().startswith("INBOX"):
        body = "(?i:INBOX)" + "".join(parts[5:])
    return re.compile(body + r"\Z", re.DOTALL)


@dataclass(frozen=True)
class ListOptions:
    """LIST-EXTENDED selection and return options (RFC 5258, RFC 6154)."""

    subscribed: bool = False  # SUBSCRIBED selection (or LSUB)
    recursive: bool = False  # RECURSIVEMATCH
    special_use_only: bool = False  # SPECIAL-USE selection
    return_subscribed: bool = False
    return_children: bool = True
    return_special_use: bool = True
    lsub: bool = False


@dataclass(frozen=True)
class ListEntry:
    name: str
    attributes: tuple[str, ...]
    child_info: bool = False  # CHILDINFO ("SUBSCRIBED") extended data
    extra: dict[str, str] = field(default_factory=dict)


def _parents(name: str) -> list[str]:
    parts = name.split(SEPARATOR)
    return [SEPARATOR.join(parts[:i]) for i in range(1, len(parts))]


def list_entries(
    patterns: Collection[re.Pattern[str]],
    mailboxes: Mapping[str, str | None],
    subscribed: Collection[str],
    options: ListOptions,
) -> list[ListEntry]:
    """The LIST (or LSUB) lines for every name some pattern matches, in name order."""
    existing = set(mailboxes)
    subs = set(subscribed)
    has_children = {p for name in existing for p in _parents(name)}
    candidates = subs if options.subscribed else existing
    names: dict[str, bool] = {}  # name -> only listed as the parent of a match (RECURSIVEMATCH)
    for name in candidates:
        if any(p.match(name) for p in patterns):
            names[name] = False
    if options.lsub:
        # RFC 3501 §6.3.9: "%" shows an unsubscribed parent of a subscription as \\Noselect.
        for name in subs:
            for parent in _parents(name):
                if parent not in subs and any(p.match(parent) for p in patterns):
                    names[parent] = True
    elif options.subscribed and options.recursive:
        # CHILDINFO tells of subscribed descendants the patterns did not show (RFC 5258 §3.5).
        for name in subs:
            if any(p.match(name) for p in patterns):
                continue
            for parent in _parents(name):
                if parent not in names and any(p.match(parent) for p in patterns):
                    names[parent] = True
    if not options.subscribed:
        # A pattern like "a/%" must show "a" as \Noselect when only "a/b/c" exists.
        for name in existing:
            for parent in _parents(name):
                fresh = parent not in existing and parent not in names
                if fresh and any(p.match(parent) for p in patterns):
                    names[parent] = False
    out = []
    for name in sorted(names, key=lambda n: (n != "INBOX", n)):
        attrs: list[str] = []
        real = name in existing
        if options.lsub:
            if not real or names[name]:
                attrs.append("\\Noselect")
        else:
            if not real:
                attrs.append("\\NonExistent" if options.subscribed else "\\Noselect")
            if options.return_children:
                attrs.append("\\HasChildren" if name in has_children else "\\HasNoChildren")
            if (options.subscribed or options.return_subscribed) and name in subs:
                attrs.append("\\Subscribed")
            use = mailboxes.get(name)
            if use and options.return_special_use:
                attrs.append(use)
        if options.special_use_only and not mailboxes.get(name):
            continue
        out.append(ListEntry(name, tuple(attrs), child_info=names[name] and not options.lsub))
    return out
