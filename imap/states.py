"""The last known state of each mailbox, shared by the sessions of one process.

SELECT needs every UID of the mailbox with its flags and MODSEQ: 100,000
rows for a big mailbox, most of SELECT's time. Like Dovecot's
``dovecot.index`` (mapped once, brought up to date from the log), the state a
session loaded is kept here, keyed by mailbox id and stamped with the
mailbox's HIGHESTMODSEQ; the next SELECT of that mailbox reads only what
changed since (:func:`imap.backend.changes_since`, the query every session
already uses to sync, which also sees other nodes' changes on PostgreSQL) or
nothing at all when HIGHESTMODSEQ has not moved.

A cached state is never changed in place: a :class:`~imap.selected.SelectedView`
built on it copies the lists before its first change (copy on write), and a
newer state replaces the entry. The cache is bounded by the number of
messages it holds (least recently used mailboxes go first); the index in the
database stays the truth.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from sqlalchemy import Connection

from imap import backend
from imap.backend import Change
from mssante.index import Mailbox

__all__ = ["MailboxState", "MailboxStates", "load"]

#: Above this many changes since the cached state, loading anew is as cheap.
_REPLAY_FRACTION = 0.2


@dataclass(frozen=True)
class MailboxState:
    mailbox_id: int
    uidvalidity: int
    highestmodseq: int
    uids: list[int]  # ascending; never changed once built
    flags: dict[int, frozenset[str]]
    modseqs: dict[int, int]

    def replay(
        self, highestmodseq: int, changed: list[Change], gone: list[tuple[int, int]]
    ) -> MailboxState | None:
        """This state with the changes since applied (a new state), or None when a
        fresh load is cheaper."""
        if len(changed) + len(gone) > _REPLAY_FRACTION * max(len(self.uids), 100):
            return None
        flags, modseqs = dict(self.flags), dict(self.modseqs)
        removed = {uid for uid, _ in gone if uid in flags}
        for uid in removed:
            del flags[uid], modseqs[uid]
        uids = [u for u in self.uids if u not in removed] if removed else list(self.uids)
        top = uids[-1] if uids else 0
        ordered = True
        for change in changed:
            if change.uid not in flags:
                ordered = ordered and change.uid > top
                top = max(top, change.uid)
                uids.append(change.uid)
            flags[change.uid] = change.flags
            modseqs[change.uid] = change.modseq
        if not ordered:
            uids.sort()
        return MailboxState(self.mailbox_id, self.uidvalidity, highestmodseq, uids, flags, modseqs)


class MailboxStates:
    """The per-process cache (thread-safe: SELECT loads run in worker threads)."""

    def __init__(self, max_messages: int = 500_000) -> None:
        self.max_messages = max_messages
        self._states: OrderedDict[int, MailboxState] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def get(self, mailbox_id: int, uidvalidity: int) -> MailboxState | None:
        with self._lock:
            state = self._states.get(mailbox_id)
            if state is None or state.uidvalidity != uidvalidity:
                return None
            self._states.move_to_end(mailbox_id)
            return state

    def put(self, state: MailboxState) -> None:
        """Keep ``state`` unless an entry at least as recent is there already."""
        size = len(state.uids)
        with self._lock:
            old = self._states.get(state.mailbox_id)
            if old is not None:
                if (
                    old.uidvalidity == state.uidvalidity
                    and old.highestmodseq >= state.highestmodseq
                ):
                    return
                del self._states[state.mailbox_id]
                self._held -= len(old.uids)
            if size > self.max_messages:
                return
            self._states[state.mailbox_id] = state
            self._held += size
            while self._held > self.max_messages:
                _, dropped = self._states.popitem(last=False)
                self._held -= len(dropped.uids)


def load(conn: Connection, mailbox: Mailbox, states: MailboxStates) -> MailboxState:
    """The mailbox's state for SELECT: the cached one brought up to date, or loaded anew.

    ``mailbox`` must have been read in this transaction, before: its
    HIGHESTMODSEQ stamps the state, and a stamp older than the content is
    harmless (replaying a change twice gives the same state).
    """
    cached = states.get(mailbox.id, mailbox.uidvalidity)
    if cached is not None:
        if cached.highestmodseq == mailbox.highestmodseq:
            return cached
        if cached.highestmodseq < mailbox.highestmodseq:
            changed, gone = backend.changes_since(conn, mailbox.id, cached.highestmodseq)
            state = cached.replay(mailbox.highestmodseq, changed, gone)
            if state is not None:
                states.put(state)
                return state
    uids, flags, modseqs = backend.selected_state(conn, mailbox.id)
    state = MailboxState(
        mailbox.id, mailbox.uidvalidity, mailbox.highestmodseq, uids, flags, modseqs
    )
    states.put(state)
    return state
