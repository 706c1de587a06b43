from datetime import UTC, datetime, timedelta

import pytest

from mssante import audit

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_record_and_query_by_each_criterion(db):
    with db.transaction() as conn:
        audit.record(
            conn,
            at=T0,
            actor="dr.a@demo.test",
            action="mailbox.open",
            target_kind="mailbox",
            target="dr.a@demo.test/INBOX",
        )
        audit.record(
            conn,
            at=T0 + timedelta(minutes=1),
            actor="dpi@demo.test",
            action="document.deposit",
            target_kind="document",
            target="doc-1",
            outcome="refused",
            details={"code": 902, "queue_id": "q1"},
        )
        audit.record(
            conn,
            at=T0 + timedelta(minutes=2),
            actor="dr.a@demo.test",
            action="mailbox.open",
            target_kind="mailbox",
            target="dr.a@demo.test/Sent",
        )
    with db.read() as conn:
        everything = audit.query(conn)
        assert [e.target for e in everything] == [
            "dr.a@demo.test/Sent",
            "doc-1",
            "dr.a@demo.test/INBOX",
        ]  # newest first
        refused = audit.query(conn, action="document.deposit")
        assert len(refused) == 1
        assert refused[0].outcome == "refused"
        assert refused[0].details == {"code": 902, "queue_id": "q1"}
        assert refused[0].at == T0 + timedelta(minutes=1)
        assert len(audit.query(conn, actor="dr.a@demo.test")) == 2
        assert len(audit.query(conn, target_kind="mailbox", target="dr.a@demo.test/INBOX")) == 1
        window = audit.query(
            conn, since=T0 + timedelta(seconds=30), until=T0 + timedelta(minutes=2)
        )
        assert [e.target for e in window] == ["doc-1"]
        assert len(audit.query(conn, limit=1)) == 1


@pytest.mark.parametrize("key", ["subject", "Body", "filename", "INS"])
def test_details_that_would_carry_health_data_are_refused(db, key):
    with db.transaction() as conn, pytest.raises(ValueError, match="health data"):
        audit.record(
            conn,
            at=T0,
            actor="x",
            action="y",
            target_kind="z",
            target="t",
            details={key: "Compte rendu de Mme Dupont"},
        )


def test_details_must_be_scalars(db):
    with db.transaction() as conn, pytest.raises(TypeError):
        audit.record(
            conn,
            at=T0,
            actor="x",
            action="y",
            target_kind="z",
            target="t",
            details={"ids": ["a", "b"]},
        )  # type: ignore[dict-item]
