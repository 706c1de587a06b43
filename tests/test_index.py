"""The mailbox index on both engines: UIDs, MODSEQ, idempotent delivery."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete

from mssante import index
from mssante.schema import mailboxes
from mssante.store import BlobRef

NOW = datetime(2026, 5, 4, 8, 30, tzinfo=UTC)
OWNER = "dr.martin@demo.mssante.test"


def blob(n: int) -> BlobRef:
    return BlobRef(f"{n:064x}", 100 + n)


def test_default_mailboxes_with_special_use(db):
    with db.transaction() as conn:
        created = index.ensure_default_mailboxes(conn, OWNER, now=NOW)
        again = index.ensure_default_mailboxes(conn, OWNER, now=NOW)
    assert created == again
    with db.read() as conn:
        listed = {m.name: m.special_use for m in index.list_mailboxes(conn, OWNER)}
    assert listed == {
        "INBOX": None,
        "Sent": "\\Sent",
        "Drafts": "\\Drafts",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
    }
    with db.read() as conn:
        assert index.subscribed_names(conn, OWNER) == set(listed), "the defaults are subscribed"
        assert index.get_mailbox(conn, OWNER, "inbox") == index.get_mailbox(conn, OWNER, "INBOX")
        assert index.list_mailboxes(conn, "someone.else@demo.mssante.test") == []


def test_append_allocates_uids_and_modseqs_in_order(db):
    with db.transaction() as conn:
        inbox = index.create_mailbox(conn, OWNER, "INBOX", now=NOW)
        first = index.append(
            conn, inbox, blob(1), internal_date=NOW, flags=["\\Recent", "$MDNSent"]
        )
        second = index.append(conn, inbox, blob(2), internal_date=NOW + timedelta(seconds=1))
    assert (first.uid, second.uid) == (1, 2)
    assert second.modseq > first.modseq
    assert first.flags == {"\\Recent", "$MDNSent"}
    with db.read() as conn:
        state = index.get_mailbox(conn, OWNER, "INBOX")
        listed = index.messages(conn, state)
    assert state.uidnext == 3
    assert state.highestmodseq == second.modseq
    assert listed == [first, second]
    assert listed[0].blob == blob(1)
    assert listed[0].internal_date == NOW


def test_delivery_is_idempotent_per_message_and_recipient(db):
    with db.transaction() as conn:
        inbox = index.create_mailbox(conn, OWNER, "INBOX", now=NOW)
        a = index.append(conn, inbox, blob(1), internal_date=NOW, delivery_key=f"q1:{OWNER}")
    with db.transaction() as conn:  # the queue retries after a crash before it recorded success
        b = index.append(conn, inbox, blob(1), internal_date=NOW, delivery_key=f"q1:{OWNER}")
        c = index.append(conn, inbox, blob(1), internal_date=NOW, delivery_key="q1:other@x.test")
    assert a == b
    assert c.uid == 2
    with db.read() as conn:
        assert len(index.messages(conn, inbox)) == 2


def test_concurrent_appends_never_share_a_uid(db):
    with db.transaction() as conn:
        inbox = index.create_mailbox(conn, OWNER, "INBOX", now=NOW)
    results: list[int] = []
    errors: list[BaseException] = []

    def deliver(worker: int) -> None:
        try:
            for i in range(10):
                with db.transaction() as conn:
                    entry = index.append(
                        conn,
                        inbox,
                        blob(worker * 100 + i),
                        internal_date=NOW,
                        delivery_key=f"w{worker}-{i}",
                    )
                results.append(entry.uid)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == list(range(1, 41))


def test_concurrent_duplicate_delivery_leaves_one_copy(db):
    with db.transaction() as conn:
        inbox = index.create_mailbox(conn, OWNER, "INBOX", now=NOW)
    entries: list[index.MessageEntry] = []
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        with db.transaction() as conn:
            entries.append(
                index.append(
                    conn, inbox, blob(7), internal_date=NOW, delivery_key="q9:dup@demo.mssante.test"
                )
            )

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({e.id for e in entries}) == 1
    with db.read() as conn:
        assert len(index.messages(conn, inbox)) == 1


def test_flag_changes_bump_modseq_only_when_something_changes(db):
    with db.transaction() as conn:
        inbox = index.create_mailbox(conn, OWNER, "INBOX", now=NOW)
        entry = index.append(conn, inbox, blob(1), internal_date=NOW)
        seen = index.set_flags(conn, inbox, entry.uid, ["\\Seen"])
        same = index.set_flags(conn, inbox, entry.uid, ["\\Seen"])
        with pytest.raises(index.MailboxNotFound):
            index.set_flags(conn, inbox, 99, ["\\Seen"])
    assert seen.flags == {"\\Seen"}
    assert seen.modseq > entry.modseq
    assert same.modseq == seen.modseq


def test_a_recreated_mailbox_gets_a_new_uidvalidity(db):
    with db.transaction() as conn:
        first = index.create_mailbox(conn, OWNER, "Projets", now=NOW)
        with pytest.raises(index.MailboxExists):
            index.create_mailbox(conn, OWNER, "Projets", now=NOW)
        conn.execute(delete(mailboxes).where(mailboxes.c.id == first.id))
        second = index.create_mailbox(conn, OWNER, "Projets", now=NOW)
    assert second.uidvalidity > first.uidvalidity
