"""The runtime every service shares, and `serve`'s start/stop sequence.

A *service* is anything with ``start()`` and ``stop(grace)``: a listener, a
queue runner. Packages contribute services through factories listed in
:data:`SERVICE_FACTORIES`; each factory receives the :class:`Runtime` and
returns the services its configuration enables. `serve` starts them all,
reports ready (``/healthz`` turns 200, one ``ready`` log line), waits for
SIGTERM/SIGINT, stops accepting, lets in-flight work finish within the grace
period and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy import select

from annuaire import api as annuaire_api
from annuaire.monitor import WhitelistMonitor
from cda import api as cda_api
from cda.timers import DmpTimerJob
from certs import tls as certs_tls
from imap.service import imap_services
from imap.session import SeenHook
from mssante import http
from mssante.authn import Authenticator
from mssante.clock import Clock, SystemClock
from mssante.config import CONFIG_NAME, Config, ConfigError
from mssante.db import Database, SchemaOutOfDate
from mssante.listener import TcpListener
from mssante.mailbox_events import MailboxEvents
from mssante.metrics import Metrics
from mssante.retention import RetentionJob
from mssante.schema import BLOB_REFERENCES
from mssante.store import BlobStore, GCReport, load_key
from smtp.service import authenticator, smtp_services

log = logging.getLogger("mssante")


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self, grace: float) -> None: ...

    def describe(self) -> str: ...


@dataclass
class Runtime:
    """What a running node shares between its services."""

    config: Config
    db: Database
    store: BlobStore
    clock: Clock = field(default_factory=SystemClock)
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False
    #: The credential check submission and IMAP share (built by the first that needs it).
    authenticator: Authenticator | None = None
    #: "Mailbox N changed": wakes IDLE sessions (fed by local writers and PostgreSQL NOTIFY).
    mailbox_events: MailboxEvents = field(default_factory=MailboxEvents)
    #: Called when IMAP sets \\Seen on messages (the MSS-C read receipts hook in here).
    seen_hooks: list[SeenHook] = field(default_factory=list)
    #: Set when shutdown begins, so long sessions can say goodbye (SMTP 421, IMAP BYE).
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def open(cls, config: Config, clock: Clock | None = None) -> Runtime:
        """Open the database and the store a configuration names; check the schema."""
        key = load_key(config.path(config.store.key_file)) if config.store.encrypt else None
        db = open_database(config)
        try:
            db.require_current()
        except SchemaOutOfDate:
            db.dispose()
            raise
        store = BlobStore(config.data_dir / "blobs", key)
        return cls(config=config, db=db, store=store, clock=clock or SystemClock())

    def collect_garbage(self) -> GCReport:
        """Remove blobs no column of :data:`BLOB_REFERENCES` names (see BlobStore.gc)."""
        referenced: set[str] = set()
        with self.db.read() as conn:
            for column in BLOB_REFERENCES:
                referenced.update(conn.execute(select(column).distinct()).scalars())
        return self.store.gc(
            referenced,
            now=self.clock.now(),
            grace_seconds=self.config.store.gc_grace_seconds,
        )


def open_database(config: Config) -> Database:
    """The database a configuration names, its password read from its file."""
    password = None
    if config.database.password_file is not None:
        file = config.path(config.database.password_file)
        try:
            password = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(
                config.data_dir / CONFIG_NAME, "database.password_file", f"a readable file ({exc})"
            ) from None
    return Database.open(
        config.database_url,
        password=password,
        busy_timeout_ms=config.database.busy_timeout_ms,
        pool_size=config.database.pool_size,
    )


def http_services(runtime: Runtime) -> list[Service]:
    """The plain listener (public routes), and with ``dmp.http_views`` the HTTPS one."""
    config = runtime.config
    services: list[Service] = []
    listener = config.listeners.http
    if listener.enabled:
        routes = {
            **http.builtin_routes(lambda: runtime.ready, runtime.metrics.render),
            "/annuaire/search": annuaire_api.search_route(runtime.db),
            **http.autoconfig_routes(config),
        }
        services.append(
            TcpListener(
                "http",
                listener.host,
                listener.port,
                http.make_handler(routes),
                metrics=runtime.metrics,
                stream_limit=http.MAX_HEAD,
            )
        )
    secure = config.listeners.https
    if config.dmp.http_views and secure.enabled:
        auth = authenticator(runtime)
        dmp_routes = {
            cda_api.DOCUMENTS_PATH: cda_api.documents_route(
                runtime.db, runtime.clock, patient_domain=config.node.patient_domain
            )
        }
        context = certs_tls.server_context(
            config.path(config.tls.cert_file), config.path(config.tls.key_file)
        )
        if config.smtp.tls_ciphers:
            context.set_ciphers(config.smtp.tls_ciphers)
        services.append(
            TcpListener(
                "https",
                secure.host,
                secure.port,
                http.make_authenticated_handler(dmp_routes, auth, realm="mssante-dmp"),
                metrics=runtime.metrics,
                ssl_context=context,
                stream_limit=http.MAX_HEAD,
            )
        )
    return services


def directory_services(runtime: Runtime) -> list[Service]:
    every = runtime.config.whitelist.refresh_seconds
    return [WhitelistMonitor(runtime.db, runtime.clock, runtime.metrics, every=every)]


def retention_services(runtime: Runtime) -> list[Service]:
    """MSSC-RETENTION-1 on the patient domain's operator (days = 0: off)."""
    config = runtime.config
    days = config.patients.retention_days
    if not config.node.serves_patient_domain or not days:
        return []
    job = RetentionJob(
        db=runtime.db,
        clock=runtime.clock,
        owner_domain=config.node.patient_domain,
        max_age=timedelta(days=days),
        every=config.patients.retention_check_seconds,
        collect_garbage=runtime.collect_garbage,
        on_changed=runtime.mailbox_events.publish,
    )
    return [job]


def dmp_services(runtime: Runtime) -> list[Service]:
    """The Y-5 timers of the embedded DMP, on every node.

    The record lives in the database, so any node sharing it may fire the
    timers: each document's notice and reveal happen once whichever node (or
    how many) runs them. With no document waiting, a run is one query. The
    notice goes to the patient's MSS-C mailbox, delivered here when this node
    serves the patient domain, else relayed to its operator (then it comes
    from this node's own domain, which its peers can check). The queue
    runner finds it at its next poll.
    """
    config = runtime.config
    node = config.node
    sender_domain = node.patient_domain if node.serves_patient_domain else node.domain
    job = DmpTimerJob(
        db=runtime.db,
        store=runtime.store,
        clock=runtime.clock,
        patient_domain=node.patient_domain,
        from_address=f"ne-pas-repondre@{sender_domain}",
        hostname=config.hostname,
        max_age=timedelta(seconds=config.queue.max_age_seconds),
        every=config.dmp.timer_check_seconds,
    )
    return [job]


ServiceFactory = Callable[[Runtime], list[Service]]

#: Every package's contribution to `serve`. SMTP and IMAP add theirs here.
SERVICE_FACTORIES: list[ServiceFactory] = [
    directory_services,
    smtp_services,
    imap_services,
    retention_services,
    dmp_services,
    http_services,
]


async def serve(runtime: Runtime, factories: list[ServiceFactory] | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``runtime.stopping`` is set), then stop cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.stopping.set)
    services = [s for factory in factories or SERVICE_FACTORIES for s in factory(runtime)]
    started: list[Service] = []
    ready_gauge = runtime.metrics.gauge("mssante_ready", "1 while every listener is bound.")
    try:
        for service in services:
            await service.start()
            started.append(service)
        runtime.ready = True
        ready_gauge.set(1)
        log.info(
            "ready",
            extra={"fields": {"services": ", ".join(s.describe() for s in started)}},
        )
        await runtime.stopping.wait()
    finally:
        runtime.ready = False
        ready_gauge.set(0)
        runtime.stopping.set()
        grace = runtime.config.server.shutdown_grace_seconds
        log.info("stopping", extra={"fields": {"grace_seconds": grace}})
        await asyncio.gather(*(s.stop(grace) for s in reversed(started)))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        runtime.db.dispose()
    log.info("stopped")
