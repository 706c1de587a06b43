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

import pytest
from sqlalchemy import select

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


# invariant 1: nothing answered 250 before its blob and rows are durable
async def test_messages_arriving_during_a_commit_share_the_next_one(
    db: Database, tmp_path: Path
) -> None:
    gate = Gate()
    store = BlobStore(tmp_path / "blobs", KEY, checkpoint=gate)
    batches: list[int] = []
    committer = Committer(
        db, store, max_age=timedelta(days=5), on_committed=lambda: batches.append(1)
    )
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
    assert len(batches) == 2, "the ten messages that waited went in one commit"
    queued = _queued(db)
    assert sorted(queued) == sorted(answers)
    for sha in queued.values():  # each blob durable under its name, readable
        assert store.read(sha).endswith(b"\r\n")


# invariant 1: nothing answered 250 before its blob and rows are durable
async def test_one_bad_message_fails_alone(db: Database, tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", KEY)
    committer = Committer(db, store, max_age=timedelta(days=5))
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


@pytest.mark.parametrize("count", [1, 3])
def test_commit_all_makes_every_blob_durable(tmp_path: Path, count: int) -> None:
    steps: list[str] = []
    store = BlobStore(tmp_path / "blobs", KEY, checkpoint=steps.append)
    writers = []
    for n in range(count):
        writer = store.writer()
        writer.write(f"blob {n}".encode())
        writers.append(writer)
    refs = store.commit_all(writers)
    assert [store.read(r.sha256) for r in refs] == [f"blob {n}".encode() for n in range(count)]
    assert steps.count("tmp-synced") == count and steps[-1] == "dir-synced"
    assert steps.count("dir-synced") == 1, "the directories are synced once for the batch"
