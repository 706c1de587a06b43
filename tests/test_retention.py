# covers: MSSC-RETENTION-1
"""Patient mailboxes forget old messages; professional ones keep them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from annuaire.ins import ins_key
from imap import backend
from mssante import audit, index, retention
from mssante.clock import FakeClock
from mssante.db import Database
from mssante.logs import pseudonym
from mssante.retention import RetentionJob, RetentionReport, purge_expired
from mssante.schema import BLOB_REFERENCES, audit_log, mailbox_expunges, queue_messages
from mssante.store import BlobRef, BlobStore, GCReport

PATIENT_DOMAIN = "patient.mssante.fr"
INS = "285022A123456" + ins_key("285022A123456")  # Corsican: a letter in the INS
PATIENT = f"{INS.lower()}@{PATIENT_DOMAIN}"  # delivery's owner is the address key
OTHER_PATIENT = "1850275123456" + ins_key("1850275123456") + "@" + PATIENT_DOMAIN
DOCTOR = "dr.martin@demo.mssante.test"
MAX_AGE = timedelta(days=90)
# Blob files carry real mtimes; the store's GC compares them with the clock's time.
START = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)


def blob(n: int) -> BlobRef:
    return BlobRef(f"{n:064x}", 100 + n)


def deliver(db: Database, owner: str, ref: BlobRef, age: timedelta, name: str = "INBOX") -> int:
    """Append ``ref`` to ``owner``'s mailbox as received ``age`` before START; its UID."""
    with db.transaction() as conn:
        index.ensure_default_mailboxes(conn, owner, now=START - age)
        mailbox = index.get_mailbox(conn, owner, name)
        assert mailbox is not None
        return index.append(conn, mailbox, ref, internal_date=START - age).uid


def mailbox(db: Database, owner: str, name: str = "INBOX") -> index.Mailbox:
    with db.read() as conn:
        found = index.get_mailbox(conn, owner, name)
    assert found is not None
    return found


def uids(db: Database, owner: str, name: str = "INBOX") -> list[int]:
    with db.read() as conn:
        return [m.uid for m in index.messages(conn, mailbox(db, owner, name))]


def purge(db: Database, **kwargs: object) -> tuple[RetentionReport, list[int]]:
    options: dict[str, object] = {
        "owner_domain": PATIENT_DOMAIN,
        "now": START,
        "max_age": MAX_AGE,
        **kwargs,
    }
    with db.transaction() as conn:
        return purge_expired(conn, **options)  # type: ignore[arg-type]


def test_old_patient_messages_are_expunged_as_imap_would(db):
    old = [deliver(db, PATIENT, blob(n), timedelta(days=100)) for n in (1, 2)]
    recent = deliver(db, PATIENT, blob(3), timedelta(days=10))
    sent_old = deliver(db, PATIENT, blob(4), timedelta(days=91), name="Sent")
    doctor_old = deliver(db, DOCTOR, blob(5), timedelta(days=400))
    inbox_before = mailbox(db, PATIENT)

    # The domain is compared case-insensitively (configuration may spell it otherwise).
    report, changed = purge(db, owner_domain="Patient.MSSante.FR")

    assert report == RetentionReport(messages=3, mailboxes=2, more=False)
    assert sorted(changed) == sorted([inbox_before.id, mailbox(db, PATIENT, "Sent").id])
    assert uids(db, PATIENT) == [recent]
    assert uids(db, PATIENT, "Sent") == [], "every mailbox of the patient, not only INBOX"
    assert uids(db, DOCTOR) == [doctor_old], "a professional mailbox keeps its messages"
    inbox = mailbox(db, PATIENT)
    assert inbox.highestmodseq > inbox_before.highestmodseq
    with db.read() as conn:
        # What QRESYNC reports as VANISHED to a client that last saw the old HIGHESTMODSEQ.
        changes, vanished = backend.changes_since(conn, inbox.id, inbox_before.highestmodseq)
        logged = conn.execute(
            select(mailbox_expunges.c.uid, mailbox_expunges.c.modseq).where(
                mailbox_expunges.c.mailbox_id == inbox.id
            )
        ).all()
    assert changes == []
    assert [uid for uid, _ in vanished] == old
    assert sorted(logged) == [(uid, inbox.highestmodseq) for uid in old]
    with db.read() as conn:
        sent = mailbox(db, PATIENT, "Sent")
        assert backend.changes_since(conn, sent.id, 0)[1] == [(sent_old, sent.highestmodseq)]
    assert purge(db) == (RetentionReport(), []), "a second pass finds nothing"


def test_exactly_max_age_stays_and_zero_disables(db):
    edge = deliver(db, PATIENT, blob(1), MAX_AGE)
    ancient = deliver(db, PATIENT, blob(2), timedelta(days=3650))
    assert purge(db, max_age=timedelta(0)) == (RetentionReport(), [])
    assert uids(db, PATIENT) == [edge, ancient]
    report, _ = purge(db)
    assert report.messages == 1
    assert uids(db, PATIENT) == [edge], "older than max_age goes; exactly max_age stays"


def test_batches_resume_where_the_last_one_stopped(db):
    for n in range(5):
        deliver(db, PATIENT, blob(n), timedelta(days=100 + n))
    deliver(db, OTHER_PATIENT, blob(10), timedelta(days=200))
    deliver(db, OTHER_PATIENT, blob(11), timedelta(days=1))
    totals = []
    while True:
        report, _ = purge(db, batch=2)
        totals.append(report.messages)
        if not report.more:
            break
    assert sum(totals) == 6
    assert all(n <= 2 for n in totals)
    assert uids(db, PATIENT) == []
    assert len(uids(db, OTHER_PATIENT)) == 1


def test_audit_names_the_patient_by_pseudonym_and_counts_only(db):
    deliver(db, PATIENT, blob(1), timedelta(days=100))
    deliver(db, PATIENT, blob(2), timedelta(days=100), name="Trash")
    deliver(db, OTHER_PATIENT, blob(3), timedelta(days=100))
    purge(db)
    with db.read() as conn:
        entries = audit.query(conn, action="retention.purge")
        raw = [tuple(str(v) for v in row) for row in conn.execute(select(audit_log))]
    by_target = {e.target: e for e in entries}
    assert set(by_target) == {
        retention.owner_pseudonym(PATIENT),
        retention.owner_pseudonym(OTHER_PATIENT),
    }
    mine = by_target[retention.owner_pseudonym(PATIENT)]
    assert (mine.actor, mine.target_kind, mine.at) == ("retention", "patient", START)
    assert mine.details == {"messages": 2, "mailboxes": 2, "max_age_seconds": 90 * 86400}
    # The pseudonym is the one `mssante patients passwd` audits (upper-case INS).
    assert mine.target == pseudonym(INS.upper())
    assert retention.owner_pseudonym(f"{INS}@{PATIENT_DOMAIN}") == mine.target
    for row in raw:
        for value in row:
            assert INS not in value and INS.lower() not in value and PATIENT_DOMAIN not in value


# --------------------------------------------------------------------------- the service


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", None)


def collector(
    db: Database, store: BlobStore, clock: FakeClock, grace: int = 0
) -> Callable[[], GCReport]:
    """What ``Runtime.collect_garbage`` does, with the store's grace period given."""

    def collect() -> GCReport:
        with db.read() as conn:
            referenced = {
                digest
                for column in BLOB_REFERENCES
                for digest in conn.execute(select(column).distinct()).scalars()
            }
        return store.gc(referenced, now=clock.now(), grace_seconds=grace)

    return collect


def make_job(
    db: Database,
    clock: FakeClock,
    collect: Callable[[], GCReport],
    *,
    max_age: timedelta = MAX_AGE,
    changed: list[int] | None = None,
) -> RetentionJob:
    return RetentionJob(
        db=db,
        clock=clock,
        owner_domain=PATIENT_DOMAIN,
        max_age=max_age,
        every=3600,
        collect_garbage=collect,
        on_changed=None if changed is None else changed.append,
    )


async def test_run_collects_blobs_no_other_row_names(db, store):
    clock = FakeClock(current=START)
    only_patient = store.put(b"patient only\r\n")
    shared = store.put(b"also in a doctor's Sent\r\n")
    queued = store.put(b"still in the queue\r\n")
    for ref in (only_patient, shared, queued):
        deliver(db, PATIENT, ref, timedelta(days=100))
    deliver(db, DOCTOR, shared, timedelta(days=100), name="Sent")
    with db.transaction() as conn:
        conn.execute(
            insert(queue_messages).values(
                queue_id="Q1",
                blob_sha256=queued.sha256,
                size=queued.size,
                sender=DOCTOR,
                smtputf8=False,
                origin="submission",
                client=DOCTOR,
                received_at=START,
            )
        )
    changed: list[int] = []
    job = make_job(db, clock, collector(db, store, clock), changed=changed)

    report = await job.run_once()

    assert report == RetentionReport(messages=3, mailboxes=1, blobs=1)
    assert changed == [mailbox(db, PATIENT).id], "IDLE sessions are told after the commit"
    assert not store.exists(only_patient.sha256)
    assert store.exists(shared.sha256), "another mailbox still names it"
    assert store.exists(queued.sha256), "a queue row still names it"
    assert await job.run_once() == RetentionReport(), "nothing left: no GC, no audit"
    with db.read() as conn:
        assert len(audit.query(conn, action="retention.purge")) == 1


async def test_blobs_younger_than_the_grace_period_stay(db, store):
    clock = FakeClock(current=START)
    ref = store.put(b"written a moment ago\r\n")
    deliver(db, PATIENT, ref, timedelta(days=100))
    job = make_job(db, clock, collector(db, store, clock, grace=86400))
    report = await job.run_once()
    assert (report.messages, report.blobs) == (1, 0)
    assert store.exists(ref.sha256), "the store's grace period protects young files"


async def test_zero_max_age_disables_the_job(db, store):
    clock = FakeClock(current=START)
    deliver(db, PATIENT, blob(1), timedelta(days=1000))
    job = make_job(db, clock, collector(db, store, clock), max_age=timedelta(0))
    assert job.describe() == "retention disabled"
    await job.start()
    assert await job.run_once() == RetentionReport()
    await job.stop(1)
    assert len(uids(db, PATIENT)) == 1


def test_the_job_refuses_a_negative_age(db, store):
    clock = FakeClock(current=START)
    with pytest.raises(ValueError):
        make_job(db, clock, collector(db, store, clock), max_age=timedelta(days=-1))


async def test_the_loop_runs_again_as_the_clock_moves(db, store):
    clock = FakeClock(current=START)
    deliver(db, PATIENT, blob(1), timedelta(days=100))
    later = deliver(db, PATIENT, blob(2), timedelta(days=89, hours=23, minutes=30))
    changed: list[int] = []
    job = make_job(db, clock, collector(db, store, clock), changed=changed)
    assert job.describe() == "retention (patient.mssante.fr: 90 days, every 3600s)"
    await job.start()
    try:
        await asyncio.wait_for(clock.sleeping(), 10)  # the first run happens at start
        assert uids(db, PATIENT) == [later]
        clock.advance(3599)
        await asyncio.sleep(0)
        assert uids(db, PATIENT) == [later], "not before the interval"
        clock.advance(1)  # an hour later the second message is past 90 days
        await asyncio.wait_for(clock.sleeping(), 10)
        assert uids(db, PATIENT) == []
        assert len(changed) == 2
    finally:
        await asyncio.wait_for(job.stop(5), 10)


async def test_a_failed_run_is_logged_and_the_loop_goes_on(db, store, monkeypatch, caplog):
    clock = FakeClock(current=START)
    deliver(db, PATIENT, blob(1), timedelta(days=100))
    real = retention.purge_expired
    calls: Iterator[int] = iter(range(100))

    def flaky(*args: object, **kwargs: object) -> tuple[RetentionReport, list[int]]:
        if next(calls) == 0:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(retention, "purge_expired", flaky)
    job = make_job(db, clock, collector(db, store, clock))
    with caplog.at_level(logging.ERROR, logger="mssante.retention"):
        await job.start()
        try:
            await asyncio.wait_for(clock.sleeping(), 10)
            assert "retention run failed" in caplog.text
            assert len(uids(db, PATIENT)) == 1
            clock.advance(3600)
            await asyncio.wait_for(clock.sleeping(), 10)
            assert uids(db, PATIENT) == []
        finally:
            await asyncio.wait_for(job.stop(5), 10)
