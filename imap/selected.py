"""The selected mailbox as one session sees it: sequence numbers, flags, what it was told.

A session's view lags the index on purpose. Sequence numbers may only change
when the client is told (``EXPUNGE``/``VANISHED``), and never while a FETCH,
STORE or SEARCH by sequence number is answered (RFC 3501 §7.4.1), so an
expunge seen by :meth:`SelectedView.sync` is held until a command that may
announce it. Flags and new messages are announced at any command end.

Pure: the session reads the changes from :mod:`imap.backend` and feeds them
here; this module only decides what to tell the client.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from imap.backend import Change
from imap.grammar import Atom, ListValue, Number, SequenceSet, Untagged, Value
from mssante.index import Mailbox

__all__ = ["OutOfRange", "SelectedView", "flag_list", "uid_set_text"]


class OutOfRange(ValueError):
    """A message sequence number beyond the mailbox (the command is answered BAD)."""


def flag_list(flags: Iterable[str]) -> ListValue:
    """FLAGS as sent: system flags first, in a stable order."""
    ordered = sorted(flags, key=lambda f: (not f.startswith("\\"), f))
    return ListValue(tuple(Atom(f) for f in ordered))


def uid_set_text(uids: Sequence[int]) -> str:
    """A compact sequence set (``1:3,7``) for sorted UIDs, as UIDPLUS and VANISHED send."""
    parts: list[str] = []
    start = prev = None
    for uid in uids:
        if start is None:
            start = prev = uid
        elif prev is not None and uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}" if start == prev else f"{start}:{prev}")
            start = prev = uid
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}:{prev}")
    return ",".join(parts)


@dataclass
class SelectedView:
    mailbox_id: int
    owner: str  # the BAL the mailbox belongs to (the \\Seen hook is told)
    name: str
    readonly: bool
    uidvalidity: int
    highestmodseq: int
    uids: list[int] = field(default_factory=list)  # index = sequence number - 1
    flags: dict[int, frozenset[str]] = field(default_factory=dict)
    modseqs: dict[int, int] = field(default_factory=dict)
    recent: set[int] = field(default_factory=set)
    keywords: frozenset[str] = frozenset()
    expunged: set[int] = field(default_factory=set)  # gone from the index, not yet announced
    #: Set by ENABLE CONDSTORE/QRESYNC or a CONDSTORE-using command: MODSEQ in FETCH.
    condstore: bool = False
    qresync: bool = False
    #: ``uids``, ``flags`` and ``modseqs`` belong to a shared cached state
    #: (:mod:`imap.states`): copied before the first change.
    shared: bool = False

    @classmethod
    def from_state(
        cls,
        mailbox: Mailbox,
        readonly: bool,
        uids: list[int],
        flags: dict[int, frozenset[str]],
        modseqs: dict[int, int],
    ) -> SelectedView:
        """A view over a mailbox state's lists, shared until the view first changes them."""
        return cls(
            mailbox.id,
            mailbox.owner,
            mailbox.name,
            readonly,
            mailbox.uidvalidity,
            mailbox.highestmodseq,
            uids=uids,
            flags=flags,
            modseqs=modseqs,
            keywords=mailbox.keywords,
            shared=True,
        )

    def _own(self) -> None:
        """Copy the shared lists before changing them (copy on write)."""
        if self.shared:
            self.uids, self.flags, self.modseqs = (
                list(self.uids),
                dict(self.flags),
                dict(self.modseqs),
            )
            self.shared = False

    # ------------------------------------------------------------------ lookups

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        pos = bisect.bisect_left(self.uids, uid)
        return pos + 1 if pos < len(self.uids) and self.uids[pos] == uid else None

    def flags_of(self, uid: int) -> frozenset[str]:
        flags = self.flags.get(uid, frozenset())
        return flags | {"\\Recent"} if uid in self.recent else flags

    def resolve(self, seqset: SequenceSet, *, uid: bool) -> list[int]:
        """The UIDs a sequence set names, ascending, without duplicates.

        By UID, ``*`` is the highest UID and numbers that name no message are
        ignored (RFC 3501 §6.4.8); by sequence number, a number beyond the
        mailbox raises :class:`OutOfRange`. Unannounced expunged messages keep
        their numbers and are named like the others (the caller skips them).
        """
        if not self.uids:
            if uid:
                return []
            raise OutOfRange("the mailbox is empty")
        found: set[int] = set()
        if uid:
            top = self.uids[-1]
            for low, high in seqset.ranges:
                a, b = low if low is not None else top, high if high is not None else top
                a, b = min(a, b), max(a, b)
                lo = bisect.bisect_left(self.uids, a)
                hi = bisect.bisect_right(self.uids, b)
                found.update(self.uids[lo:hi])
            return sorted(found)
        top = len(self.uids)
        for low, high in seqset.ranges:
            a, b = low if low is not None else top, high if high is not None else top
            a, b = min(a, b), max(a, b)
            if b > top or a < 1:
                raise OutOfRange(f"message {b} does not exist (the mailbox has {top})")
            found.update(self.uids[a - 1 : b])
        return sorted(found)

    def live(self, uids: Iterable[int]) -> list[int]:
        """Those still in the index (not expunged by someone else meanwhile)."""
        return [u for u in uids if u not in self.expunged]

    # ------------------------------------------------------------------ changes

    def fetch_flags(self, uid: int, *, with_uid: bool) -> Untagged:
        seq = self.seq_of(uid)
        assert seq is not None
        items: list[Value] = []
        if with_uid:
            items += [Atom("UID"), Number(uid)]
        items += [Atom("FLAGS"), flag_list(self.flags_of(uid))]
        if self.condstore:
            items += [Atom("MODSEQ"), ListValue((Number(self.modseqs.get(uid, 0)),))]
        return Untagged((Number(seq), Atom("FETCH"), ListValue(tuple(items))))

    def record(self, changes: Iterable[Change]) -> None:
        """Our own STORE: the client is answered by the command itself.

        HIGHESTMODSEQ is left alone: changes by others committed before ours
        have lower MODSEQs, and the next :meth:`sync` must still read them.
        """
        changes = list(changes)
        if changes:
            self._own()
        for change in changes:
            if change.uid in self.flags:
                self.flags[change.uid] = change.flags
                self.modseqs[change.uid] = change.modseq

    def sync(
        self,
        changes: Sequence[Change],
        expunged: Sequence[tuple[int, int]],
        *,
        announce_expunges: bool,
        with_uid: bool,
    ) -> tuple[list[Untagged], list[int]]:
        """Fold the index's changes in; the untagged responses to send and the new UIDs.

        New UIDs are returned so a read-write session can claim \\Recent for them.
        """
        if changes or (announce_expunges and (expunged or self.expunged)):
            self._own()
        out: list[Untagged] = []
        for uid, modseq in expunged:
            self.highestmodseq = max(self.highestmodseq, modseq)
            if uid in self.flags:
                self.expunged.add(uid)
        old_keywords = self.keywords
        top = self.uids[-1] if self.uids else 0
        new: list[int] = []
        flag_changes: list[int] = []
        for change in changes:
            self.highestmodseq = max(self.highestmodseq, change.modseq)
            self.keywords |= {f for f in change.flags if not f.startswith("\\")}
            if change.uid in self.expunged:
                continue
            if change.uid > top:
                new.append(change.uid)
                self.uids.append(change.uid)
                top = change.uid
            elif change.uid not in self.flags:
                continue  # created and expunged between two syncs
            elif self.flags[change.uid] != change.flags or (
                self.condstore and self.modseqs.get(change.uid) != change.modseq
            ):
                flag_changes.append(change.uid)
            self.flags[change.uid] = change.flags
            self.modseqs[change.uid] = change.modseq
        if self.keywords != old_keywords:
            out += self.flags_responses()
        if announce_expunges and self.expunged:
            out += self._announce_expunges()
        for uid in flag_changes:
            out.append(self.fetch_flags(uid, with_uid=with_uid or self.qresync))
        if new:
            out.append(Untagged(f"{self.exists} EXISTS"))
        return out, new

    def claim_recent(self, low: int, high: int) -> list[Untagged]:
        """UIDs in ``[low, high)`` are recent for this session; the RECENT to send."""
        if high <= low:
            return []
        before = len(self.recent)
        self.recent.update(u for u in self.uids if low <= u < high)
        return [Untagged(f"{len(self.recent)} RECENT")] if len(self.recent) != before else []

    def flags_responses(self) -> list[Untagged]:
        system = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
        words = " ".join(sorted(self.keywords))
        listed = f"{system} {words}".strip()
        permanent = "" if self.readonly else f"{listed} \\*"
        return [
            Untagged(f"FLAGS ({listed})"),
            Untagged(f"OK [PERMANENTFLAGS ({permanent})] Flags permitted."),
        ]

    def _announce_expunges(self) -> list[Untagged]:
        self._own()
        gone = sorted(self.expunged)
        out: list[Untagged] = []
        if self.qresync:
            out.append(Untagged(f"VANISHED {uid_set_text(gone)}"))
        else:
            # Highest first, so each number is still right when the client reads it.
            for uid in reversed(gone):
                seq = self.seq_of(uid)
                if seq is not None:
                    out.append(Untagged(f"{seq} EXPUNGE"))
        keep = [u for u in self.uids if u not in self.expunged]
        self.uids = keep
        for uid in gone:
            self.flags.pop(uid, None)
            self.modseqs.pop(uid, None)
            self.recent.discard(uid)
        self.expunged.clear()
        return out
