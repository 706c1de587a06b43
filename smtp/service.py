"""What `serve` runs for SMTP: the MX, the two submission listeners and the queue runner."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from cryptography import x509

from annuaire import RoutingContext, address_key, dn_from_x509, pair_matches
from cda.bridge import BridgeDesk, BridgeSettings
from certs.formatting import format_name
from mssante.authn import Authenticator
from mssante.batch import WriteBatcher
from mssante.config import Config, ListenerConfig
from mssante.listener import TcpListener
from mssante.lockout import FailureThrottle, ThrottleSettings
from mssante.oauth import OAuthSettings, TokenVerifier
from smtp import dkim, transport
from smtp.accept import Committer
from smtp.client import DeliveryClient
from smtp.endpoint import Endpoint
from smtp.limits import SizeCaps
from smtp.mdn import ReadReceipts
from smtp.mx import MxPolicy
from smtp.notify import NotificationSender, SmarthostSettings
from smtp.patients import NotificationSettings, PatientDesk, PatientSettings
from smtp.peers import TrustStore
from smtp.protocol import Limits, ServerConnection
from smtp.runner import DeliverTo, QueueRunner, RunnerSettings
from smtp.session import Policy, Session, SessionContext
from smtp.submission import SubmissionPolicy

if TYPE_CHECKING:
    from mssante.app import Runtime, Service

__all__ = ["authenticator", "smtp_services"]


def authenticator(runtime: Runtime) -> Authenticator:
    """The node's one credential check, shared by submission and IMAP (and its throttle)."""
    if runtime.authenticator is None:
        s = runtime.config.smtp
        tokens = None
        if s.oauth_issuer:
            tokens = TokenVerifier(
                OAuthSettings(
                    issuer=s.oauth_issuer,
                    audience=s.oauth_audience,
                    jwks_file=runtime.config.path(s.oauth_jwks_file) if s.oauth_jwks_file else None,
                    jwks_url=s.oauth_jwks_url or None,
                ),
                runtime.clock,
            )
        throttle = FailureThrottle(
            runtime.clock,
            ThrottleSettings(
                max_failures_account=s.auth_max_failures_account,
                max_failures_client=s.auth_max_failures_client,
                lockout_seconds=s.auth_lockout_seconds,
            ),
        )
        runtime.authenticator = Authenticator(
            runtime.db,
            runtime.clock,
            throttle,
            password_auth=s.password_auth,
            tokens=tokens,
            patient_domain=runtime.config.node.patient_domain,
        )
    return runtime.authenticator


def smtp_services(runtime: Runtime) -> list[Service]:
    config = runtime.config
    db = runtime.db
    trust = TrustStore.from_config(config)
    routing = RoutingContext.from_config(config)
    caps = SizeCaps.from_config(config)
    cert_file, key_file = config.path(config.tls.cert_file), config.path(config.tls.key_file)

    def peer_allowed(domain: str, cert: x509.Certificate) -> str | None:
        with db.read() as conn:
            if pair_matches(conn, domain, dn_from_x509(cert.subject)):
                return None
        return (
            f"peer certificate {format_name(cert.subject)} is not paired with {domain} "
            "in the MSSanté whitelist"
        )

    client = DeliveryClient(
        hostname=config.hostname,
        cert_file=cert_file,
        key_file=key_file,
        anchors_file=config.path(config.tls.ca_file),
        crl_files=[config.path(p) for p in config.tls.crl_files],
        peer_allowed=peer_allowed,
        transport=lambda domain: transport.lookup(db, domain),
    )
    q = config.queue
    # Only the patient domain's operator applies the MSS-C rules (and sends receipts).
    desk = (
        None
        if not routing.serves_patients
        else PatientDesk(
            PatientSettings(
                patient_domain=routing.patient_domain,
                size_cap=caps.for_address(f"x@{routing.patient_domain}")[1],
                hostname=config.hostname,
                from_address=f"ne-pas-repondre@{routing.patient_domain}",
                max_age=timedelta(seconds=q.max_age_seconds),
                notifications=_notification_settings(config),
            ),
            store=runtime.store,
        )
    )
    batcher = WriteBatcher(db)  # acceptance and delivery outcomes commit in groups
    runner = QueueRunner(
        db=db,
        store=runtime.store,
        clock=runtime.clock,
        metrics=runtime.metrics,
        routing=routing,
        settings=RunnerSettings(
            hostname=config.hostname,
            postmaster=f"postmaster@{config.node.domain}",
            schedule=q.retry_schedule_seconds,
            max_age=timedelta(seconds=q.max_age_seconds),
            delay_notice=timedelta(seconds=q.delay_notice_seconds)
            if q.delay_notice_seconds
            else None,
            lease=timedelta(seconds=q.lease_seconds),
            poll_seconds=q.poll_seconds,
            parallel=q.parallel,
        ),
        deliver_remote=client.deliver,
        on_appended=runtime.mailbox_events.publish,
        patients=desk,
        deliver_notification=_notification_sender(config),
        bridge=_bridge_desk(runtime, routing),
        batcher=batcher,
    )
    receipts = ReadReceipts(
        db=db,
        store=runtime.store,
        clock=runtime.clock,
        patient_domain=routing.patient_domain,
        hostname=config.hostname,
        max_age=timedelta(seconds=q.max_age_seconds),
        wake_queue=runner.wake,
        on_changed=runtime.mailbox_events.publish,
    )
    if routing.serves_patients:
        runtime.seen_hooks.append(receipts.on_seen)
    s = config.smtp
    limits = Limits(
        max_message_size=s.max_message_size,
        max_recipients=s.max_recipients,
        max_command_line=s.max_command_line,
        max_commands=s.max_commands,
        max_errors=s.max_errors,
    )
    context = SessionContext(
        db=db,
        store=runtime.store,
        clock=runtime.clock,
        metrics=runtime.metrics,
        hostname=config.hostname,
        limits=limits,
        idle_timeout=s.idle_timeout_seconds,
        stopping=runtime.stopping,
        committer=Committer(
            batcher, max_age=timedelta(seconds=q.max_age_seconds), on_committed=runner.wake
        ),
    )
    auth = authenticator(runtime)

    def endpoint() -> Endpoint:  # one per listener: each caches its own TLS context
        return Endpoint(cert_file, key_file, trust, routing, caps, config.hostname, s.tls_ciphers)

    services: list[Service] = [runner]
    listeners = config.listeners
    if listeners.mx.enabled:
        mx = MxPolicy(endpoint(), dkim_verify=s.dkim_verify)
        services.append(_listener("mx", listeners.mx, mx, context, runtime))
    for name, implicit in (("submission", False), ("submissions", True)):
        listener = getattr(listeners, name)
        if not listener.enabled:
            continue
        policy = SubmissionPolicy(
            endpoint(),
            name=name,
            implicit_tls=implicit,
            auth=auth,
            bridge_clients=frozenset(address_key(a) for a in config.dmp.bridge_clients),
        )
        services.append(_listener(name, listener, policy, context, runtime))
    return services


def _notification_from(config: Config) -> str:
    return config.notifications.from_address or f"ne-pas-repondre@{config.node.domain}"


def _notification_settings(config: Config) -> NotificationSettings | None:
    n = config.notifications
    if not n.smarthost:
        return None
    return NotificationSettings(
        from_address=_notification_from(config),
        url=n.url,
        window=timedelta(seconds=n.window_seconds),
    )


def _notification_sender(config: Config) -> DeliverTo | None:
    """MSSC-NOTIF-1: the smarthost client, DKIM-signing for the notification sender's domain."""
    n = config.notifications
    if not n.smarthost:
        return None
    host, _, port = n.smarthost.rpartition(":")
    s = config.smtp
    domain = _notification_from(config).rpartition("@")[2]
    sender = NotificationSender(
        SmarthostSettings(
            host=host,
            port=int(port),
            tls=n.tls,
            ca_file=config.path(n.ca_file) if n.ca_file else None,
            username=n.username or None,
            password_file=config.path(n.password_file) if n.password_file else None,
        ),
        hostname=config.hostname,
        dkim_key=dkim.load_key(
            config.path(s.dkim_key_file), domain=domain, selector=s.dkim_selector
        ),
    )
    return sender.deliver


def _listener(
    name: str, listener: ListenerConfig, policy: Policy, context: SessionContext, runtime: Runtime
) -> TcpListener:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        conn = ServerConnection(
            context.hostname,
            context.limits,
            tls=policy.implicit_tls,
            starttls_available=not policy.implicit_tls,
            normalise_bare_lf=policy.normalise_bare_lf,
        )
        session = Session(
            context=context,
            policy=policy,
            reader=reader,
            writer=writer,
            conn=conn,
            peer_ip=str(peer[0]) if peer else "unknown",
            session_id=secrets.token_hex(4),
        )
        await session.run()

    return TcpListener(
        name,
        listener.host,
        listener.port,
        handle,
        metrics=runtime.metrics,
        ssl_context=policy.server_context() if policy.implicit_tls else None,
    )


def _bridge_desk(runtime: Runtime, routing: RoutingContext) -> BridgeDesk | None:
    """The envoi-en-Y bridge (Y-2) when ``node.bridge_address`` is set."""
    config = runtime.config
    if not config.node.bridge_address:
        return None
    return BridgeDesk(
        BridgeSettings(
            address=config.node.bridge_address,
            hostname=config.hostname,
            patient_domain=routing.patient_domain,
            clients=frozenset(address_key(a) for a in config.dmp.bridge_clients),
            w_mode=config.dmp.w_mode,
            patient_replies=config.dmp.patient_replies,
            test_mode=config.dmp.test_ins,
            max_age=timedelta(seconds=config.queue.max_age_seconds),
        ),
        store=runtime.store,
        metrics=runtime.metrics,
    )
