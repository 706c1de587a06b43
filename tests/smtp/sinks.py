"""SMTP peers for the tests: aiosmtpd that records what arrives (not a test module).

One handler, :class:`Recorder`, serves every test that needs a real third-party
SMTP server: a trust-space MX, a notification smarthost, a patient's personal
mail provider. It answers per a test's policy (RCPT and DATA replies, AUTH
credentials) and keeps the envelope, the bytes and what the session showed
(EHLO name, TLS version, client certificate, AUTH login).

:class:`Authorities` builds the certificates those servers present with our
own PKI code, at test time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as AiosmtpdSMTP
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.x509.oid import NameOID

from certs import CertificateAuthority, write_pem
from smtp.client import RecipientOutcome

# ---------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pem:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Authorities:
    """Two demo CAs: ``ca`` is the one the tests trust, ``other`` an unrelated one."""

    ca: CertificateAuthority
    other: CertificateAuthority
    leaves: Path  # where issued certificates and keys are written
    now: datetime

    @classmethod
    def create(cls, tmp_path_factory: pytest.TempPathFactory) -> Authorities:
        # Real time: OpenSSL checks validity against the wall clock in handshakes.
        now = datetime.now(UTC).replace(microsecond=0)
        return cls(
            ca=CertificateAuthority.create(tmp_path_factory.mktemp("ca"), now=now),
            other=CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"), now=now),
            leaves=tmp_path_factory.mktemp("leaves"),
            now=now,
        )

    def server(
        self,
        cn: str,
        *,
        sans: list[str],
        organization: str,
        untrusted: bool = False,
        name: str | None = None,
    ) -> Pem:
        """A server certificate from ``ca`` (``other`` if ``untrusted``) in ``leaves/name``."""
        issued = (self.other if untrusted else self.ca).issue(
            "server",
            cn=cn,
            sans=sans,
            identifier="1+123456789",
            organization=organization,
            now=self.now,
        )
        cert, key = write_pem(issued, self.leaves / (name or cn))
        return Pem(cert, key)


def common_name(cert: x509.Certificate) -> str:
    value = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    return value if isinstance(value, str) else value.decode()


# ---------------------------------------------------------------- the recording handler


@dataclass
class Received:
    mail_from: str
    mail_options: list[str]
    rcpt_tos: list[str]
    rcpt_options: list[str]
    content: bytes  # the bytes as they came, before aiosmtpd decodes anything
    ehlo: str | None  # the name the client gave in EHLO/HELO
    tls_version: str | None  # None: the message came in clear
    client_cn: str | None  # the CN of the client certificate, if one was shown
    login: bytes | None  # the AUTH login, if the client authenticated


@dataclass
class Recorder:
    """aiosmtpd handler: records what arrived, answers per a test's policy."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str = "250 2.0.0 Ok: queued"
    credentials: tuple[bytes, bytes] | None = None  # the one (login, password) AUTH accepts
    mails: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    logins: list[tuple[bytes, bytes]] = field(default_factory=list)

    async def handle_MAIL(
        self,
        server: AiosmtpdSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        self.mails.append(address)
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: AiosmtpdSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address, "250 2.1.5 Ok")
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        return reply

    async def handle_DATA(self, server: AiosmtpdSMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and envelope.original_content is not None
        assert server.transport is not None
        # After STARTTLS as with implicit TLS, the transport is the TLS one.
        ssl_object = server.transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                mail_options=list(envelope.mail_options),
                rcpt_tos=list(envelope.rcpt_tos),
                rcpt_options=list(envelope.rcpt_options),
                content=envelope.original_content,
                ehlo=session.host_name,
                tls_version=ssl_object.version() if ssl_object is not None else None,
                client_cn=common_name(x509.load_der_x509_certificate(der)) if der else None,
                login=login,
            )
        )
        return self.data_reply

    def authenticate(
        self,
        server: AiosmtpdSMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append((auth_data.login, auth_data.password))
        ok = (auth_data.login, auth_data.password) == self.credentials
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


# ---------------------------------------------------------------- servers


@contextlib.asynccontextmanager
async def serving(
    handler: Recorder,
    *,
    hostname: str,
    starttls: ssl.SSLContext | None = None,
    implicit: ssl.SSLContext | None = None,
    auth: bool = False,
    utf8: bool = False,
) -> AsyncIterator[int]:
    """aiosmtpd on 127.0.0.1 (random port) in this loop: plain, STARTTLS (then required)
    or implicit TLS, with AUTH required if ``auth``; yields the port."""
    loop = asyncio.get_running_loop()
    sessions: list[AiosmtpdSMTP] = []

    def factory() -> AiosmtpdSMTP:
        session = AiosmtpdSMTP(
            handler,
            hostname=hostname,
            tls_context=starttls,
            require_starttls=starttls is not None,
            authenticator=handler.authenticate if auth else None,
            auth_required=auth,
            enable_SMTPUTF8=utf8,
            loop=loop,
        )
        sessions.append(session)
        return session

    server = await loop.create_server(factory, "127.0.0.1", 0, ssl=implicit)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        # Python 3.11 leaves accepted connections alone: end them before the loop does.
        running = [s._handler_coroutine for s in sessions if s._handler_coroutine is not None]
        for task in running:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*running, return_exceptions=True), 10)


@contextlib.contextmanager
def threaded(handler: Recorder) -> Iterator[int]:
    """aiosmtpd in a thread of its own on 127.0.0.1, plain, for other processes; yields the port."""
    port = free_port()  # the Controller cannot be given port 0
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def free_port() -> int:
    """A port nobody listens on (bound then released): connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def kinds(outcomes: list[RecipientOutcome]) -> list[tuple[str, int, str]]:
    return [(o.kind, o.code, o.status) for o in outcomes]
