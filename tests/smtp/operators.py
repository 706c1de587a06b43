"""Two operator nodes on one machine, as the SMTP tests need them (not a test module).

They share a demo CA (``init --ca-dir``), each whitelists the other with its
``whitelist self-entry`` and reaches the other's MX through the transport map.
"""

from __future__ import annotations

import contextlib
import email
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mssante import config as cfg
from mssante import index
from mssante.app import Runtime
from mssante.datadir import DEMO_PORTS

from nodes import Node, add_config, free_port_offset, mssante, rpps

PASSWORD = "correct horse battery staple"


@dataclass
class Peer:
    name: str
    domain: str
    data_dir: Path
    offset: int
    node: Node | None = None

    def port(self, listener: str) -> int:
        return DEMO_PORTS[listener] + self.offset

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = mssante(*args, "--data-dir", str(self.data_dir))
        assert result.returncode == 0, result.stderr
        return result

    def start(self) -> Node:
        self.node = Node.start(self.data_dir)
        self.node.wait_for("ready", timeout=60)
        return self.node

    def inbox(self, address: str) -> list[bytes]:
        runtime = Runtime.open(cfg.load(self.data_dir))
        try:
            with runtime.db.read() as conn:
                box = index.get_mailbox(conn, address, "INBOX")
                entries = index.messages(conn, box) if box is not None else []
            return [runtime.store.read(e.blob.sha256) for e in entries]
        finally:
            runtime.db.dispose()

    def wait_inbox(self, address: str, count: int, timeout: float = 30.0) -> list[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.inbox(address)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.2)  # waiting for other processes, not timing a behaviour


@dataclass
class Pair:
    ca_dir: Path
    a: Peer
    b: Peer
    work: Path

    def client_context(self, cert: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_dir / "root.pem"))
        ctx.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
        if cert is not None:
            ctx.load_cert_chain(f"{cert}.pem", f"{cert}.key")
        return ctx

    def submit(self, user: str = "alice@a.test", timeout: float = 30) -> smtplib.SMTP:
        smtp = smtplib.SMTP("127.0.0.1", self.a.port("submission"), timeout=timeout)
        smtp.starttls(context=self.client_context())
        smtp.login(user, PASSWORD)
        return smtp

    def stop(self) -> None:
        for peer in (self.a, self.b):
            if peer.node is not None and peer.node.process.poll() is None:
                peer.node.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator[Pair]:
        """Both nodes started, and stopped on the way out whatever happened."""
        try:
            self.a.start()
            self.b.start()
            yield self
        finally:
            self.stop()


def setup_pair(
    work: Path,
    *,
    database_urls: Sequence[str | None] = (None, None),
    extra_config: str | Sequence[str] = "",
    patient_operator: str | None = None,
    patient_domains: Sequence[str] | None = None,
) -> Pair:
    """Initialise nodes a.test and b.test (not started) with alice, carol and bob.

    ``extra_config`` is appended to both configurations, or, as a pair, one to each.
    With ``patient_operator`` ("a" or "b"), only that node serves the patient
    domain; the other delivers patient mail to it through the trust space.
    ``patient_domains`` gives each node a patient domain of its own (each
    reaches the other's through the transport map).
    """
    extras = (extra_config, extra_config) if isinstance(extra_config, str) else extra_config
    ca_dir = work / "ca"
    assert mssante("certs", "create-ca", "--ca-dir", str(ca_dir)).returncode == 0
    peers = []
    nodes = (("a", "a.test"), ("b", "b.test"))
    for (name, domain), url, extra in zip(nodes, database_urls, extras, strict=True):
        data_dir = work / name
        args = ["init", "--demo", "--data-dir", str(data_dir), "--domain", domain]
        args += ["--ca-dir", str(ca_dir), "--port-offset", str(free_port_offset())]
        if patient_domains is not None:
            args += ["--patient-domain", patient_domains[len(peers)]]
        if url:
            args += ["--database-url", url]
        result = mssante(*args)
        assert result.returncode == 0, result.stderr
        config_file = data_dir / cfg.CONFIG_NAME
        if patient_operator is not None and name != patient_operator:
            add_config(config_file, "[node]\nserves_patient_domain = false\n")
        if extra:
            add_config(config_file, extra)
        offset = cfg.load(data_dir).listeners.mx.port - DEMO_PORTS["mx"]
        peers.append(Peer(name, domain, data_dir, offset))
    a, b = peers
    for me, other in ((a, b), (b, a)):
        entry = work / f"{other.name}.xml"
        entry.write_text(other.run("whitelist", "self-entry", "--whole").stdout)
        me.run("whitelist", "update", str(entry))
        me.run("transport", "set", other.domain, f"127.0.0.1:{other.port('mx')}")
        if patient_domains is not None:
            theirs = patient_domains[0 if other is a else 1]
            me.run("transport", "set", theirs, f"127.0.0.1:{other.port('mx')}")
        if other.name == patient_operator:
            patient_domain = cfg.load(other.data_dir).node.patient_domain
            me.run("transport", "set", patient_domain, f"127.0.0.1:{other.port('mx')}")
    pw = work / "pw"
    pw.write_text(PASSWORD)
    for peer, user, n in ((a, "alice", 1), (a, "carol", 3), (b, "bob", 2)):
        peer.run(
            "bal", "add", f"{user}@{peer.domain}", "--type", "PER", "--rpps", rpps(n),
            "--password-file", str(pw),
        )  # fmt: skip
    return Pair(ca_dir, a, b, work)


def message_ids(messages: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(m).get("Message-ID", "")) for m in messages]
