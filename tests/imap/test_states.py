"""The per-process cache of mailbox states that SELECT starts from (pure parts)."""

from __future__ import annotations

from imap.backend import Change
from imap.selected import SelectedView
from imap.states import MailboxState, MailboxStates
from mssante.index import Mailbox

SEEN = frozenset({"\\Seen"})
NONE: frozenset[str] = frozenset()


def state(count: int = 10, modseq: int = 20, mailbox_id: int = 1) -> MailboxState:
    uids = list(range(1, count + 1))
    return MailboxState(
        mailbox_id, 7, modseq, uids, dict.fromkeys(uids, NONE), {u: u + 1 for u in uids}
    )


def mailbox(highestmodseq: int = 20) -> Mailbox:
    return Mailbox(1, "a@b.test", "INBOX", None, 7, 11, highestmodseq, 1, frozenset())


def test_replay_applies_flags_expunges_and_new_messages_to_a_copy() -> None:
    old = state()
    new = old.replay(
        25,
        [Change(3, SEEN, 21), Change(12, NONE, 23), Change(11, SEEN, 22)],
        [(5, 24), (99, 24)],  # 99: never seen here
    )
    assert new is not None
    assert new.uids == [1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12]
    assert new.flags[3] == SEEN and new.modseqs[3] == 21
    assert 5 not in new.flags and new.highestmodseq == 25
    # the cached state is untouched, and replaying twice changes nothing
    assert old.uids == list(range(1, 11)) and old.flags[3] == NONE
    again = new.replay(25, [Change(3, SEEN, 21), Change(12, NONE, 23)], [(5, 24)])
    assert again is not None and again.uids == new.uids and again.flags == new.flags


def test_replay_gives_up_when_most_messages_changed() -> None:
    big = state(count=1000)
    changes = [Change(u, SEEN, 30 + u) for u in range(1, 400)]
    assert big.replay(500, changes, []) is None


def test_the_cache_is_bounded_and_keeps_the_newest_state() -> None:
    states = MailboxStates(max_messages=25)
    states.put(state(10, mailbox_id=1))
    states.put(state(10, mailbox_id=2))
    assert states.get(1, 7) is not None  # 1 is now the most recently used
    states.put(state(10, mailbox_id=3))  # 30 > 25: the least recently used (2) goes
    assert states.get(2, 7) is None and states.get(1, 7) is not None
    assert states.get(3, 7) is not None
    states.put(state(10, modseq=30, mailbox_id=1))
    states.put(state(10, modseq=25, mailbox_id=1))  # older than what is there: ignored
    found = states.get(1, 7)
    assert found is not None and found.highestmodseq == 30
    assert states.get(1, 8) is None  # another UIDVALIDITY: not this mailbox
    states.put(state(100, mailbox_id=4))  # bigger than the whole cache: not kept
    assert states.get(4, 7) is None


def test_a_view_copies_the_shared_state_before_changing_it() -> None:
    shared = state()
    view = SelectedView.from_state(mailbox(), False, shared.uids, shared.flags, shared.modseqs)
    assert view.uids is shared.uids  # nothing copied by SELECT
    view.record([Change(2, SEEN, 30)])
    assert view.flags[2] == SEEN and shared.flags[2] == NONE
    other = SelectedView.from_state(mailbox(), False, shared.uids, shared.flags, shared.modseqs)
    responses, new = other.sync(
        [Change(11, NONE, 31)], [(4, 32)], announce_expunges=True, with_uid=False
    )
    assert new == [11] and other.uids == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert shared.uids == list(range(1, 11)) and 4 in shared.flags
    assert [str(r) for r in responses]  # EXPUNGE and EXISTS were produced
