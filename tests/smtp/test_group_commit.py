"""Group commit: many accepted messages share one thread hop and one transaction.

The committer is what stands between "end of DATA" and "250": every message
it answers for must have its blob fsynced and its rows committed, whatever
the batch it travelled in. Real SQLite/PostgreSQL and a real blob store.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import event, insert, select

from mssante.batch import Rollback, WriteBatcher
from mssante.db import Database
from mssante.schema import queue_messages
from mssante.store import BlobStore
from smtp.accept import Committer, Spool
from smtp.queue import Envelope, NewRecipient

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
KEY = bytes(range(32))


def _spool(store: BlobStore, n: int) -> Spool:
    spool = Spool(store)
    spool.feed(f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode())
    spool.start(lambda headers: b"Received: by test\r\n")
    return spool


def _envelope(n: int) -> Envelope:
    return Envelope(
        sender="alice@a.test",
        recipients=(NewRecipient(f"bob{n}@b.test"),),
        origin="submission",
        client="alice@a.test",
    )


class Gate:
    """Holds the first batch inside its thread until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def __call__(self, step: str) -> None:
        if step == "tmp-synced":
            self.calls += 1
            if self.calls == 1:
                self.entered.set()
                assert self.release.wait(30)


def _queued(db: Database) -> dict[str, str]:
    with db.read() as conn:
        rows = conn.execute(select(queue_messages.c.queue_id, queue_messages.c.blob_sha256))
        return {queue_id: sha for queue_id, sha in rows}


def _count_commits(db: Database) -> list[int]:
    commits: list[int] = []
    event.listen(db.engine, "commit", lambda conn: commits.append(1))
    return commits


# invariant 1: nothing answered 250 before its blob and rows are durable
async def test_messages_arriving_during_a_commit_share_the_next_one(
    db: Database, tmp_path: Path
) -> None:
    gate = Gate()
    store = BlobStore(tmp_path / "blobs", KEY, checkpoint=gate)
    woken: list[int] = []
    committer = Committer(
        WriteBatcher(db), max_age=timedelta(days=5), on_committed=lambda: woken.append(1)
    )
    commits = _count_commits(db)
    first = asyncio.create_task(
        committer.commit(_spool(store, 0), _envelope(0), now=NOW, queue_id="Q0")
    )
    await asyncio.to_thread(gate.entered.wait, 30)
    others = [
        asyncio.create_task(
            committer.commit(_spool(store, n), _envelope(n), now=NOW, queue_id=f"Q{n}")
        )
        for n in range(1, 11)
    ]
    await asyncio.sleep(0)  # every session has handed its message over
    assert not any(t.done() for t in [first, *others]), "nothing answered before its commit"
    gate.release.set()
    answers = await asyncio.gather(first, *others)
    assert answers == [f"Q{n}" for n in range(11)]
    assert len(commits) == 2, "the ten messages that waited went in one commit"
    assert len(woken) == 11
    queued = _queued(db)
    assert sorted(queued) == sorted(answers)
    for sha in queued.values():  # each blob durable under its name, readable
        assert store.read(sha).endswith(b"\r\n")


# invariant 1: a failure is reported to its own sender only, never as a 250
async def test_one_bad_message_fails_alone(db: Database, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", KEY)
    committer = Committer(WriteBatcher(db), max_age=timedelta(days=5))
    await committer.commit(_spool(store, 0), _envelope(0), now=NOW, queue_id="TAKEN")
    broken = _spool(store, 2)
    broken._writer._fh.close()  # type: ignore[union-attr]  # its fsync will fail
    results = await asyncio.gather(
        committer.commit(_spool(store, 1), _envelope(1), now=NOW, queue_id="Q1"),
        committer.commit(_spool(store, 3), _envelope(3), now=NOW, queue_id="TAKEN"),
        committer.commit(broken, _envelope(2), now=NOW, queue_id="Q2"),
        committer.commit(_spool(store, 4), _envelope(4), now=NOW, queue_id="Q4"),
        return_exceptions=True,
    )
    assert results[0] == "Q1" and results[3] == "Q4"
    assert isinstance(results[1], Exception), "a queue id already taken is refused"
    assert isinstance(results[2], ValueError | OSError), "a blob that cannot be synced"
    assert sorted(_queued(db)) == ["Q1", "Q4", "TAKEN"]
    assert not list((store.root / "tmp").iterdir()), "the failed blob left no temporary file"


async def test_a_piece_of_work_can_undo_its_own_writes(db: Database) -> None:
    batcher = WriteBatcher(db)

    def row(queue_id: str, undo: bool) -> str:
        def work(conn: object) -> str:
            conn.execute(  # type: ignore[attr-defined]
                insert(queue_messages).values(
                    queue_id=queue_id,
                    blob_sha256="0" * 64,
                    size=1,
                    sender="a@a.test",
                    origin="test",
                    client="test",
                    smtputf8=False,
                    received_at=NOW,
                )
            )
            if undo:
                raise Rollback("undone")
            return queue_id

        return work  # type: ignore[return-value]

    results = await asyncio.gather(
        batcher.run(row("KEPT1", False)),
        batcher.run(row("UNDONE", True)),
        batcher.run(row("KEPT2", False)),
    )
    assert results == ["KEPT1", "undone", "KEPT2"]
    assert sorted(_queued(db)) == ["KEPT1", "KEPT2"]
