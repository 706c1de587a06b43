"""What `serve` runs for IMAP: the STARTTLS (143) and implicit TLS (993) listeners.

Both share the node's credential check with submission
(:func:`smtp.service.authenticator`), its mailbox change hub, and on
PostgreSQL a LISTEN connection that brings other nodes' changes to IDLE
sessions here.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509

from imap.grammar import Limits
from imap.server import Connection, serve_connection
from imap.session import Session, SessionContext
from mssante.config import ListenerConfig
from mssante.listener import TcpListener
from mssante.mailbox_events import PgListener
from smtp.peers import TrustStore, client_cert_server_context
from smtp.service import authenticator

if TYPE_CHECKING:
    from mssante.app import Runtime, Service

__all__ = ["imap_services"]


def imap_services(runtime: Runtime) -> list[Service]:
    config = runtime.config
    listeners = config.listeners
    if not (listeners.imap.enabled or listeners.imaps.enabled):
        return []
    trust = TrustStore.from_config(config)
    cert_file, key_file = config.path(config.tls.cert_file), config.path(config.tls.key_file)

    @functools.cache
    def tls_context() -> ssl.SSLContext:  # built once, on first use
        return client_cert_server_context(
            cert_file, key_file, trust, ciphers=config.smtp.tls_ciphers
        )

    async def external_allowed(cert: x509.Certificate) -> bool:
        result = await asyncio.to_thread(
            trust.verify, cert, purpose="client", at=runtime.clock.now()
        )
        return result.ok

    i = config.imap
    context = SessionContext(
        db=runtime.db,
        store=runtime.store,
        clock=runtime.clock,
        hostname=config.hostname,
        auth=authenticator(runtime),
        events=runtime.mailbox_events,
        stopping=runtime.stopping,
        append_limit=i.append_limit,
        quota_bytes=i.quota_bytes,
        idle_poll_seconds=i.idle_poll_seconds,
        idle_timeout=i.idle_timeout_seconds,
        external_allowed=external_allowed,
        on_seen=runtime.seen_hooks,
    )
    limits = Limits(max_literal=i.append_limit, max_literal_total=i.append_limit)
    services: list[Service] = []
    if runtime.db.dialect == "postgresql":
        url = runtime.db.engine.url.render_as_string(hide_password=False)
        services.append(PgListener(url, runtime.mailbox_events))
    for name, implicit in (("imap", False), ("imaps", True)):
        listener = getattr(listeners, name)
        if listener.enabled:
            services.append(
                _listener(name, listener, implicit, context, limits, tls_context, runtime)
            )
    return services


def _listener(
    name: str,
    listener: ListenerConfig,
    implicit: bool,
    context: SessionContext,
    limits: Limits,
    tls_context: Callable[[], ssl.SSLContext],
    runtime: Runtime,
) -> TcpListener:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer, context, tls_context=tls_context, limits=limits)
        session = Session(context=context, io=conn, session_id=secrets.token_hex(4))
        await serve_connection(conn, session)

    return TcpListener(
        name,
        listener.host,
        listener.port,
        handle,
        metrics=runtime.metrics,
        ssl_context=tls_context() if implicit else None,
    )
