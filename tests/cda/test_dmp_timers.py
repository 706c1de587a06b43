# covers: Y-5, Y-6
"""The Y-5 timer service: a generic notice after one month, visible after three."""

from __future__ import annotations

import email
import logging
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from annuaire import RoutingContext, address_key
from annuaire.patients import upsert_patient
from cda import store as dmp
from cda.codes import Visibility
from cda.document import parse_cda
from cda.timers import DMP_ORIGIN, DmpTimerJob
from mssante import index
from mssante.audit import AuditEntry
from mssante.clock import FakeClock
from mssante.db import Database
from mssante.metrics import Metrics
from mssante.schema import queue_messages
from mssante.store import BlobStore
from policies.texts import DMP_NOTICE_SUBJECT, FROM_NAME
from smtp.patients import PatientDesk, PatientSettings
from smtp.queue import QueueEntry, list_entries
from smtp.runner import QueueRunner, RunnerSettings

from cdagen import AUTHOR_PS_ID, DOC_ROOT, INS, SET_ROOT, make_cda

PATIENT_DOMAIN = "patient.mssante.fr"
PATIENT = f"{INS}@{PATIENT_DOMAIN}"
FROM = f"ne-pas-repondre@{PATIENT_DOMAIN}"
TITLE = "Compte rendu de biopsie hépatique"
DEPOSIT = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
INVISIBLE = frozenset({Visibility.INVISIBLE_PATIENT})


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(current=DEPOSIT)


def new_job(db: Database, blobs: BlobStore, clock: FakeClock, **kwargs: object) -> DmpTimerJob:
    options: dict[str, object] = {
        "db": db,
        "store": blobs,
        "clock": clock,
        "patient_domain": PATIENT_DOMAIN,
        "from_address": FROM,
        "hostname": "mx.operateur.test",
        "max_age": timedelta(days=5),
        "every": 3600,
        **kwargs,
    }
    return DmpTimerJob(**options)  # type: ignore[arg-type]


@pytest.fixture
def job(db: Database, blobs: BlobStore, clock: FakeClock) -> DmpTimerJob:
    return new_job(db, blobs, clock)


def deposit(
    db: Database,
    blobs: BlobStore,
    clock: FakeClock,
    ext: str = "v1",
    visibility: frozenset[Visibility] = INVISIBLE,
) -> int:
    data = make_cda(doc_id=(DOC_ROOT, ext), set_id=(SET_ROOT, ext), title=TITLE)
    with db.transaction() as conn:
        result = dmp.deposit(
            conn,
            blobs,
            parse_cda(data, test_mode=True),
            data,
            visibility=visibility,
            author=AUTHOR_PS_ID,
            now=clock.now(),
            test_mode=True,
        )
    assert result.kind == "deposited" and result.document_id is not None
    return result.document_id


def queued(db: Database) -> list[QueueEntry]:
    with db.read() as conn:
        return list_entries(conn)


def notice_bytes(db: Database, blobs: BlobStore, queue_id: str) -> bytes:
    with db.read() as conn:
        sha = conn.execute(
            select(queue_messages.c.blob_sha256).where(queue_messages.c.queue_id == queue_id)
        ).scalar_one()
    return blobs.read(sha)


def timer_trail(db: Database) -> list[AuditEntry]:
    with db.read() as conn:
        return [e for e in dmp.audit_trail(conn, INS) if e.actor == dmp.TIMER_ACTOR]


def patient_view(db: Database, clock: FakeClock) -> list[int]:
    with db.transaction() as conn:
        return [d.id for d in dmp.documents(conn, INS, view="patient", now=clock.now())]


def text_of(raw: bytes) -> str:
    msg: Message = email.message_from_bytes(raw)
    payload = msg.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode("utf-8")


async def test_a_notice_after_one_month_then_visible_after_three(
    db: Database, blobs: BlobStore, clock: FakeClock, job: DmpTimerJob
) -> None:
    doc = deposit(db, blobs, clock)
    assert await job.run_once() == dmp.TimerReport()
    clock.current = datetime(2026, 2, 28, 9, 59, tzinfo=UTC)  # one calendar month is the 28th
    assert await job.run_once() == dmp.TimerReport()
    assert queued(db) == []

    clock.current = datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    report = await job.run_once()
    assert report == dmp.TimerReport(notified=(doc,), patients_notified=1)
    [entry] = queued(db)
    assert entry.sender == "", "null reverse-path: nothing answers the notice"
    assert entry.origin == DMP_ORIGIN
    assert [r[0] for r in entry.recipients] == [PATIENT]
    raw = notice_bytes(db, blobs, entry.queue_id)
    for secret in (TITLE, "biopsie", AUTHOR_PS_ID, DOC_ROOT, "11490-0", "Lettre de liaison"):
        assert secret.encode() not in raw, secret
    msg = email.message_from_bytes(raw)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["To"] == f"<{PATIENT}>"  # the INS only as the mailbox's own address
    assert str(make_header(decode_header(msg["Subject"]))) == (DMP_NOTICE_SUBJECT)
    assert parseaddr(msg["From"])[1] == FROM
    assert msg["Message-ID"] == f"<{entry.queue_id}.dmp-notice@mx.operateur.test>"
    text = text_of(raw)
    assert INS not in text and "2026" not in text
    fr = text.index("Un nouveau document a été ajouté à votre dossier médical Mon espace santé")
    assert fr < text.index("A new document has been added to your Mon espace santé health record")
    assert FROM_NAME in text
    assert [(e.action, e.details) for e in timer_trail(db)] == [("dmp.notify", {"document": doc})]
    assert patient_view(db, clock) == [], "the notice does not reveal the document"

    assert await job.run_once() == dmp.TimerReport(), "the same time again: nothing new"
    assert len(queued(db)) == 1

    clock.current = datetime(2026, 4, 30, 9, 59, tzinfo=UTC)
    assert await job.run_once() == dmp.TimerReport()
    clock.current = datetime(2026, 4, 30, 10, 0, tzinfo=UTC)
    assert await job.run_once() == dmp.TimerReport(made_visible=(doc,))
    assert patient_view(db, clock) == [doc]
    assert len(queued(db)) == 1, "no second notice"
    trail = timer_trail(db)
    assert [e.action for e in trail] == ["dmp.notify", "dmp.visibility"]
    assert trail[1].details == {"document": doc, "before": "INVISIBLE_PATIENT", "flags": ""}
    # Y-6: the patient reads both entries once the document is visible.
    with db.read() as conn:
        mine = dmp.audit_trail(conn, INS, patient_view=True)
    assert {"dmp.notify", "dmp.visibility"} <= {e.action for e in mine}

    clock.advance(timedelta(days=400))
    assert await job.run_once() == dmp.TimerReport()
    assert len(queued(db)) == 1 and len(timer_trail(db)) == 2


async def test_one_notice_per_patient_and_nothing_for_visible_documents(
    db: Database, blobs: BlobStore, clock: FakeClock, job: DmpTimerJob
) -> None:
    first = deposit(db, blobs, clock, "a")
    second = deposit(db, blobs, clock, "b")
    deposit(db, blobs, clock, "c", visibility=frozenset())
    woken: list[None] = []
    job = new_job(db, blobs, clock, on_enqueued=lambda: woken.append(None))
    clock.advance(timedelta(days=31))
    report = await job.run_once()
    assert report == dmp.TimerReport(notified=(first, second), patients_notified=1)
    assert len(queued(db)) == 1, "two documents, one notice"
    assert woken == [None], "the queue runner is woken after the commit"
    assert await job.run_once() == dmp.TimerReport()
    assert woken == [None]


async def test_a_late_run_notifies_and_reveals_at_once(
    db: Database, blobs: BlobStore, clock: FakeClock, job: DmpTimerJob
) -> None:
    doc = deposit(db, blobs, clock)
    clock.advance(timedelta(days=200))  # the node was down for months
    assert await job.run_once() == dmp.TimerReport((doc,), (doc,), 1)
    assert len(queued(db)) == 1
    assert [e.action for e in timer_trail(db)] == ["dmp.notify", "dmp.visibility"]


async def test_a_failed_run_leaves_the_notice_due(
    db: Database, blobs: BlobStore, clock: FakeClock
) -> None:
    doc = deposit(db, blobs, clock)
    clock.advance(timedelta(days=40))
    broken = new_job(db, blobs, clock, patient_domain="not a domain")
    with pytest.raises(ValueError):
        await broken.run_once()
    assert queued(db) == [] and timer_trail(db) == [], "rolled back whole"
    report = await new_job(db, blobs, clock).run_once()
    assert report.notified == (doc,) and len(queued(db)) == 1


async def test_the_service_runs_at_start_then_every_interval(
    db: Database, blobs: BlobStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mssante.dmp")
    deposit(db, blobs, clock)
    clock.advance(timedelta(days=32))
    job = new_job(db, blobs, clock, every=600)
    assert job.describe() == "dmp timers (every 600s)"
    await job.start()
    await clock.sleeping()
    assert len(queued(db)) == 1, "a run at start"
    deposit(db, blobs, clock, "late")
    clock.advance(timedelta(days=31))
    await clock.sleeping()  # the loop sleeps again once the second run is over
    assert len(queued(db)) == 2, "a run after the interval"
    await job.stop(grace=5)
    fired = [r for r in caplog.records if r.getMessage() == "dmp timers fired"]
    assert len(fired) == 2
    logged = " ".join(f"{r.getMessage()} {getattr(r, 'fields', '')}" for r in caplog.records)
    assert INS not in logged and TITLE not in logged and PATIENT_DOMAIN not in logged


def test_every_must_be_positive(db: Database, blobs: BlobStore, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="positive"):
        new_job(db, blobs, clock, every=0)


async def test_the_notice_reaches_the_patients_mailbox_through_the_queue_runner(
    db: Database, blobs: BlobStore, clock: FakeClock
) -> None:
    with db.transaction() as conn:
        upsert_patient(conn, INS, now=clock.now(), status="open", first_name="Léa", last_name="Roy")
    deposit(db, blobs, clock)
    clock.advance(timedelta(days=32))
    runner = QueueRunner(
        db=db,
        store=blobs,
        clock=clock,
        metrics=Metrics(),
        routing=RoutingContext(
            local_domains=frozenset({"operateur.test"}), patient_domain=PATIENT_DOMAIN
        ),
        settings=RunnerSettings(
            hostname="mx.operateur.test",
            postmaster="postmaster@operateur.test",
            schedule=(60.0,),
            max_age=timedelta(days=5),
            delay_notice=None,
            lease=timedelta(minutes=5),
            poll_seconds=60,
            parallel=2,
        ),
        deliver_remote=no_remote,
        patients=PatientDesk(
            PatientSettings(
                patient_domain=PATIENT_DOMAIN,
                size_cap=25 * 1024 * 1024,
                hostname="mx.operateur.test",
                from_address=FROM,
                max_age=timedelta(days=5),
            ),
            store=blobs,
        ),
    )
    job = new_job(db, blobs, clock, on_enqueued=runner.wake)
    assert (await job.run_once()).patients_notified == 1
    assert await runner.run_once() == 1
    assert queued(db) == [], "delivered, nothing returned to the null sender"
    with db.read() as conn:
        inbox = index.get_mailbox(conn, address_key(PATIENT), "INBOX")
        assert inbox is not None
        [entry] = index.messages(conn, inbox)
    raw = blobs.read(entry.blob.sha256)
    assert "Un nouveau document a été ajouté" in text_of(raw)
    assert TITLE.encode() not in raw and AUTHOR_PS_ID.encode() not in raw


async def no_remote(domain: str, message: object) -> list[Any]:
    raise AssertionError(f"nothing leaves for {domain}")
