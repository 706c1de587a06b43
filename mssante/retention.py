"""Patient messaging is not an archive: old messages leave patient mailboxes (MSSC-RETENTION-1).

Messages whose INTERNALDATE is older than the configured age are taken out of
every mailbox of a patient-domain owner (``<INS>@<patient domain>``) the way
IMAP EXPUNGE takes them out (:func:`imap.backend.remove`): the mailbox's
HIGHESTMODSEQ moves, the UIDs go to ``mailbox_expunges`` so QRESYNC clients are
told they VANISHED, and IDLE sessions are woken. Their blobs then go through
the store's GC, which keeps any blob another row (another mailbox, the queue)
still names. Each owner's deletion is audited in the transaction that deletes,
with a pseudonym and counts only: never an INS, a subject or an address.

The work runs in batches, one short transaction each, so a large backlog never
holds SQLite's write lock (or many PostgreSQL row locks) for long.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, select

from annuaire.addresses import normalise_domain
from imap import backend
from mssante import audit
from mssante.clock import Clock
from mssante.db import Database
from mssante.logs import pseudonym
from mssante.schema import mailbox_messages, mailboxes
from mssante.store import GCReport
from mssante.tasks import finish_within, run_every

log = logging.getLogger("mssante.retention")

#: Default age after which patient messages are deleted.
DEFAULT_MAX_AGE = timedelta(days=90)
AUDIT_ACTION = "retention.purge"
#: UIDs per ``IN (…)`` query, well under both engines' parameter limits.
_CHUNK = 500


@dataclass(frozen=True)
class RetentionReport:
    """What one batch (from :func:`purge_expired`) or one run (from the job) removed."""

    messages: int = 0
    mailboxes: int = 0
    #: Blobs the GC removed after the purge (a run's report only).
    blobs: int = 0
    #: A batch was full: more expired messages may remain; call again in a new transaction.
    more: bool = False


def owner_pseudonym(owner: str) -> str:
    """How the audit log names a patient owner: :func:`pseudonym` of the upper-case INS.

    The same form ``mssante patients passwd`` audits, so one patient's entries
    can be found together by whoever knows the INS, and by nobody else.
    """
    local, _, _ = owner.rpartition("@")
    return pseudonym(local.upper())


def purge_expired(
    conn: Connection,
    *,
    owner_domain: str,
    now: datetime,
    max_age: timedelta,
    batch: int = 1000,
    actor: str = "retention",
) -> tuple[RetentionReport, list[int]]:
    """Remove up to ``batch`` messages older than ``max_age`` from ``owner_domain``'s mailboxes.

    Runs in the caller's transaction and returns the report and the ids of the
    mailboxes changed (publish them after the commit to wake IDLE sessions).
    ``report.more`` says the batch was full: call again in a new transaction.
    A zero ``max_age`` disables retention: nothing is removed.
    """
    if max_age <= timedelta(0):
        return RetentionReport(), []
    if batch < 1:
        raise ValueError("batch must be at least 1")
    suffix = "@" + normalise_domain(owner_domain)
    cutoff = now - max_age
    candidates = conn.execute(
        select(mailbox_messages.c.mailbox_id, mailbox_messages.c.uid, mailboxes.c.owner)
        .select_from(mailbox_messages.join(mailboxes))
        .where(
            # Owners are address keys; folding the domain here too costs nothing and
            # keeps rows written before that rule.
            func.lower(mailboxes.c.owner).endswith(suffix, autoescape=True),
            mailbox_messages.c.internal_date < cutoff,
        )
        # No ORDER BY: it would make both engines read every expired row before the
        # LIMIT; unordered, the (mailbox_id, internal_date) index stops at the batch.
        .limit(batch)
    ).all()
    by_mailbox: dict[int, tuple[str, list[int]]] = {}
    for mailbox_id, uid, owner in candidates:
        by_mailbox.setdefault(mailbox_id, (owner, []))[1].append(uid)
    changed: list[int] = []
    per_owner: dict[str, tuple[int, int]] = {}  # owner -> (messages, mailboxes)
    for mailbox_id in sorted(by_mailbox):  # one lock order for every batch
        owner, uids = by_mailbox[mailbox_id]
        present = _still_present(conn, mailbox_id, sorted(uids))
        removed = backend.remove(conn, mailbox_id, present)
        if not removed:
            continue
        changed.append(mailbox_id)
        messages, boxes = per_owner.get(owner, (0, 0))
        per_owner[owner] = (messages + len(removed), boxes + 1)
    for owner, (messages, boxes) in sorted(per_owner.items()):
        audit.record(
            conn,
            at=now,
            actor=actor,
            action=AUDIT_ACTION,
            target_kind="patient",
            target=owner_pseudonym(owner),
            details={
                "messages": messages,
                "mailboxes": boxes,
                "max_age_seconds": int(max_age.total_seconds()),
            },
        )
    report = RetentionReport(
        messages=sum(m for m, _ in per_owner.values()),
        mailboxes=len(changed),
        more=len(candidates) == batch,
    )
    return report, changed


def _still_present(conn: Connection, mailbox_id: int, uids: list[int]) -> list[int]:
    """The UIDs of ``uids`` still in the mailbox, read under the mailbox's row lock.

    An IMAP EXPUNGE may have removed some since the candidates were read; logging
    a UID in ``mailbox_expunges`` twice would fail the whole batch. SQLite's
    write transaction already excludes other writers; PostgreSQL needs the lock.
    """
    locked = conn.execute(
        select(mailboxes.c.id).where(mailboxes.c.id == mailbox_id).with_for_update()
    ).first()
    if locked is None:  # the mailbox was deleted meanwhile
        return []
    present: set[int] = set()
    for start in range(0, len(uids), _CHUNK):
        present.update(
            conn.execute(
                select(mailbox_messages.c.uid).where(
                    mailbox_messages.c.mailbox_id == mailbox_id,
                    mailbox_messages.c.uid.in_(uids[start : start + _CHUNK]),
                )
            ).scalars()
        )
    return [uid for uid in uids if uid in present]


class RetentionJob:
    """A service: purges expired patient messages at start, then every ``every`` seconds.

    A zero ``max_age`` disables it (it starts nothing). A failed run is logged
    and the next one happens on schedule: a missed purge is caught up later.
    """

    name = "retention"

    def __init__(
        self,
        *,
        db: Database,
        clock: Clock,
        owner_domain: str,
        max_age: timedelta,
        every: float,
        collect_garbage: Callable[[], GCReport],
        on_changed: Callable[[int], None] | None = None,
        actor: str = "retention",
        batch: int = 1000,
    ) -> None:
        if max_age < timedelta(0):
            raise ValueError("max_age must not be negative (zero disables retention)")
        if every <= 0:
            raise ValueError("every must be positive")
        self._db = db
        self._clock = clock
        self._domain = normalise_domain(owner_domain)
        self._max_age = max_age
        self._every = every
        self._collect_garbage = collect_garbage
        #: Told each changed mailbox id after its batch commits (wakes IDLE sessions).
        self._on_changed = on_changed
        self._actor = actor
        self._batch = batch
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self._max_age > timedelta(0)

    def describe(self) -> str:
        if not self.enabled:
            return "retention disabled"
        return f"retention ({self._domain}: {_age_text(self._max_age)}, every {self._every:g}s)"

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(
                run_every(
                    self.run_once,
                    clock=self._clock,
                    every=self._every,
                    stopping=self._stopping,
                    log=log,
                    what="retention",
                ),
                name="retention",
            )

    async def stop(self, grace: float) -> None:
        """Let a run in progress finish its batch (within ``grace``), then end the loop."""
        self._stopping.set()
        await finish_within(self._task, grace)

    async def run_once(self) -> RetentionReport:
        """Purge every expired message, batch by batch, then collect the freed blobs."""
        if not self.enabled:
            return RetentionReport()
        now = self._clock.now()
        messages = 0
        touched: set[int] = set()
        while True:
            report, changed = await asyncio.to_thread(self._purge_batch, now)
            messages += report.messages
            touched.update(changed)
            if self._on_changed is not None:
                for mailbox_id in changed:
                    self._on_changed(mailbox_id)
            if not report.more or self._stopping.is_set():
                break
        if not messages:
            return RetentionReport()
        blobs = 0
        try:
            gc = await asyncio.to_thread(self._collect_garbage)
            blobs = len(gc.removed)
        except Exception:  # the purge is committed; the blobs wait for the next GC
            log.exception("retention: blob GC failed after the purge")
        log.info(
            "retention purged",
            extra={
                "fields": {
                    "messages": messages,
                    "mailboxes": len(touched),
                    "blobs_removed": blobs,
                }
            },
        )
        return RetentionReport(messages=messages, mailboxes=len(touched), blobs=blobs)

    def _purge_batch(self, now: datetime) -> tuple[RetentionReport, list[int]]:
        with self._db.transaction() as conn:
            return purge_expired(
                conn,
                owner_domain=self._domain,
                now=now,
                max_age=self._max_age,
                batch=self._batch,
                actor=self._actor,
            )


def _age_text(age: timedelta) -> str:
    if age % timedelta(days=1) == timedelta(0):
        return f"{age.days} days"
    return f"{age.total_seconds():g}s"
