# covers: MSSC-RET-1
"""No automatic-return loops: two patient-domain operators that bounce at each other stop.

Node a serves patient.a.test, node b serves patient.b.test (a misconfiguration:
there is one patient domain). A peer hands a a message from an unknown patient
of b to an unknown patient of a: a answers with one "patient non trouvé"
return (null sender, ``Auto-Submitted``), b must not answer that return, and
nothing else travels.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Iterator

import pytest

from annuaire.ins import ins_key

from operators import Pair, Peer, setup_pair

pytestmark = pytest.mark.slow


def ins(n: int) -> str:
    body = f"2990175002{n:03d}"
    return body + ins_key(body)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("loops")
    pair = setup_pair(work, patient_domains=("patient.a.test", "patient.b.test"))
    with pair.running():
        yield pair


def queue_ids(peer: Peer) -> list[str]:
    return [line.split()[0] for line in peer.run("queue", "list").stdout.splitlines()[:-1]]


def settled(pair: Pair, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while queue_ids(pair.a) or queue_ids(pair.b):
        assert time.monotonic() < deadline, (queue_ids(pair.a), queue_ids(pair.b))
        time.sleep(0.2)  # waiting for other processes, not timing a behaviour


def test_two_patient_operators_bouncing_stop_after_one_return(pair: Pair) -> None:
    ctx = ssl.create_default_context(cafile=str(pair.ca_dir / "root.pem"))
    ctx.check_hostname = False
    ctx.load_cert_chain(*(str(pair.b.data_dir / "pki" / f"server.{x}") for x in ("pem", "key")))
    sender = f"{ins(1)}@patient.b.test"
    with smtplib.SMTP("127.0.0.1", pair.a.port("mx"), timeout=30) as smtp:
        smtp.starttls(context=ctx)
        data = (
            f"From: <{sender}>\r\nTo: <{ins(2)}@patient.a.test>\r\n"
            "Subject: bonjour\r\nMessage-ID: <loop-1@patient.b.test>\r\n\r\nBonjour.\r\n"
        ).encode()
        assert smtp.sendmail(sender, [f"{ins(2)}@patient.a.test"], data) == {}
    settled(pair)
    a_log = pair.a.node.wait_for("automatic message queued")  # type: ignore[union-attr]
    assert "return.not_found" in a_log
    b_log = pair.b.node.wait_for("not delivered, no return")  # type: ignore[union-attr]
    assert "no automatic return to automatic mail" in b_log
    # One exchange only: b queued nothing automatic, a queued exactly one return.
    assert not any("automatic message queued" in line for line in pair.b.node.lines)  # type: ignore[union-attr]
    assert sum("automatic message queued" in line for line in pair.a.node.lines) == 1  # type: ignore[union-attr]
