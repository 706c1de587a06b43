"""The queue runner: take due rows, deliver them, record what happened.

Each outcome is recorded in one transaction with its consequences: a local
append and the row's deletion; a DSN enqueued and the row's deletion; a retry
date. A crash anywhere leaves either the row (delivered again later: the
mailbox append is idempotent) or its outcome, never neither.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Connection

from annuaire import (
    Bridge,
    LocalMailbox,
    Refused,
    Remote,
    Responder,
    Route,
    RoutingContext,
    route,
)
from mssante.batch import Rollback, WriteBatcher
from mssante.clock import Clock
from mssante.db import Database
from mssante.logs import pseudonym
from mssante.metrics import Metrics
from mssante.store import BlobRef, BlobStore
from mssante.tasks import finish_within
from smtp.accept import read_header_block
from smtp.client import OutboundMessage, OutboundRecipient, RecipientOutcome
from smtp.dsn import (
    MAX_FULL_ORIGINAL,
    RecipientStatus,
    Report,
    build_dsn,
    must_not_send_dsn,
    notify_wants,
    xtext_encode,
)
from smtp.patients import NOTIFICATION_ORIGIN, PatientDesk, Staged
from smtp.queue import (
    Work,
    append_delivery,
    claim,
    defer,
    enqueue_generated,
    finish,
    next_attempt,
    stats,
)

if TYPE_CHECKING:
    from cda.ack import DocumentOutcome
    from cda.bridge import BridgeDesk
    from cda.bridge import Staged as BridgeStaged

__all__ = ["Outcome", "QueueRunner", "RunnerSettings"]

log = logging.getLogger("mssante.smtp.queue")

#: While the queue keeps it busy, the runner refreshes its gauges at most this often (seconds).
GAUGE_INTERVAL = 1.0

Deliver = Callable[[str, OutboundMessage], Awaitable[list[RecipientOutcome]]]
DeliverTo = Callable[[OutboundMessage], Awaitable[list[RecipientOutcome]]]


@dataclass(frozen=True)
class RunnerSettings:
    hostname: str
    postmaster: str
    schedule: Sequence[float]
    max_age: timedelta
    delay_notice: timedelta | None
    lease: timedelta
    poll_seconds: float
    parallel: int
    batch: int = 100


@dataclass(frozen=True)
class Outcome:
    """What became of one row in this attempt."""

    kind: Literal["delivered", "temporary", "permanent"]
    status: str
    text: str
    remote_mta: str | None = None
    code: int = 0
    relayed: bool = False


@dataclass(frozen=True)
class _Appended:
    """A local delivery committed: the mailbox appended to (None: answered instead)."""

    mailbox: int | None
    integrated: list[DocumentOutcome]


class QueueRunner:
    """A service: delivers due rows until stopped; ``wake()`` after each acceptance."""

    name = "queue"

    def __init__(
        self,
        *,
        db: Database,
        store: BlobStore,
        clock: Clock,
        metrics: Metrics,
        routing: RoutingContext,
        settings: RunnerSettings,
        deliver_remote: Deliver,
        rng: random.Random | None = None,
        on_appended: Callable[[int], None] | None = None,
        patients: PatientDesk | None = None,
        deliver_notification: DeliverTo | None = None,
        bridge: BridgeDesk | None = None,
        batcher: WriteBatcher | None = None,
    ) -> None:
        self.db = db
        #: Outcomes are recorded in group commits, shared with acceptance when given.
        self.batcher = batcher or WriteBatcher(db)
        self.store = store
        self.clock = clock
        self.routing = routing
        self.settings = settings
        self.deliver_remote = deliver_remote
        #: Told the mailbox id after a local delivery commits (wakes IDLE sessions).
        self.on_appended = on_appended
        #: MSS-C: patient mail is decided by policies through this desk.
        self.patients = patients
        #: The notification smarthost (MSSC-NOTIF-1); None: notifications are not configured.
        self.deliver_notification = deliver_notification
        #: The envoi-en-Y bridge (Y-2); None: the bridge address is refused (5.3.3).
        self.bridge = bridge
        self.owner = f"{socket.gethostname()[:30]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._rng = rng or random.Random()  # noqa: S311 (jitter, not crypto)
        self._wake = asyncio.Event()
        self._gauges_at = float("-inf")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._outcomes = metrics.counter(
            "mssante_queue_outcomes_total", "Delivery outcomes, per kind (delivered, deferred, …)."
        )
        self._gauge = metrics.gauge(
            "mssante_queue_size",
            "Queue contents, per kind: messages, recipients, deferred (tried before), leased.",
        )

    # ------------------------------------------------------------------ service

    def describe(self) -> str:
        return f"queue runner {self.owner}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="queue-runner")

    async def stop(self, grace: float) -> None:
        self._stopping = True
        self._wake.set()
        await finish_within(self._task, grace)

    def wake(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                worked = await self.run_once()
            except Exception:
                log.exception("queue run failed; retrying after the poll interval")
                worked = 0
            if worked and self.clock.monotonic() - self._gauges_at < GAUGE_INTERVAL:
                continue  # busy: the gauges can wait for a pause, or a second
            await self._update_gauges()
            self._gauges_at = self.clock.monotonic()
            if worked or self._stopping:
                continue
            sleeper = asyncio.ensure_future(self.clock.sleep(self.settings.poll_seconds))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                woken.cancel()

    async def _update_gauges(self) -> None:
        def read() -> dict[str, int]:
            with self.db.read() as conn:
                return stats(conn, now=self.clock.now())

        try:
            for kind, value in (await asyncio.to_thread(read)).items():
                self._gauge.set(value, kind=kind)
        except Exception:
            log.exception("could not read the queue gauges")

    # ------------------------------------------------------------------ one pass

    async def run_once(self) -> int:
        """Claim and process one batch of due rows; returns how many were claimed."""
        now = self.clock.now()
        batch = await asyncio.to_thread(
            claim,
            self.db,
            owner=self.owner,
            now=now,
            lease=self.settings.lease,
            limit=self.settings.batch,
        )
        if not batch:
            return 0
        local: list[Work] = []
        remote: dict[tuple[int, str], list[Work]] = defaultdict(list)
        notifications: list[Work] = []
        routes = await asyncio.to_thread(self._routes, batch)
        for work in batch:
            if work.message.origin == NOTIFICATION_ORIGIN:
                notifications.append(work)
                continue
            found = routes[work.recipient]
            patient_sender = self.patients is not None and self.patients.sent_by_patient(work)
            if patient_sender and await self._screened(work, found):
                continue
            if isinstance(found, Remote):
                remote[(work.message.id, found.domain)].append(work)
            else:
                local.append(work)
        limit = asyncio.Semaphore(self.settings.parallel)

        async def bounded(job: Awaitable[None]) -> None:
            async with limit:
                await job

        jobs = [bounded(self._deliver_local(w)) for w in local]
        sites: dict[str, asyncio.Future[Outcome | None]] = {}
        jobs += [
            bounded(self._deliver_group(domain, rows, sites))
            for (_, domain), rows in remote.items()
        ]
        jobs += [bounded(self._deliver_notification(w)) for w in notifications]
        await asyncio.gather(*jobs)
        return len(batch)

    def _routes(self, batch: list[Work]) -> dict[str, Route]:
        """Where each recipient of the batch goes, read in one transaction."""
        wanted = {w.recipient for w in batch if w.message.origin != NOTIFICATION_ORIGIN}
        with self.db.read() as conn:
            return {address: route(conn, address, self.routing) for address in wanted}

    async def _screened(self, work: Work, found: Route) -> bool:
        """MSS-C rules for mail a patient sent: True when the row was answered instead."""
        assert self.patients is not None
        desk = self.patients

        def screen() -> bool:
            staged = desk.stage(work)
            with self.db.transaction() as conn:
                if not desk.screen_patient_mail(conn, work, found, staged, self.clock.now()):
                    conn.rollback()
                    return False
                if not finish(conn, work, owner=self.owner):
                    conn.rollback()
            return True

        try:
            handled = await asyncio.to_thread(screen)
        except Exception:
            log.exception(
                "patient mail screening failed",
                extra={"fields": {"queue_id": work.message.queue_id}},
            )
            await self._record(
                work, Outcome("temporary", "4.3.0", "policy check failed, will retry")
            )
            return True
        if handled:
            self._outcomes.inc(kind="answered")
            self.wake()
        return handled

    # ------------------------------------------------------------------ local

    async def _deliver_local(self, work: Work) -> None:
        """Append to INBOX (or answer, or hand to the bridge) and finish the row, in one
        savepoint of a group commit; the effects only once it is committed."""
        staged: list[tuple[Staged | None, BridgeStaged | None]] = []
        now = self.clock.now()
        try:
            done = await self.batcher.run(
                lambda conn: self._append_in(conn, work, *staged[0], now),
                before=lambda: staged.append(self._stage_local(work)),
            )
        except Exception:
            log.exception(
                "local delivery failed", extra={"fields": {"queue_id": work.message.queue_id}}
            )
            done = Outcome("temporary", "4.3.0", "local delivery failed, will retry")
        if isinstance(done, Outcome):
            await self._record(work, done)
        elif done is not None:
            self._appended(work, done)

    def _stage_local(self, work: Work) -> tuple[Staged | None, BridgeStaged | None]:
        """What the patient desk or the bridge prepare outside the transaction (blobs)."""
        desk, bridge = self.patients, self.bridge
        staged = desk.stage(work) if desk is not None and desk.concerns(work.recipient) else None
        for_bridge = (
            bridge.stage(work) if bridge is not None and bridge.concerns(work.recipient) else None
        )
        return staged, for_bridge

    def _append_in(
        self,
        conn: Connection,
        work: Work,
        staged: Staged | None,
        for_bridge: BridgeStaged | None,
        now: datetime,
    ) -> Outcome | _Appended:
        """The delivery's writes; an Outcome (nothing written) when it cannot be done."""
        desk, bridge = self.patients, self.bridge
        # Routed again inside the transaction that appends: a BAL removed since
        # the batch was split must not receive the message.
        found = route(conn, work.recipient, self.routing)
        if isinstance(found, Refused):
            return Outcome("permanent", found.status, found.reason, code=found.code)
        if isinstance(found, Bridge) and (bridge is None or for_bridge is None):
            return Outcome(
                "permanent", "5.3.3", "The envoi-en-Y bridge is not available on this node"
            )
        if isinstance(found, Remote):
            return Outcome("temporary", "4.4.0", "the recipient moved to another operator")
        appended_to: int | None
        integrated: list[DocumentOutcome] = []
        if isinstance(found, Bridge):
            assert bridge is not None and for_bridge is not None
            if not bridge.allowed(conn, work.message.sender):
                return Outcome(
                    "permanent", "5.7.1", "Only the bridge's client mailboxes may send to it"
                )
            appended_to = None
            integrated = bridge.integrate(conn, work, for_bridge, now)
        elif isinstance(found, LocalMailbox):
            appended_to = append_delivery(conn, work, found.address, work.message.blob, now=now)
        elif desk is None or staged is None:
            return Outcome("permanent", "5.3.3", "This node does not serve patient spaces")
        elif isinstance(found, Responder):
            appended_to = None
            desk.answer_test(conn, work, staged, now)
        else:
            appended_to = desk.deliver_to_patient(conn, work, found, staged, now)
        if appended_to is not None:
            self._success_dsn(conn, work, now)
        if not finish(conn, work, owner=self.owner):
            # Another node owns the row now; it will deliver (idempotently).
            raise Rollback(None)
        return _Appended(appended_to, integrated)

    def _appended(self, work: Work, done: _Appended) -> None:
        """After the commit: the bridge's counters, IDLE wake-ups, metrics and the log."""
        if done.integrated:
            assert self.bridge is not None
            self.bridge.committed(done.integrated)
        if done.mailbox is None:
            self._outcomes.inc(kind="answered")
            self.wake()  # the automatic message it queued
            return
        if self.on_appended is not None:
            self.on_appended(done.mailbox)
        self._outcomes.inc(kind="delivered")
        log.info(
            "delivered",
            extra={
                "fields": {
                    "queue_id": work.message.queue_id,
                    "to": pseudonym(work.recipient),
                    "route": "local",
                }
            },
        )

    def _success_dsn(self, conn: Connection, work: Work, now: datetime) -> str | None:
        if must_not_send_dsn(work.message.sender) or not notify_wants(work.notify, "delivered"):
            return None
        status = RecipientStatus(
            final_recipient=work.recipient,
            action="delivered",
            status="2.0.0",
            original_recipient=work.orcpt,
            last_attempt=now,
        )
        return self._enqueue_dsn(conn, work, [status], now)

    # ------------------------------------------------------------------ remote

    async def _deliver_notification(self, work: Work) -> None:
        """MSSC-NOTIF-1: the only mail that leaves the trust space, through its smarthost."""
        if self.deliver_notification is None:
            await self._record(
                work, Outcome("permanent", "5.3.5", "notifications are not configured on this node")
            )
            return
        outbound = await self._outbound([work])
        if outbound is None:
            return
        outcomes = await self.deliver_notification(outbound)
        await self._record_outcomes([work], outcomes)

    async def _outbound(self, rows: list[Work]) -> OutboundMessage | None:
        """The message of ``rows`` ready to send; None (rows deferred) when unreadable."""
        message = rows[0].message
        try:
            data = await asyncio.to_thread(self.store.read, message.blob.sha256)
        except Exception:
            log.exception(
                "queued message unreadable", extra={"fields": {"queue_id": message.queue_id}}
            )
            for work in rows:
                await self._record(work, Outcome("temporary", "4.3.0", "message store read failed"))
            return None
        return OutboundMessage(
            sender=message.sender,
            recipients=tuple(
                OutboundRecipient(
                    w.recipient, ",".join(sorted(w.notify)) if w.notify else None, w.orcpt
                )
                for w in rows
            ),
            data=data,
            size=len(data),
            envid=xtext_encode(message.envid) if message.envid else None,
            ret={"full": "FULL", "headers": "HDRS"}.get(message.ret or ""),
            eight_bit=message.body == "8BITMIME",
            smtputf8=message.smtputf8,
        )

    async def _deliver_group(
        self, domain: str, rows: list[Work], sites: dict[str, asyncio.Future[Outcome | None]]
    ) -> None:
        """Send one message to its recipients in ``domain``.

        Within one pass, the first message to a domain goes alone: if none
        of the domain's servers answers (4.4.1), the others of the pass are
        deferred with the same outcome instead of each trying in turn (like
        Postfix's dead-destination handling); else they go in parallel.
        """
        probe = sites.get(domain)
        if probe is not None:
            unreachable = await asyncio.shield(probe)
            if unreachable is not None:
                await asyncio.gather(*(self._record(work, unreachable) for work in rows))
                return
        else:
            probe = sites[domain] = asyncio.get_running_loop().create_future()
        try:
            outbound = await self._outbound(rows)
            if outbound is None:
                return
            outcomes = await self.deliver_remote(domain, outbound)
            if outcomes and all(o.status == "4.4.1" for o in outcomes) and not probe.done():
                probe.set_result(Outcome("temporary", "4.4.1", outcomes[0].text))
        finally:
            if not probe.done():
                probe.set_result(None)  # the domain answered (or we could not tell): go on
        await self._record_outcomes(rows, outcomes)

    async def _record_outcomes(self, rows: list[Work], outcomes: list[RecipientOutcome]) -> None:
        """One record per recipient, all in the same group commit."""
        await asyncio.gather(
            *(
                self._record(
                    work,
                    Outcome(
                        result.kind,
                        result.status,
                        result.text,
                        result.remote_mta,
                        result.code,
                        result.relayed,
                    ),
                )
                for work, result in zip(rows, outcomes, strict=True)
            )
        )

    # ------------------------------------------------------------------ outcomes

    async def _record(self, work: Work, outcome: Outcome) -> None:
        fields = {
            "queue_id": work.message.queue_id,
            "to": pseudonym(work.recipient),
            "status": outcome.status,
            "attempts": work.attempts + 1,
        }
        now = self.clock.now()
        try:
            kind = await self.batcher.run(lambda conn: self._record_in(conn, work, outcome, now))
        except Exception:
            log.exception(
                "could not record a delivery outcome; the lease will expire and it is retried",
                extra={"fields": {"queue_id": work.message.queue_id}},
            )
            return
        if kind is None:
            log.warning("lease lost before the outcome was recorded", extra={"fields": fields})
            return
        self._outcomes.inc(kind=kind)
        log.info(kind, extra={"fields": fields})

    def _record_in(
        self, conn: Connection, work: Work, outcome: Outcome, now: datetime
    ) -> str | None:
        """Record ``outcome`` (with its DSN); the kind recorded, None if the lease was lost."""
        if outcome.kind == "delivered":
            if (
                outcome.relayed
                and not must_not_send_dsn(work.message.sender)
                and notify_wants(work.notify, "relayed")
            ):
                self._enqueue_dsn(
                    conn,
                    work,
                    [self._status(work, "relayed", outcome, now)],
                    now,
                )
            ok = finish(conn, work, owner=self.owner)
            kind = "delivered"
        elif outcome.kind == "permanent" or now >= work.expires_at:
            if outcome.kind == "temporary":
                outcome = Outcome(
                    "permanent",
                    "4.4.7" if outcome.status.startswith("4") else outcome.status,
                    f"delivery time expired; last error: {outcome.text}",
                    outcome.remote_mta,
                    outcome.code,
                )
            if not must_not_send_dsn(work.message.sender) and notify_wants(work.notify, "failed"):
                self._enqueue_dsn(conn, work, [self._status(work, "failed", outcome, now)], now)
            ok = finish(conn, work, owner=self.owner)
            kind = "bounced"
        else:
            notice = self.settings.delay_notice
            send_delay = (
                notice is not None
                and not work.delay_notified
                and now - work.created_at >= notice
                and not must_not_send_dsn(work.message.sender)
                and notify_wants(work.notify, "delayed")
            )
            if send_delay:
                self._enqueue_dsn(conn, work, [self._status(work, "delayed", outcome, now)], now)
            ok = defer(
                conn,
                work,
                owner=self.owner,
                status=_status_line(outcome),
                next_at=next_attempt(work.attempts, self.settings.schedule, now, self._rng),
                delay_notified=True if send_delay else None,
            )
            kind = "deferred"
        if not ok:
            raise Rollback(None)  # another node owns the row now: nothing of ours stays
        return kind

    def _status(
        self,
        work: Work,
        action: Literal["failed", "delayed", "relayed"],
        outcome: Outcome,
        now: datetime,
    ) -> RecipientStatus:
        status = outcome.status
        if action == "relayed":
            status = "2.0.0"
        elif action == "delayed" and not status.startswith("4"):
            status = "4.0.0"
        elif action == "failed" and status[0] not in "45":
            status = "5.0.0"
        return RecipientStatus(
            final_recipient=work.recipient,
            action=action,
            status=status,
            original_recipient=work.orcpt,
            diagnostic_code=f"{outcome.code} {outcome.text}" if outcome.code else None,
            remote_mta=outcome.remote_mta,
            last_attempt=now,
            will_retry_until=work.expires_at if action == "delayed" else None,
        )

    def _enqueue_dsn(
        self, conn: Connection, work: Work, statuses: list[RecipientStatus], now: datetime
    ) -> str:
        message = work.message
        original = self._original(message.blob, message.ret)
        report = Report(
            reporting_mta=self.settings.hostname,
            original_envelope_id=message.envid,
            arrival_date=message.received_at,
            recipients=tuple(statuses),
            return_content="full" if message.ret == "full" else "headers",
        )
        queue_id = f"{message.queue_id}D{secrets.token_hex(3).upper()}"
        data = build_dsn(
            report,
            original=original,
            sender=message.sender,
            postmaster=self.settings.postmaster,
            now=now,
            message_id=f"{queue_id}.dsn@{self.settings.hostname}",
        )
        enqueue_generated(
            conn,
            self.store,
            data,
            to=message.sender,
            origin="dsn",
            client=self.settings.hostname,
            now=now,
            max_age=self.settings.max_age,
            queue_id=queue_id,
        )
        log.info(
            "dsn queued",
            extra={
                "fields": {
                    "queue_id": queue_id,
                    "about": message.queue_id,
                    "action": statuses[0].action,
                }
            },
        )
        return queue_id

    def _original(self, blob: BlobRef, ret: str | None) -> bytes:
        """The original for the DSN: whole if RET=FULL and small, else the header block."""
        if ret == "full" and blob.size <= MAX_FULL_ORIGINAL:
            return self.store.read(blob.sha256)
        return read_header_block(self.store, blob.sha256)


def _status_line(outcome: Outcome) -> str:
    code = f"{outcome.code} " if outcome.code else ""
    return f"{code}{outcome.status} {outcome.text}"
