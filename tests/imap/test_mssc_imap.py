# covers: MSSC-RETENTION-1, MSSC-MDN-1
"""MSS-C rules seen from a patient's IMAP client: retention and read receipts.

A real node (SQLite file, encrypted store, IMAP over TLS) runs in a thread
with an injected clock; the patient logs in with the registry's password.
"""

from __future__ import annotations

import imaplib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from annuaire.ins import ins_key
from annuaire.patients import set_password, upsert_patient
from imap.service import imap_services
from mssante import index
from mssante.app import Runtime, retention_services
from mssante.clock import FakeClock
from mssante.schema import mailbox_messages, queue_messages
from smtp.mdn import ReadReceipts

from harness import PASSWORD, ImapNode, start_node

START = datetime.now(UTC).replace(microsecond=0)


def patient_address(node: ImapNode, n: int) -> str:
    body = f"2850599123{n:03d}"
    ins = body + ins_key(body)
    now = datetime.now(UTC)
    with node.runtime.db.transaction() as conn:
        upsert_patient(conn, ins, now=now, status="open", first_name="Léa", last_name="Martin")
        set_password(conn, ins, PASSWORD, now=now)
    return f"{ins}@{node.runtime.config.node.patient_domain}"


def message(subject: str, *, receipt: str | None = None) -> bytes:
    head = f"From: Dr Martin <dr.martin@demo.mssante.test>\r\nSubject: {subject}\r\n"
    head += f"Message-ID: <{subject.replace(' ', '.')}@demo.mssante.test>\r\n"
    if receipt:
        head += f"Disposition-Notification-To: {receipt}\r\n"
    return (head + "\r\nBonjour.\r\n").encode()


def with_receipts(runtime: Runtime) -> list:
    receipts = ReadReceipts(
        db=runtime.db,
        store=runtime.store,
        clock=runtime.clock,
        patient_domain=runtime.config.node.patient_domain,
        hostname=runtime.config.hostname,
        max_age=timedelta(days=5),
        wake_queue=lambda: None,
        on_changed=runtime.mailbox_events.publish,
    )
    runtime.seen_hooks.append(receipts.on_seen)
    return []


# --------------------------------------------------------------------------- retention


@pytest.fixture
def late_node(tmp_path: Path) -> Iterator[tuple[ImapNode, FakeClock]]:
    clock = FakeClock(current=START)
    node = start_node(
        tmp_path,
        extra_config="[store]\ngc_grace_seconds = 0\n",
        clock=clock,
        factories=(imap_services,),
    )
    try:
        yield node, clock
    finally:
        node.stop()


def test_mssc_retention_1_old_messages_go_after_91_days(
    late_node: tuple[ImapNode, FakeClock],
) -> None:
    node, clock = late_node
    patient = patient_address(node, 1)
    professional = node.new_user("dr")
    old = START - timedelta(days=1)
    for n in range(3):
        node.deliver(patient, message(f"ancien {n}"), internal_date=old)
    node.deliver(professional, message("pro ancien"), internal_date=old)
    client = node.login(patient)
    assert client.select("INBOX")[1] == [b"3"]
    client.logout()
    with node.runtime.db.read() as conn:
        box = index.get_mailbox(conn, patient, "INBOX")
        assert box is not None
        old_blobs = {e.blob.sha256 for e in index.messages(conn, box)}

    clock.advance(timedelta(days=91).total_seconds())
    node.deliver(patient, message("récent"), internal_date=clock.now())
    jobs = retention_services(node.runtime)
    assert len(jobs) == 1
    report = node.loop_call(jobs[0].run_once())  # type: ignore[attr-defined]
    assert report.messages == 3

    client = node.login(patient)
    assert client.select("INBOX")[1] == [b"1"]
    _, data = client.fetch("1", "(BODY[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: r\xc3\xa9cent" in data[0][1]
    client.logout()
    for sha in old_blobs:
        assert not node.runtime.store.exists(sha), "the old blobs were collected"
    # A professional's mailbox is not the patient's: retention leaves it alone.
    pro = node.login(professional)
    assert pro.select("INBOX")[1] == [b"1"]
    pro.logout()


def test_mssc_retention_1_zero_disables(tmp_path: Path) -> None:
    clock = FakeClock(current=START)
    node = start_node(tmp_path, extra_config="[patients]\nretention_days = 0\n", clock=clock)
    try:
        assert retention_services(node.runtime) == []
    finally:
        node.stop()


# --------------------------------------------------------------------------- read receipts


@pytest.fixture
def node(tmp_path: Path) -> Iterator[ImapNode]:
    node = start_node(tmp_path, factories=(with_receipts, imap_services))
    try:
        yield node
    finally:
        node.stop()


def _mdns(node: ImapNode) -> int:
    with node.runtime.db.read() as conn:
        return conn.execute(
            select(func.count()).select_from(queue_messages).where(queue_messages.c.origin == "mdn")
        ).scalar_one()


def _race(nodes: list[ImapNode]) -> None:
    """Four sessions, spread over ``nodes``, display the same message at the same time."""
    node = nodes[0]
    patient = patient_address(node, 2)
    key = "d" * 64
    node.deliver(
        patient, message("résultat", receipt="dr.martin@demo.mssante.test"), delivery_key=key
    )
    clients = [nodes[i % len(nodes)].login(patient) for i in range(4)]
    for client in clients:
        client.select("INBOX")
    barrier = threading.Barrier(len(clients))
    errors: list[BaseException] = []

    def read(client: imaplib.IMAP4) -> None:
        try:
            barrier.wait()
            client.fetch("1", "(BODY[])")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert _mdns(node) == 1
    with node.runtime.db.read() as conn:
        flags = conn.execute(
            select(mailbox_messages.c.flags).where(mailbox_messages.c.delivery_key == key)
        ).scalar_one()
    assert "$MDNSent" in flags.split()
    # Unseen then seen again: still one receipt.
    clients[0].store("1", "-FLAGS", r"(\Seen)")
    clients[1].store("1", "+FLAGS", r"(\Seen)")
    assert _mdns(node) == 1
    for client in clients:
        client.logout()


def test_mssc_mdn_1_exactly_once_with_racing_sessions(node: ImapNode) -> None:
    _race([node])


def test_mssc_mdn_1_exactly_once_across_two_nodes_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    url = ["--database-url", postgres_url]
    first = start_node(tmp_path / "1", factories=(with_receipts, imap_services), init_args=url)
    try:
        second = start_node(
            tmp_path / "2",
            factories=(with_receipts, imap_services),
            init_args=url,
            share_store_with=first.data_dir,
        )
        try:
            _race([first, second])
        finally:
            second.stop()
    finally:
        first.stop()


def test_mdn_not_for_appended_or_unrequested_or_professional_mail(node: ImapNode) -> None:
    patient = patient_address(node, 3)
    node.deliver(patient, message("sans accusé"), delivery_key="e" * 64)
    client = node.login(patient)
    client.append("INBOX", r"(\Seen)", None, message("copie", receipt="x@demo.mssante.test"))
    client.select("INBOX")
    client.fetch("1:*", "(BODY[])")
    client.logout()
    professional = node.new_user("pro")
    node.deliver(professional, message("pro", receipt="x@demo.mssante.test"), delivery_key="f" * 64)
    pro = node.login(professional)
    pro.select("INBOX")
    pro.fetch("1", "(BODY[])")
    pro.logout()
    assert _mdns(node) == 0
