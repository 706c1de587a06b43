"""The Y-5 delays of the embedded DMP, run as a service.

A document deposited invisible to the patient, and not made visible by a
professional since, makes a *generic* notice due one calendar month after its
deposit and becomes visible to the patient after three (:func:`cda.store.run_timers`
decides and audits, ``dmp.notify`` and ``dmp.visibility`` by ``dmp-timer``).
This job runs that at start and then every ``dmp.timer_check_seconds``, from
the injected clock, and turns each due notice into a message to the patient's
MSS-C mailbox ``<INS>@<patient domain>``, enqueued in the same transaction
that records it: a rollback leaves the notice due again, a commit sends it
exactly once (the queue's local delivery is idempotent).

The notice carries nothing about the document (:func:`smtp.autoreply.build_dmp_notice`)
and leaves with the null reverse-path, so nothing ever answers it. Logs give
counts only, never an INS, an address or a title.

Several nodes sharing one database may all run the job: :func:`run_timers`
moves each row with a conditional UPDATE and acts only when it moved it, so a
notice is never recorded (nor enqueued) twice for one document.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection

from annuaire.ins import patient_address
from cda.store import TimerReport, run_timers
from mssante.clock import Clock
from mssante.db import Database
from mssante.store import BlobStore
from mssante.tasks import finish_within, run_every
from smtp.autoreply import build_dmp_notice
from smtp.queue import enqueue_generated, new_queue_id

__all__ = ["DMP_ORIGIN", "DmpTimerJob"]

log = logging.getLogger("mssante.dmp")

#: Queue origin of the Y-5 notices.
DMP_ORIGIN = "dmp"


class DmpTimerJob:
    """A service: fires the due Y-5 delays at start, then every ``every`` seconds.

    A failed run is logged and the next one happens on schedule: what was due
    is still due (nothing is recorded without its notice).
    """

    name = "dmp-timers"

    def __init__(
        self,
        *,
        db: Database,
        store: BlobStore,
        clock: Clock,
        patient_domain: str,
        from_address: str,
        hostname: str,
        max_age: timedelta,
        every: float,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        if every <= 0:
            raise ValueError("every must be positive")
        self._db = db
        self._store = store
        self._clock = clock
        self._patient_domain = patient_domain
        self._from = from_address
        self._hostname = hostname
        #: Queue lifetime of the notices.
        self._max_age = max_age
        self._every = every
        #: Called after a run that enqueued notices has committed (wakes the queue
        #: runner; without it the runner finds them at its next poll).
        self._on_enqueued = on_enqueued
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def describe(self) -> str:
        return f"dmp timers (every {self._every:g}s)"

    async def start(self) -> None:
        self._task = asyncio.create_task(
            run_every(
                self.run_once,
                clock=self._clock,
                every=self._every,
                stopping=self._stopping,
                log=log,
                what="dmp timer",
            ),
            name=self.name,
        )

    async def stop(self, grace: float) -> None:
        """Let a run in progress commit (within ``grace``), then end the loop."""
        self._stopping.set()
        await finish_within(self._task, grace)

    async def run_once(self) -> TimerReport:
        """Fire every due delay in one transaction; notices are enqueued in it."""
        now = self._clock.now()
        report = await asyncio.to_thread(self._db.run_transaction, lambda c: self._run(c, now))
        if report.patients_notified and self._on_enqueued is not None:
            self._on_enqueued()
        if report.notified or report.made_visible:
            log.info(
                "dmp timers fired",
                extra={
                    "fields": {
                        "notices": report.patients_notified,
                        "documents_notified": len(report.notified),
                        "documents_revealed": len(report.made_visible),
                    }
                },
            )
        return report

    def _run(self, conn: Connection, now: datetime) -> TimerReport:
        def notify(ins: str) -> None:
            self._enqueue_notice(conn, ins, now)

        return run_timers(conn, now, notify=notify)

    def _enqueue_notice(self, conn: Connection, ins: str, now: datetime) -> None:
        to = patient_address(ins, self._patient_domain)
        queue_id = f"{new_queue_id(now)}Y{secrets.token_hex(3).upper()}"
        data = build_dmp_notice(
            from_address=self._from,
            to=to,
            now=now,
            message_id=f"{queue_id}.dmp-notice@{self._hostname}",
        )
        enqueue_generated(
            conn,
            self._store,
            data,
            to=to,
            origin=DMP_ORIGIN,
            client=self._hostname,
            now=now,
            max_age=self._max_age,
            queue_id=queue_id,
        )
