# covers: Y-3, Y-4, Y-5, Y-6, Y-7
"""The DMP-like document store: versions, visibility, opposition, timers, trail."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from annuaire.ins import ins_key
from cda import store as dmp
from cda.codes import INS_C_LEGACY, INS_NIR_TEST, Visibility
from cda.document import CdaHeader, parse_cda
from cda.findings import Invalid
from mssante.clock import FakeClock
from mssante.db import Database
from mssante.logs import pseudonym
from mssante.schema import BLOB_REFERENCES, audit_log, dmp_documents
from mssante.store import BlobStore

from cdagen import AUTHOR_PS_ID, DOC_ROOT, INS, SET_ROOT, make_cda

OTHER_INS = "1850275123456" + ins_key("1850275123456")
AUTHOR = AUTHOR_PS_ID  # an idNatPS
COLLEAGUE = "810009876543"
TITLE = "Lettre de liaison de sortie"
INVISIBLE = frozenset({Visibility.INVISIBLE_PATIENT})
MASKED = frozenset({Visibility.MASQUE_PS})
NONE: frozenset[Visibility] = frozenset()


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs", None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def cda(version: int = 1, ext: str | None = None, **kwargs: Any) -> tuple[CdaHeader, bytes]:
    """A parsed CDA and its bytes: version ``n`` has id ``DOC_ROOT^v<n>`` unless ``ext``."""
    data = make_cda(doc_id=(DOC_ROOT, ext or f"v{version}"), version=str(version), **kwargs)
    return parse_cda(data, test_mode=True), data


class Record:
    """The store under test bound to one database, blob store and clock."""

    def __init__(self, db: Database, blobs: BlobStore, clock: FakeClock) -> None:
        self.db, self.blobs, self.clock = db, blobs, clock

    def deposit(
        self,
        doc: tuple[CdaHeader, bytes],
        visibility: frozenset[Visibility] = NONE,
        author: str = AUTHOR,
        test_mode: bool = True,
    ) -> dmp.DepositResult:
        header, data = doc
        with self.db.transaction() as conn:
            return dmp.deposit(
                conn,
                self.blobs,
                header,
                data,
                visibility=visibility,
                author=author,
                now=self.clock.now(),
                test_mode=test_mode,
            )

    def add(self, doc: tuple[CdaHeader, bytes], visibility: frozenset[Visibility] = NONE) -> int:
        """Deposit a document expected to be accepted; its row id."""
        document_id = self.deposit(doc, visibility).document_id
        assert document_id is not None
        return document_id

    def ids(self, ins: str = INS, **kwargs: Any) -> list[int]:
        with self.db.transaction() as conn:
            return [d.id for d in dmp.documents(conn, ins, now=self.clock.now(), **kwargs)]

    def all(self, ins: str = INS) -> list[dmp.DocumentRecord]:
        with self.db.read() as conn:
            return dmp.documents(
                conn, ins, view="professional", reader=None, include_superseded=True
            )

    def timers(self, notified: list[str] | None = None) -> dmp.TimerReport:
        with self.db.transaction() as conn:
            return dmp.run_timers(
                conn, self.clock.now(), notify=None if notified is None else notified.append
            )

    def trail(self, ins: str = INS, **kwargs: Any) -> list[Any]:
        with self.db.read() as conn:
            return dmp.audit_trail(conn, ins, **kwargs)

    def rows(self) -> int:
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).select_from(dmp_documents)).scalar_one())


@pytest.fixture
def record(db: Database, blobs: BlobStore, clock: FakeClock) -> Record:
    return Record(db, blobs, clock)


def refused(result: dmp.DepositResult, code: int, text: str) -> None:
    assert result.kind == "refused" and result.document_id is None
    assert result.ack_code == code
    assert any(text in str(f) for f in result.findings), result.findings


# --- deposit, duplicates, versions ------------------------------------------------


def test_a_new_document_is_deposited_with_its_bytes_and_metadata(record: Record) -> None:
    header, data = cda()
    result = record.deposit((header, data))
    assert result.kind == "deposited" and result.replaced_id is None
    [doc] = record.all()
    assert doc.id == result.document_id
    assert (doc.unique_id, doc.set_id, doc.version) == (f"{DOC_ROOT}^v1", SET_ROOT, 1)
    assert (doc.ins, doc.type_code, doc.title, doc.author) == (INS, "11490-0", TITLE, AUTHOR)
    assert doc.status == "current" and doc.visibility == NONE
    assert doc.deposited_at == record.clock.now()
    assert record.blobs.read(doc.blob.sha256) == data and doc.blob.size == len(data)


def test_the_same_id_twice_is_a_no_op(record: Record) -> None:
    first = record.deposit(cda())
    again = record.deposit(cda())
    assert again == dmp.DepositResult("duplicate", document_id=first.document_id)
    assert record.rows() == 1
    # The same id with other content is not the same document: refused.
    other = record.deposit(cda(title="Autre titre"))
    refused(other, 906, "already deposited")
    assert record.rows() == 1


def test_a_higher_version_of_the_set_supersedes_the_current_one(record: Record) -> None:
    v1 = record.deposit(cda(1))
    v2 = record.deposit(cda(2))
    assert v2.kind == "replaced" and v2.replaced_id == v1.document_id
    assert record.ids(view="professional") == [v2.document_id]
    old, new = record.all()
    assert (old.id, old.status, old.superseded_by) == (v1.document_id, "superseded", new.id)
    assert new.status == "current" and new.superseded_by is None
    assert record.blobs.read(old.blob.sha256) == cda(1)[1]  # still retrievable


def test_rplc_names_the_replaced_document(record: Record) -> None:
    v1 = record.deposit(cda(1))
    v2 = record.deposit(cda(2, replaces=(DOC_ROOT, "v1")))
    assert (v2.kind, v2.replaced_id) == ("replaced", v1.document_id)
    refused(record.deposit(cda(3, replaces=(DOC_ROOT, "nope"))), 906, "unknown id")
    refused(
        record.deposit(cda(3, replaces=(DOC_ROOT, "v2"), set_id=("1.2.3.4", None))),
        906,
        "setId",
    )


def test_replacing_a_version_that_is_not_the_latest_is_refused_900(record: Record) -> None:
    record.deposit(cda(1))
    record.deposit(cda(2, replaces=(DOC_ROOT, "v1")))
    refused(record.deposit(cda(3, replaces=(DOC_ROOT, "v1"))), 900, "superseded version")
    refused(record.deposit(cda(2, ext="v2bis")), 900, "above the latest one (2)")
    refused(record.deposit(cda(1, ext="v1bis", replaces=(DOC_ROOT, "v2"))), 900, "above")
    assert record.rows() == 2


def test_a_replacement_must_be_for_the_same_patient(record: Record) -> None:
    record.deposit(cda(1))
    refused(record.deposit(cda(2, ins=OTHER_INS)), 906, "another patient")
    refused(
        record.deposit(cda(2, ins=OTHER_INS, set_id=("1.2.3.4", None), replaces=(DOC_ROOT, "v1"))),
        906,
        "another patient",
    )
    assert [d.status for d in record.all()] == ["current"]
    assert record.all(OTHER_INS) == []


def test_only_a_qualified_ins_feeds_a_record(record: Record) -> None:
    test_nir = cda(ins_oid=INS_NIR_TEST)
    refused(record.deposit(test_nir, test_mode=False), 903, "qualified INS")
    assert record.deposit(test_nir, test_mode=True).kind == "deposited"
    header, data = cda(2, set_id=("1.2.3.4", None))
    legacy = dataclasses.replace(
        header, patient=dataclasses.replace(header.patient, ins_oid=INS_C_LEGACY)
    )
    refused(record.deposit((legacy, data)), 903, "INS-C")
    assert record.rows() == 1


def test_opposition_blocks_deposit_until_lifted(record: Record) -> None:
    with record.db.transaction() as conn:
        assert dmp.set_opposition(conn, INS, True, actor="patient", now=record.clock.now())
        assert not dmp.set_opposition(conn, INS, True, actor="patient", now=record.clock.now())
    refused(record.deposit(cda()), 906, "opposed")
    assert record.rows() == 0
    with record.db.transaction() as conn:
        assert dmp.is_opposed(conn, INS)
        assert dmp.set_opposition(conn, INS, False, actor="patient", now=record.clock.now())
    assert record.deposit(cda()).kind == "deposited"
    outcomes = [(e.action, e.outcome) for e in record.trail()]
    assert outcomes == [
        ("dmp.opposition", "opposed"),
        ("dmp.deposit", "refused"),
        ("dmp.opposition", "lifted"),
        ("dmp.deposit", "deposited"),
    ]


# --- visibility -------------------------------------------------------------------


def test_invisible_to_patient_and_masked_is_refused(record: Record) -> None:
    both = INVISIBLE | MASKED
    refused(record.deposit(cda(), both), 906, "masked to professionals")
    doc = record.add(cda(), INVISIBLE)
    with record.db.transaction() as conn, pytest.raises(Invalid, match="INVISIBLE_PATIENT"):
        dmp.set_visibility(conn, doc, both, actor=AUTHOR, now=record.clock.now())
    assert record.all()[0].visibility == INVISIBLE


def test_patient_professional_and_author_views(record: Record) -> None:
    plain = record.add(cda(ext="a", set_id=("1.1", None)))
    hidden = record.add(cda(ext="b", set_id=("1.2", None)), INVISIBLE)
    masked = record.add(cda(ext="c", set_id=("1.3", None)), MASKED)
    assert record.ids(view="patient", reader="patient") == [plain, masked]
    assert record.ids(view="professional", reader=COLLEAGUE) == [plain, hidden]
    assert record.ids(view="professional", reader=AUTHOR) == [plain, hidden, masked]
    assert record.ids(view="professional") == [plain, hidden]
    reads = [(e.actor, e.details) for e in record.trail() if e.action == "dmp.read"]
    assert reads == [
        ("patient", {"view": "patient", "count": 2}),
        (COLLEAGUE, {"view": "professional", "count": 2}),
        (AUTHOR, {"view": "professional", "count": 3}),
    ]
    with record.db.transaction() as conn:
        now = record.clock.now()
        assert (
            dmp.get_document(
                conn, record.blobs, masked, view="professional", reader=COLLEAGUE, now=now
            )
            is None
        )
        got = dmp.get_document(
            conn, record.blobs, masked, view="patient", reader="patient", now=now
        )
    assert got is not None and got[1] == cda(ext="c", set_id=("1.3", None))[1]


def test_a_professional_makes_an_invisible_document_visible(record: Record) -> None:
    doc = record.add(cda(), INVISIBLE)
    record.clock.advance(timedelta(days=3))
    with record.db.transaction() as conn:
        now = record.clock.now()
        updated = dmp.set_visibility(conn, doc, NONE, actor=AUTHOR, now=now)
        assert updated.visible_since == now and updated.visibility == NONE
        with pytest.raises(Invalid, match="already visible"):
            dmp.set_visibility(conn, doc, INVISIBLE, actor=AUTHOR, now=now)
        with pytest.raises(LookupError):
            dmp.set_visibility(conn, doc + 1, NONE, actor=AUTHOR, now=now)
    assert record.ids(view="patient") == [doc]
    [change] = [e for e in record.trail() if e.action == "dmp.visibility"]
    assert change.actor == AUTHOR
    assert change.details == {"document": doc, "before": "INVISIBLE_PATIENT", "flags": ""}
    record.clock.advance(timedelta(days=200))
    assert record.timers([]) == dmp.TimerReport()


# --- Y-5 timers -----------------------------------------------------------------------


def test_timers_notify_after_one_month_and_reveal_after_three(record: Record) -> None:
    record.clock.current = datetime(2026, 1, 31, 10, 0, tzinfo=UTC)
    doc = record.add(cda(), INVISIBLE)
    visible = record.add(cda(ext="x", set_id=("1.9", None)))
    sent: list[str] = []
    record.clock.current = datetime(2026, 2, 28, 9, 59, tzinfo=UTC)  # end of February
    assert record.timers(sent) == dmp.TimerReport()
    record.clock.current = datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    assert record.timers(sent) == dmp.TimerReport(notified=(doc,), patients_notified=1)
    assert sent == [INS]
    assert record.timers(sent) == dmp.TimerReport() and sent == [INS]
    assert record.ids(view="patient") == [visible]
    record.clock.current = datetime(2026, 4, 30, 9, 59, tzinfo=UTC)
    assert record.timers(sent) == dmp.TimerReport()
    record.clock.current = datetime(2026, 4, 30, 10, 0, tzinfo=UTC)
    assert record.timers(sent) == dmp.TimerReport(made_visible=(doc,))
    record.clock.advance(timedelta(days=100))
    assert record.timers(sent) == dmp.TimerReport() and sent == [INS]
    assert record.ids(view="patient") == [doc, visible]
    [now_visible] = [d for d in record.all() if d.id == doc]
    assert now_visible.visible_since == datetime(2026, 4, 30, 10, 0, tzinfo=UTC)
    assert now_visible.patient_notified_at == datetime(2026, 2, 28, 10, 0, tzinfo=UTC)
    fired = [(e.action, e.actor, e.details) for e in record.trail() if e.actor == "dmp-timer"]
    assert fired == [
        ("dmp.notify", "dmp-timer", {"document": doc}),
        (
            "dmp.visibility",
            "dmp-timer",
            {"document": doc, "before": "INVISIBLE_PATIENT", "flags": ""},
        ),
    ]


def test_a_late_timer_run_notifies_and_reveals_together(record: Record) -> None:
    doc = record.add(cda(), INVISIBLE | {Visibility.INVISIBLE_REPRESENTANTS_LEGAUX})
    record.clock.advance(timedelta(days=365))
    sent: list[str] = []
    assert record.timers(sent) == dmp.TimerReport((doc,), (doc,), 1)
    assert record.all()[0].visibility == {Visibility.INVISIBLE_REPRESENTANTS_LEGAUX}
    assert record.timers(sent) == dmp.TimerReport() and sent == [INS]


def test_add_months_clamps_to_the_end_of_shorter_months() -> None:
    at = datetime(2024, 11, 30, 8, tzinfo=UTC)
    assert dmp.add_months(at, 3) == datetime(2025, 2, 28, 8, tzinfo=UTC)
    assert dmp.add_months(datetime(2024, 1, 31, tzinfo=UTC), 1) == datetime(2024, 2, 29, tzinfo=UTC)
    assert dmp.add_months(at, 1) == datetime(2024, 12, 30, 8, tzinfo=UTC)


# --- Y-6 trail and storage ------------------------------------------------------------------


def test_the_trail_is_per_patient_and_never_names_the_patient_or_title(record: Record) -> None:
    v1 = record.add(cda(1))
    v2 = record.add(cda(2))
    hidden = record.add(cda(ext="h", set_id=("1.5", None)), INVISIBLE)
    record.deposit(cda(ext="o", set_id=("1.6", None), ins=OTHER_INS))
    record.deposit(cda(1))
    record.ids(view="patient", reader="patient")
    trail = record.trail()
    assert {e.target for e in trail} == {pseudonym(INS)}
    assert [(e.action, e.outcome, e.details.get("document")) for e in trail] == [
        ("dmp.deposit", "deposited", v1),
        ("dmp.deposit", "replaced", v2),
        ("dmp.deposit", "deposited", hidden),
        ("dmp.deposit", "duplicate", v1),
        ("dmp.read", "ok", None),
    ]
    assert trail[1].details["replaced"] == v1
    assert trail[0].details["unique_id_hash"] == pseudonym(f"{DOC_ROOT}^v1")
    # The patient's own view leaves out what is still hidden from them.
    assert hidden not in [e.details.get("document") for e in record.trail(patient_view=True)]
    assert len(record.trail(patient_view=True)) == 4
    assert [e.outcome for e in record.trail(OTHER_INS)] == ["deposited"]
    with record.db.read() as conn:
        logged = [str(r._mapping) for r in conn.execute(select(audit_log))]
    assert logged and not any(INS in line or OTHER_INS in line or TITLE in line for line in logged)


def test_deposited_blobs_are_kept_by_gc(record: Record) -> None:
    assert dmp_documents.c.blob_sha256 in BLOB_REFERENCES
    record.deposit(cda())
    orphan = record.blobs.put(b"nobody refers to this")
    with record.db.read() as conn:
        referenced = {
            s for column in BLOB_REFERENCES for s in conn.execute(select(column)).scalars()
        }
    report = record.blobs.gc(referenced, now=datetime.now(UTC) + timedelta(days=1), grace_seconds=0)
    assert report.removed == (orphan.sha256,)
    assert record.blobs.exists(record.all()[0].blob.sha256)
