"""Shared fixtures for the certs tests: demo CAs, issued files and a TLS handshake runner.

All keys are generated at test time into pytest temp directories. The clock
is read once here (the outermost layer) and injected everywhere else.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from certs import CertificateAuthority, IssuedCertificate, peer_certificate, write_pem

SERVER_NAME = "mx.test.mssante.fr"
FACILITY = "1+123456789"
RPPS = "810001234567"


@pytest.fixture(scope="session")
def now() -> datetime:
    # Real time: OpenSSL checks validity against the wall clock during handshakes.
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def ca(tmp_path_factory: pytest.TempPathFactory, now: datetime) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"), now=now)


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory, now: datetime) -> CertificateAuthority:
    # Same default name as ``ca`` on purpose: only the keys (AKI/SKI) tell them apart.
    return CertificateAuthority.create(tmp_path_factory.mktemp("other-ca"), now=now)


@pytest.fixture
def fresh_ca(tmp_path: Path, now: datetime) -> CertificateAuthority:
    """A CA of its own, for tests that revoke or otherwise change the directory."""
    return CertificateAuthority.create(tmp_path / "ca", now=now)


@dataclass(frozen=True)
class Pem:
    issued: IssuedCertificate
    cert: Path
    key: Path


def write(issued: IssuedCertificate, directory: Path, name: str) -> Pem:
    cert, key = write_pem(issued, directory / name)
    return Pem(issued, cert, key)


@pytest.fixture(scope="session")
def server_pem(
    ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory, now: datetime
) -> Pem:
    issued = ca.issue(
        "server",
        cn=SERVER_NAME,
        sans=["localhost", "127.0.0.1"],
        identifier=FACILITY,
        organization="CH DEMO",
        now=now,
    )
    return write(issued, tmp_path_factory.mktemp("server"), SERVER_NAME)


@pytest.fixture(scope="session")
def client_pem(
    ca: CertificateAuthority, tmp_path_factory: pytest.TempPathFactory, now: datetime
) -> Pem:
    issued = ca.issue(
        "client-app", cn="LOGICIEL DPI", identifier=FACILITY, organization="CH DEMO", now=now
    )
    return write(issued, tmp_path_factory.mktemp("client"), "client-app")


@dataclass(frozen=True)
class Outcome:
    """What each side of one TLS connection saw."""

    server_error: BaseException | None
    client_error: BaseException | None
    client_cert_seen: x509.Certificate | None

    @property
    def ok(self) -> bool:
        return self.server_error is None and self.client_error is None


Handshake = Callable[[ssl.SSLContext, ssl.SSLContext, str], Outcome]


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> Outcome:
    """One ping/pong over real TLS on 127.0.0.1; the exchange surfaces TLS 1.3 late alerts."""
    seen: dict[str, object] = {}
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(10)
        port = listener.getsockname()[1]

        def serve() -> None:
            try:
                conn, _ = listener.accept()
                conn.settimeout(10)
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    seen["peer"] = peer_certificate(tls)
                    if tls.recv(4) == b"ping":
                        tls.sendall(b"pong")
            except OSError as exc:  # ssl.SSLError is an OSError
                seen["error"] = exc

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        client_error: BaseException | None = None
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
                client_ctx.wrap_socket(raw, server_hostname=hostname) as tls,
            ):
                tls.sendall(b"ping")
                if tls.recv(4) != b"pong":
                    client_error = ConnectionError("server closed the connection")
        except OSError as exc:
            client_error = exc
        thread.join(10)
    error = seen.get("error")
    peer = seen.get("peer")
    return Outcome(
        server_error=error if isinstance(error, BaseException) else None,
        client_error=client_error,
        client_cert_seen=peer if isinstance(peer, x509.Certificate) else None,
    )


@pytest.fixture
def handshake() -> Handshake:
    return _handshake
