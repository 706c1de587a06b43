"""An IMAP node in a background thread, for protocol tests with real clients (not a test module).

The node is real: a data directory made by ``mssante init --demo``, its
SQLite database and encrypted store, the IMAP listeners of ``serve`` on
127.0.0.1 with certificates from our PKI. It runs in its own thread and event
loop, so the synchronous clients (``imaplib``, ``mbsync``) talk to it over TCP
exactly as they would to a deployed node.
"""

from __future__ import annotations

import asyncio
import imaplib
import itertools
import shutil
import ssl
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from annuaire.bal import BalSpec, add_bal, add_member, set_password
from imap.service import imap_services
from mssante import config as cfg
from mssante import index
from mssante.app import Runtime, Service, ServiceFactory
from mssante.clock import Clock
from mssante.listener import TcpListener

from nodes import add_config, free_port_offset, mssante, rpps

PASSWORD = "correct horse battery staple"
DOMAIN = "demo.mssante.test"
_counter = itertools.count(1)
T = TypeVar("T")


@dataclass
class ImapNode:
    data_dir: Path
    runtime: Runtime
    ports: dict[str, int]
    ca_file: Path
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    services: list[Service] = field(default_factory=list)

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.check_hostname = False  # we connect to 127.0.0.1; the chain is still verified
        return ctx

    def new_user(self, name: str = "user", *, bal_type: str = "PER") -> str:
        """A fresh BAL with :data:`PASSWORD`; its address."""
        n = next(_counter)
        address = f"{name}{n}@{DOMAIN}"
        now = datetime.now(UTC)
        if bal_type == "PER":
            spec = BalSpec(address, "PER", person_id_type="RPPS", person_id=rpps(n))
        else:
            spec = BalSpec(address, bal_type, facility_id_type="FINESS", facility_id="750712184")
        with self.runtime.db.transaction() as conn:
            add_bal(conn, spec, now=now)
            set_password(conn, address, PASSWORD, now=now)
        return address

    def add_member(self, mailbox: str, member: str) -> None:
        with self.runtime.db.transaction() as conn:
            add_member(conn, mailbox, member)

    def connect(self, *, tls: str = "starttls") -> imaplib.IMAP4:
        if tls == "implicit":
            return imaplib.IMAP4_SSL(
                "127.0.0.1", self.ports["imaps"], ssl_context=self.context(), timeout=30
            )
        client = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=30)
        if tls == "starttls":
            client.starttls(ssl_context=self.context())
        return client

    def login(self, user: str, *, tls: str = "starttls") -> imaplib.IMAP4:
        client = self.connect(tls=tls)
        client.login(user, PASSWORD)
        return client

    def deliver(
        self,
        owner: str,
        raw: bytes,
        *,
        mailbox: str = "INBOX",
        flags: Sequence[str] = (),
        internal_date: datetime | None = None,
        delivery_key: str | None = None,
    ) -> int:
        """Put a message in a mailbox as local delivery does; its UID."""
        blob = self.runtime.store.put(raw)
        now = datetime.now(UTC)
        with self.runtime.db.transaction() as conn:
            index.ensure_default_mailboxes(conn, owner.lower(), now=now)
            box = index.get_mailbox(conn, owner.lower(), mailbox)
            assert box is not None
            entry = index.append(
                conn,
                box,
                blob,
                internal_date=internal_date or now,
                flags=flags,
                delivery_key=delivery_key,
            )
        self.runtime.mailbox_events.publish(box.id)
        return entry.uid

    def loop_call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the node's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def stop(self) -> None:
        async def shutdown() -> None:
            self.runtime.stopping.set()
            await asyncio.gather(*(s.stop(2) for s in self.services))

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.runtime.db.dispose()


def start_node(
    work: Path,
    *,
    extra_config: str = "",
    clock: Clock | None = None,
    factories: Sequence[ServiceFactory] = (imap_services,),
    init_args: Sequence[str] = (),
    share_store_with: Path | None = None,
) -> ImapNode:
    """Start a node; ``share_store_with`` another node's data directory (same database)."""
    data = work / "node"
    offset = str(free_port_offset())
    made = mssante("init", "--demo", "--data-dir", str(data), "--port-offset", offset, *init_args)
    assert made.returncode == 0, made.stderr
    if share_store_with is not None:
        shutil.rmtree(data / "blobs", ignore_errors=True)
        (data / "blobs").symlink_to(share_store_with / "blobs")
        key = cfg.load(data).store.key_file
        shutil.copyfile(share_store_with / key, data / key)
    if extra_config:
        add_config(data / cfg.CONFIG_NAME, extra_config)
    runtime = Runtime.open(cfg.load(data), clock)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    services: list[Service] = []

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            runtime.mailbox_events.bind(loop)
            for factory in factories:
                services.extend(factory(runtime))
            for service in services:
                await service.start()
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True, name="imap-node")
    thread.start()
    assert ready.wait(60), "the IMAP node did not start"
    ports = {s.name: s.bound_port for s in services if isinstance(s, TcpListener)}
    return ImapNode(data, runtime, ports, data / "pki" / "ca" / "root.pem", loop, thread, services)
