# covers: TS-1
"""SIGKILL both nodes at random points while 200 messages are submitted and relayed.

Every message that got its 250 must end up exactly once in the final mailbox:
nothing acknowledged is lost, and redeliveries after a crash are absorbed by
the receiving node's idempotent local delivery.
"""

from __future__ import annotations

import random
import signal
import smtplib
import ssl
import time
from collections import Counter
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from operators import Pair, message_ids, setup_pair

pytestmark = pytest.mark.slow

TOTAL = 200
FAST_QUEUE = """[queue]
retry_schedule_seconds = [0.5]
lease_seconds = 3.0
poll_seconds = 0.5
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_urls(
    request: pytest.FixtureRequest, postgres_databases: Callable[[], str]
) -> tuple[str | None, str | None]:
    if request.param == "sqlite":
        return (None, None)
    return (postgres_databases(), postgres_databases())


def _message(n: int, run: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@a.test"
    msg["To"] = "bob@b.test"
    msg["Subject"] = f"message {n}"
    msg["Message-ID"] = f"<{run}.{n}@a.test>"
    msg.set_content(f"numéro {n}\n" * 20)
    return msg


def test_sigkill_while_submitting_and_relaying(
    tmp_path: Path, database_urls: tuple[str | None, str | None]
) -> None:
    rng = random.Random(20261123)
    pair: Pair = setup_pair(tmp_path, database_urls=database_urls, extra_config=FAST_QUEUE)
    run = f"crash{rng.randrange(10**6)}"
    acknowledged: list[str] = []
    kill_at = sorted(rng.sample(range(10, TOTAL), 6))
    try:
        pair.a.start()
        pair.b.start()
        smtp: smtplib.SMTP | None = None
        for n in range(TOTAL):
            if kill_at and n == kill_at[0]:
                kill_at.pop(0)
                victim = rng.choice([pair.a, pair.b])
                assert victim.node is not None
                victim.node.stop(signal.SIGKILL)
                if victim is pair.a:
                    smtp = None  # its connection died with it
                victim.start()
            try:
                if smtp is None:
                    smtp = pair.submit()
                smtp.send_message(_message(n, run))
                acknowledged.append(f"<{run}.{n}@a.test>")
            except (smtplib.SMTPException, OSError, ssl.SSLError):
                smtp = None  # the fate of this one is unknown: it may or may not arrive
        if smtp is not None:
            smtp.quit()
        # Let A's runner finish relaying everything acknowledged (or give up).
        deadline = time.monotonic() + 180
        while True:
            found = message_ids(pair.b.inbox("bob@b.test"))
            if set(acknowledged) <= set(found) or time.monotonic() > deadline:
                break
            time.sleep(0.5)  # waiting for the other processes, not timing a behaviour
    finally:
        pair.stop()
    counts = Counter(found)
    assert len(acknowledged) >= TOTAL - 10  # kills interrupt only a few submissions
    missing = [m for m in acknowledged if counts[m] == 0]
    duplicated = [m for m, c in counts.items() if c > 1]
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:5]}"
    assert not duplicated, f"delivered twice: {duplicated[:5]}"
