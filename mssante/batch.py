"""Group commit for the small write transactions of the event loop.

Accepting a message, recording a delivery outcome, appending to a mailbox:
each is a short transaction whose cost is mostly the commit (an fsync) and
the hop to a thread. A :class:`WriteBatcher` runs the ones that arrive while
a batch is being committed together in the next batch: one thread hop, one
transaction, each piece of work in a SAVEPOINT of its own so that one that
fails is undone alone and its caller gets its exception, then one commit.
Nobody is answered before that commit (architecture invariant 1). The batch
grows with the load; a lone piece of work never waits for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

from mssante.db import Database

__all__ = ["Rollback", "WriteBatcher"]

T = TypeVar("T")


class Rollback(Exception):
    """Raised by a piece of work to undo its own writes and still answer ``value``."""

    def __init__(self, value: object = None) -> None:
        super().__init__()
        self.value = value


@dataclass
class _Work(Generic[T]):
    work: Callable[[Connection], T]
    before: Callable[[], object] | None
    done: asyncio.Future[T]


class WriteBatcher:
    """Runs write transactions many at a time; see the module docstring."""

    def __init__(self, db: Database, *, max_batch: int = 64) -> None:
        self.db = db
        self.max_batch = max_batch
        self._waiting: list[_Work[Any]] = []
        self._draining: asyncio.Task[None] | None = None

    async def run(
        self, work: Callable[[Connection], T], *, before: Callable[[], object] | None = None
    ) -> T:
        """``work(conn)`` in a savepoint of the next batch; its result once committed.

        ``before`` runs first in the batch's thread, outside the transaction
        (e.g. fsync the blob the rows will name); if it raises, ``work`` is
        not run and the exception is this caller's alone.
        """
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Work(work, before, done))
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(), name="group-commit")
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    outcomes = await asyncio.to_thread(self._commit, batch)
                except asyncio.CancelledError:  # going down: nobody is told "done"
                    for item in batch + self._waiting:
                        item.done.cancel()
                    raise
                except Exception as exc:
                    outcomes = [exc] * len(batch)
                for item, outcome in zip(batch, outcomes, strict=True):
                    if item.done.done():
                        continue
                    if isinstance(outcome, _Failed):
                        item.done.set_exception(outcome.error)
                    else:
                        item.done.set_result(outcome)
        finally:
            self._draining = None

    def _commit(self, batch: list[_Work[Any]]) -> list[object]:
        outcomes: list[object] = [None] * len(batch)
        ready: list[int] = []
        for i, item in enumerate(batch):
            try:
                if item.before is not None:
                    item.before()
            except Exception as exc:
                outcomes[i] = _Failed(exc)
            else:
                ready.append(i)
        try:
            with self.db.transaction() as conn:
                for i in ready:
                    outcomes[i] = _in_savepoint(conn, batch[i].work)
        except Exception as exc:  # the commit itself failed: nothing of the batch is durable
            return [o if isinstance(o, _Failed) else _Failed(exc) for o in outcomes]
        return outcomes


@dataclass(frozen=True)
class _Failed:
    error: Exception


def _in_savepoint(conn: Connection, work: Callable[[Connection], object]) -> object:
    savepoint = conn.begin_nested()
    try:
        result = work(conn)
    except Rollback as undo:
        savepoint.rollback()
        return undo.value
    except Exception as exc:
        savepoint.rollback()
        return _Failed(exc)
    savepoint.commit()
    return result
