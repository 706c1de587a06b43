# covers: TS-1, TS-6
"""The queue runner of node A in-process with an injected clock; node B a real process.

B down: A defers on its schedule and delivers once B is back. B refusing:
the sender gets a failure DSN with the right fields. Time only moves when the
test moves it.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr

import pytest

from mssante import config as cfg
from mssante import index
from mssante.app import Runtime
from mssante.clock import FakeClock
from smtp.queue import Envelope, NewRecipient, delete_message, enqueue, list_entries
from smtp.runner import QueueRunner
from smtp.service import smtp_services

from operators import Pair, setup_pair

pytestmark = pytest.mark.slow

MESSAGE = (
    b"From: <alice@a.test>\r\nTo: <bob@b.test>\r\nSubject: retry\r\n"
    b"Message-ID: <retry.1@a.test>\r\n\r\nBonjour.\r\n"
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pair = setup_pair(tmp_path_factory.mktemp("retry"))
    yield pair
    pair.stop()


@pytest.fixture
def node_a(pair: Pair) -> Iterator[tuple[Runtime, QueueRunner, FakeClock]]:
    clock = FakeClock(current=datetime.now(UTC).replace(microsecond=0))
    runtime = Runtime.open(cfg.load(pair.a.data_dir), clock=clock)
    runner = next(s for s in smtp_services(runtime) if isinstance(s, QueueRunner))
    yield runtime, runner, clock
    with runtime.db.transaction() as conn:  # leave the queue empty for the next test
        for entry in list_entries(conn):
            delete_message(conn, entry.queue_id)
    runtime.db.dispose()


def _enqueue(runtime: Runtime, rcpt: NewRecipient, envid: str | None = None) -> str:
    blob = runtime.store.put(MESSAGE)
    with runtime.db.transaction() as conn:
        return enqueue(
            conn,
            blob,
            Envelope("alice@a.test", (rcpt,), origin="submission", client="test", envid=envid),
            now=runtime.clock.now(),
            max_age=timedelta(days=5),
        )


def _rows(runtime: Runtime) -> list[tuple[str, int, datetime, str | None, str | None]]:
    with runtime.db.read() as conn:
        return [r for e in list_entries(conn) for r in e.recipients]


def _inbox(runtime: Runtime, owner: str) -> list[bytes]:
    with runtime.db.read() as conn:
        box = index.get_mailbox(conn, owner, "INBOX")
        entries = index.messages(conn, box) if box else []
    return [runtime.store.read(e.blob.sha256) for e in entries]


def _dsn_fields(dsn: bytes) -> dict[str, str]:
    report = email.message_from_bytes(dsn)
    for part in report.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            blocks = payload if isinstance(payload, list) else []
            fields: dict[str, str] = {}
            for block in blocks:
                fields.update({k: str(v) for k, v in block.items()})
            return fields
    raise AssertionError("no delivery-status part")


async def test_b_down_then_back_is_retried_on_schedule(pair: Pair, node_a) -> None:
    runtime, runner, clock = node_a
    if pair.b.node is not None:
        pair.b.node.stop()
    _enqueue(runtime, NewRecipient("bob@b.test"))
    assert await runner.run_once() == 1
    [(_, attempts, next_at, status, lease)] = _rows(runtime)
    assert attempts == 1 and lease is None
    assert status is not None and "4.4.1" in status
    wait = (next_at - clock.now()).total_seconds()
    assert 54 <= wait <= 66  # the first step (60 s) with ±10 % jitter
    assert await runner.run_once() == 0  # not due yet
    clock.advance(timedelta(seconds=30))
    assert await runner.run_once() == 0
    pair.b.start()
    clock.advance(timedelta(seconds=40))
    assert await runner.run_once() == 1
    assert _rows(runtime) == []
    found = pair.b.wait_inbox("bob@b.test", 1)
    assert any(b"Message-ID: <retry.1@a.test>" in m for m in found)


async def test_permanent_refusal_returns_a_dsn_to_the_sender(pair: Pair, node_a) -> None:
    runtime, runner, _ = node_a
    if pair.b.node is None or pair.b.node.process.poll() is not None:
        pair.b.start()
    before = len(_inbox(runtime, "alice@a.test"))
    _enqueue(runtime, NewRecipient("nobody@b.test", orcpt="rfc822;nobody@b.test"), envid="env-7")
    assert await runner.run_once() == 1  # refused: a DSN is queued for alice
    assert await runner.run_once() == 1  # the DSN is delivered locally
    reports = _inbox(runtime, "alice@a.test")
    assert len(reports) == before + 1
    fields = _dsn_fields(reports[-1])
    assert fields["Action"] == "failed"
    assert fields["Status"] == "5.1.1"
    assert fields["Final-Recipient"] == "rfc822; nobody@b.test"
    assert fields["Original-Envelope-Id"] == "env-7"
    assert fields["Diagnostic-Code"].startswith("smtp; 550")
    assert "Remote-MTA" in fields
    report = email.message_from_bytes(reports[-1])
    assert parseaddr(str(report["From"]))[1] == "postmaster@a.test"  # from A's postmaster
    assert report["To"] == "<alice@a.test>"


async def test_notify_never_means_no_dsn(pair: Pair, node_a) -> None:
    runtime, runner, _ = node_a
    if pair.b.node is None or pair.b.node.process.poll() is not None:
        pair.b.start()
    before = len(_inbox(runtime, "alice@a.test"))
    _enqueue(runtime, NewRecipient("nobody@b.test", notify=frozenset({"NEVER"})))
    assert await runner.run_once() == 1
    assert await runner.run_once() == 0
    assert len(_inbox(runtime, "alice@a.test")) == before


async def test_delay_notice_then_expiry(pair: Pair, node_a) -> None:
    runtime, runner, clock = node_a
    if pair.b.node is not None:
        pair.b.node.stop()
    before = len(_inbox(runtime, "alice@a.test"))
    _enqueue(runtime, NewRecipient("bob@b.test"))
    assert await runner.run_once() == 1  # deferred, too early for a delay notice
    clock.advance(timedelta(hours=5))
    assert await runner.run_once() == 1  # deferred again, and the sender is warned once
    await runner.run_once()  # the notice is delivered locally
    delayed = _inbox(runtime, "alice@a.test")[before:]
    assert [_dsn_fields(d)["Action"] for d in delayed] == ["delayed"]
    assert "Will-Retry-Until" in _dsn_fields(delayed[0])
    clock.advance(timedelta(days=5))
    assert await runner.run_once() == 1  # expired: returned
    await runner.run_once()
    reports = _inbox(runtime, "alice@a.test")[before:]
    fields = _dsn_fields(reports[-1])
    assert (fields["Action"], fields["Status"]) == ("failed", "4.4.7")
    assert _rows(runtime) == []


async def test_an_unreachable_domain_is_tried_once_per_pass(pair: Pair, node_a) -> None:
    runtime, runner, clock = node_a
    if pair.b.node is not None:
        pair.b.node.stop()
    for n in range(5):
        _enqueue(runtime, NewRecipient("bob@b.test"), envid=f"dead-{n}")
    tried: list[str] = []
    deliver = runner.deliver_remote

    async def counting(domain, message):  # type: ignore[no-untyped-def]
        tried.append(domain)
        return await deliver(domain, message)

    runner.deliver_remote = counting
    assert await runner.run_once() == 5
    assert tried == ["b.test"], "the first message found nobody: the rest wait for next time"
    rows = _rows(runtime)
    assert len(rows) == 5
    assert all(attempts == 1 and status and "4.4.1" in status for _, attempts, _, status, _ in rows)
    pair.b.start()
    clock.advance(timedelta(seconds=70))
    assert await runner.run_once() == 5
    assert tried.count("b.test") == 6, "B answers again: every message goes"
    assert _rows(runtime) == []
