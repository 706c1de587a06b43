# covers: TS-4
"""IDLE against real `mssante serve` nodes: mail submitted by SMTP wakes an idling client.

The IDLE poll interval is set to an hour, so a client that sees the message
can only have been woken by the change notification (the in-process hub on
one node, PostgreSQL LISTEN/NOTIFY across two).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from mssante import config as cfg

from nodes import Node, free_port_offset, mssante, rpps

PASSWORD = "correct horse battery staple"
USER = "dr.idle@demo.mssante.test"
QUIET = "[imap]\nidle_poll_seconds = 3600\n"


def _init(data: Path, *extra: str, config: str = "") -> cfg.Config:
    made = mssante(
        "init", "--demo", "--data-dir", str(data), "--port-offset", str(free_port_offset()), *extra
    )
    assert made.returncode == 0, made.stderr
    with (data / cfg.CONFIG_NAME).open("a") as fh:
        fh.write("\n" + QUIET + config)
    return cfg.load(data)


def _add_user(data: Path, work: Path) -> None:
    (work / "pw").write_text(PASSWORD)
    added = mssante(
        "bal", "add", USER, "--type", "PER", "--rpps", rpps(7),
        "--password-file", str(work / "pw"), "--data-dir", str(data),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


class IdleClient:
    """A raw IMAPS connection (imaplib has no IDLE) that selects INBOX and idles."""

    def __init__(self, config: cfg.Config) -> None:
        ctx = ssl.create_default_context(cafile=str(config.data_dir / "pki" / "ca" / "root.pem"))
        ctx.check_hostname = False
        raw = socket.create_connection(("127.0.0.1", config.listeners.imaps.port), timeout=30)
        self.sock = ctx.wrap_socket(raw)
        self.buffer = b""
        self.read_until(rb"^\* OK")
        self.command(f'a LOGIN "{USER}" "{PASSWORD}"', rb"^a OK")
        self.command("b SELECT INBOX", rb"^b OK")
        self.sock.sendall(b"c IDLE\r\n")
        self.read_until(rb"^\+ ")

    def command(self, line: str, done: bytes) -> bytes:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.read_until(done)

    def read_until(self, pattern: bytes, timeout: float = 30) -> bytes:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.buffer, re.MULTILINE):
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed while waiting for {pattern!r}: {self.buffer!r}")
            self.buffer += chunk
        return self.buffer

    def done(self) -> None:
        self.sock.sendall(b"DONE\r\n")
        self.read_until(rb"^c OK")
        self.sock.close()


def _submit(config: cfg.Config) -> float:
    """Send one message to USER by SMTP submission; the time the 250 came back."""
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = USER, USER, "IDLE test"
    message.set_content("wake up")
    ctx = ssl.create_default_context(cafile=str(config.data_dir / "pki" / "ca" / "root.pem"))
    ctx.check_hostname = False
    with smtplib.SMTP("127.0.0.1", config.listeners.submission.port, timeout=30) as smtp:
        smtp.starttls(context=ctx)
        smtp.login(USER, PASSWORD)
        smtp.send_message(message)
        return time.monotonic()


def _wait_exists(client: IdleClient, accepted: float) -> float:
    client.read_until(rb"^\* 1 EXISTS", timeout=10)
    return time.monotonic() - accepted


@pytest.mark.slow
def test_smtp_delivery_wakes_an_idle_client_on_the_same_node(
    tmp_path: Path, start_node: Callable[[Path], Node]
) -> None:
    config = _init(tmp_path / "node")
    _add_user(tmp_path / "node", tmp_path)
    node = start_node(tmp_path / "node")
    node.wait_for(" ready ", timeout=30)
    client = IdleClient(config)
    latency = _wait_exists(client, _submit(config))
    client.done()
    print(f"IDLE saw the message {latency:.3f} s after SMTP accepted it")


@pytest.mark.slow
def test_idle_on_another_node_wakes_through_postgresql(
    tmp_path: Path, start_node: Callable[[Path], Node], postgres_url: str
) -> None:
    """A's queue runner delivers; the client idles on B, which shares A's database."""
    a = _init(tmp_path / "a", "--database-url", postgres_url)
    # B never delivers by itself: its runner only polls, once an hour.
    b = _init(
        tmp_path / "b", "--database-url", postgres_url, config="[queue]\npoll_seconds = 3600\n"
    )
    _add_user(tmp_path / "a", tmp_path)
    node_b = start_node(tmp_path / "b")
    node_b.wait_for(" ready ", timeout=30)
    assert "mailbox-events" in "".join(node_b.lines)
    node_a = start_node(tmp_path / "a")
    node_a.wait_for(" ready ", timeout=30)
    client = IdleClient(b)
    latency = _wait_exists(client, _submit(a))
    client.done()
    print(f"IDLE on node B saw the message {latency:.3f} s after node A accepted it")
