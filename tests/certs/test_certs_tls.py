"""Real mutual TLS on 127.0.0.1 with the demo CA, and the verifier's precise reasons.

Every failing handshake is paired with verify_chain on the same material:
OpenSSL only says "verify failed", the verifier says why.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import (
    CertificateAuthority,
    IssuedCertificate,
    Reason,
    TLSConfigError,
    client_context,
    load_crls,
    peer_certificate,
    profile_for,
    server_context,
    verify_chain,
    write_pem,
)

SERVER_NAME = "mx.test.mssante.fr"


def files(issued: IssuedCertificate, directory: Path, name: str) -> tuple[Path, Path]:
    return write_pem(issued, directory / name)


def mtls_server(ca: CertificateAuthority, server_pem: Any, **kwargs: Any) -> ssl.SSLContext:
    return server_context(
        server_pem.cert,
        server_pem.key,
        client_auth="required",
        anchors_file=ca.layout.root_cert,
        **kwargs,
    )


def assert_handshake_failed(outcome: Any, server_says: str) -> None:
    assert not outcome.ok
    assert isinstance(outcome.server_error, ssl.SSLError), outcome
    assert server_says in str(outcome.server_error)
    # TLS 1.3: the client learns of the rejection when it next reads.
    assert isinstance(outcome.client_error, (ssl.SSLError, ConnectionError, OSError))
    assert outcome.client_cert_seen is None


def verify_client(ca: CertificateAuthority, cert: x509.Certificate, at: datetime, **kw: Any) -> Any:
    return verify_chain(
        cert, intermediates=ca.chain, anchors=[ca.root], at=at, purpose="client", **kw
    )


# covers: TS-1
async def test_mutual_tls_asyncio(
    ca: CertificateAuthority, server_pem: Any, client_pem: Any
) -> None:
    seen: list[x509.Certificate | None] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(peer_certificate(writer.get_extra_info("ssl_object")))
        writer.write(await reader.readexactly(4))
        await writer.drain()
        writer.close()

    server_ctx = mtls_server(ca, server_pem, crl_files=[ca.layout.crl])
    client_ctx = client_context(
        anchors_file=ca.layout.root_cert, cert_file=client_pem.cert, key_file=client_pem.key
    )
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=SERVER_NAME
        )
        writer.write(b"EHLO")
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"EHLO"
        server_cert = peer_certificate(writer.get_extra_info("ssl_object"))
        writer.close()
        await writer.wait_closed()
    assert seen and seen[0] is not None
    assert seen[0].subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "LOGICIEL DPI"
    assert seen[0].subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        "1+123456789"
    )
    assert server_cert == server_pem.issued.cert


# covers: TS-1
def test_mutual_tls_personal_certificate(
    ca: CertificateAuthority, server_pem: Any, handshake: Any, tmp_path: Path, now: datetime
) -> None:
    issued = ca.issue("client-personal", cn="Jeanne Martin", identifier="810001234567", now=now)
    cert, key = files(issued, tmp_path, "cps")
    client = client_context(anchors_file=ca.layout.root_cert, cert_file=cert, key_file=key)
    outcome = handshake(mtls_server(ca, server_pem), client, SERVER_NAME)
    assert outcome.ok, outcome
    assert outcome.client_cert_seen == issued.cert
    assert verify_client(ca, issued.cert, now).ok


def test_required_client_auth_without_certificate(
    ca: CertificateAuthority, server_pem: Any, handshake: Any
) -> None:
    client = client_context(anchors_file=ca.layout.root_cert)
    outcome = handshake(mtls_server(ca, server_pem), client, SERVER_NAME)
    assert not outcome.ok and isinstance(outcome.server_error, ssl.SSLError)


def test_optional_client_auth_accepts_anonymous(
    ca: CertificateAuthority, server_pem: Any, handshake: Any
) -> None:
    server = server_context(
        server_pem.cert, server_pem.key, client_auth="optional", anchors_file=ca.layout.root_cert
    )
    outcome = handshake(server, client_context(anchors_file=ca.layout.root_cert), "localhost")
    assert outcome.ok and outcome.client_cert_seen is None


# covers: TS-1
def test_expired_client_certificate(
    ca: CertificateAuthority, server_pem: Any, handshake: Any, tmp_path: Path, now: datetime
) -> None:
    issued = ca.issue(
        "client-app",
        cn="EXPIRED APP",
        identifier="1+123456789",
        not_before=now - timedelta(days=400),
        not_after=now - timedelta(days=1),
        now=now,
    )
    cert, key = files(issued, tmp_path, "expired")
    client = client_context(anchors_file=ca.layout.root_cert, cert_file=cert, key_file=key)
    outcome = handshake(mtls_server(ca, server_pem), client, SERVER_NAME)
    assert_handshake_failed(outcome, "certificate has expired")
    result = verify_client(ca, issued.cert, now)
    assert result.reason is Reason.EXPIRED
    assert "CN=EXPIRED APP" in result.detail


# covers: TS-1
def test_client_certificate_from_wrong_ca(
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    server_pem: Any,
    handshake: Any,
    tmp_path: Path,
    now: datetime,
) -> None:
    issued = other_ca.issue("client-app", cn="FOREIGN APP", identifier="1+1", now=now)
    cert, key = files(issued, tmp_path, "foreign")
    client = client_context(anchors_file=ca.layout.root_cert, cert_file=cert, key_file=key)
    outcome = handshake(mtls_server(ca, server_pem), client, SERVER_NAME)
    assert_handshake_failed(outcome, "certificate verify failed")
    # The peer sends its chain, but in Python 3.11 we only get the leaf back;
    # even with the foreign intermediate offered, the path ends at the wrong root.
    result = verify_client(ca, issued.cert, now)
    assert result.reason is Reason.UNKNOWN_ISSUER
    offered = verify_chain(
        issued.cert,
        intermediates=[*issued.chain, *ca.chain],
        anchors=[ca.root],
        at=now,
        purpose="client",
    )
    assert offered.reason is Reason.UNKNOWN_ISSUER


# covers: TS-1
def test_revoked_client_certificate(
    fresh_ca: CertificateAuthority, handshake: Any, tmp_path: Path, now: datetime
) -> None:
    server_issued = fresh_ca.issue("server", cn=SERVER_NAME, now=now)
    server_cert, server_key = files(server_issued, tmp_path, "server")
    good = fresh_ca.issue("client-app", cn="GOOD APP", identifier="1+1", now=now)
    bad = fresh_ca.issue("client-app", cn="REVOKED APP", identifier="1+1", now=now)
    fresh_ca.revoke(bad.cert, reason="keyCompromise", now=now)
    server = server_context(
        server_cert,
        server_key,
        client_auth="required",
        anchors_file=fresh_ca.layout.root_cert,
        crl_files=[fresh_ca.layout.crl],
    )
    assert server.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF

    good_cert, good_key = files(good, tmp_path, "good")
    client = client_context(
        anchors_file=fresh_ca.layout.root_cert, cert_file=good_cert, key_file=good_key
    )
    assert handshake(server, client, SERVER_NAME).ok

    bad_cert, bad_key = files(bad, tmp_path, "bad")
    client = client_context(
        anchors_file=fresh_ca.layout.root_cert, cert_file=bad_cert, key_file=bad_key
    )
    outcome = handshake(server, client, SERVER_NAME)
    assert_handshake_failed(outcome, "certificate revoked")
    result = verify_client(fresh_ca, bad.cert, now, crls=load_crls(fresh_ca.layout.crl))
    assert result.reason is Reason.REVOKED
    assert "CN=REVOKED APP" in result.detail


# covers: TS-1
def test_client_certificate_without_client_auth_eku(
    ca: CertificateAuthority, server_pem: Any, handshake: Any, tmp_path: Path, now: datetime
) -> None:
    server_only = profile_for("client-app").with_eku(ExtendedKeyUsageOID.SERVER_AUTH)
    issued = ca.issue(
        "client-app", cn="SERVER ONLY", identifier="1+1", profile=server_only, now=now
    )
    cert, key = files(issued, tmp_path, "server-only")
    client = client_context(anchors_file=ca.layout.root_cert, cert_file=cert, key_file=key)
    outcome = handshake(mtls_server(ca, server_pem), client, SERVER_NAME)
    assert_handshake_failed(outcome, "unsuitable certificate purpose")
    assert verify_client(ca, issued.cert, now).reason is Reason.MISSING_EKU_CLIENT_AUTH


# covers: TS-1
def test_hostname_mismatch(
    ca: CertificateAuthority, server_pem: Any, client_pem: Any, handshake: Any, now: datetime
) -> None:
    client = client_context(
        anchors_file=ca.layout.root_cert, cert_file=client_pem.cert, key_file=client_pem.key
    )
    outcome = handshake(mtls_server(ca, server_pem), client, "mx.autre-operateur.fr")
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)
    assert "Hostname mismatch" in str(outcome.client_error)
    assert outcome.server_error is not None
    result = verify_chain(
        server_pem.issued.cert,
        intermediates=ca.chain,
        anchors=[ca.root],
        at=now,
        purpose="server",
        hostname="mx.autre-operateur.fr",
    )
    assert result.reason is Reason.HOSTNAME_MISMATCH
    # Without the name check the chain itself is fine (the server cert also serves clients).
    no_check = client_context(
        anchors_file=ca.layout.root_cert,
        cert_file=client_pem.cert,
        key_file=client_pem.key,
        check_hostname=False,
    )
    assert handshake(mtls_server(ca, server_pem), no_check, "mx.autre-operateur.fr").ok


def test_client_rejects_server_from_wrong_ca(
    other_ca: CertificateAuthority, server_pem: Any, handshake: Any
) -> None:
    server = server_context(server_pem.cert, server_pem.key)
    outcome = handshake(server, client_context(anchors_file=other_ca.layout.root_cert), SERVER_NAME)
    assert isinstance(outcome.client_error, ssl.SSLCertVerificationError)


# covers: TS-1
def test_stale_crl_fails_in_openssl_but_only_warns_in_verifier(
    fresh_ca: CertificateAuthority, handshake: Any, tmp_path: Path, now: datetime
) -> None:
    """Documented divergence: OpenSSL rejects an expired CRL, verify_chain warns."""
    back = now - timedelta(days=30)
    server_cert, server_key = files(
        fresh_ca.issue("server", cn=SERVER_NAME, now=now), tmp_path, "server"
    )
    client = fresh_ca.issue("client-app", cn="APP", identifier="1+1", not_before=back, now=now)
    stale = tmp_path / "stale.crl"
    stale.write_bytes(fresh_ca.crl(back).public_bytes(Encoding.DER))  # DER on purpose
    server = server_context(
        server_cert,
        server_key,
        client_auth="required",
        anchors_file=fresh_ca.layout.root_cert,
        crl_files=[stale],
    )
    cert, key = files(client, tmp_path, "client")
    ctx = client_context(anchors_file=fresh_ca.layout.root_cert, cert_file=cert, key_file=key)
    assert_handshake_failed(handshake(server, ctx, SERVER_NAME), "CRL has expired")
    result = verify_client(fresh_ca, client.cert, now, crls=load_crls(stale))
    assert result.ok and any("stale" in w for w in result.warnings)


def test_context_settings(ca: CertificateAuthority, server_pem: Any, client_pem: Any) -> None:
    server = mtls_server(ca, server_pem)
    assert server.minimum_version is ssl.TLSVersion.TLSv1_2
    assert server.options & ssl.OP_NO_COMPRESSION
    assert server.options & ssl.OP_CIPHER_SERVER_PREFERENCE
    assert server.verify_mode is ssl.CERT_REQUIRED
    assert not server.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF
    plain = server_context(server_pem.cert, server_pem.key)
    assert plain.verify_mode is ssl.CERT_NONE
    client = client_context(anchors_file=ca.layout.root_cert)
    assert client.check_hostname and client.verify_mode is ssl.CERT_REQUIRED
    assert client.minimum_version is ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("form", ["der", "p7b-der"])
def test_anchors_in_der_and_p7b_forms(
    ca: CertificateAuthority, server_pem: Any, handshake: Any, tmp_path: Path, form: str
) -> None:
    anchors = tmp_path / "root.cer"
    anchors.write_bytes(ca.root.public_bytes(Encoding.DER))
    if form == "p7b-der":
        if shutil.which("openssl") is None:
            pytest.skip("openssl not installed")
        p7b = tmp_path / "root.p7b"
        subprocess.run(
            [
                *("openssl", "crl2pkcs7", "-nocrl", "-certfile", str(ca.layout.root_cert)),
                *("-outform", "DER", "-out", str(p7b)),
            ],
            check=True,
            capture_output=True,
        )
        anchors = p7b
    server = server_context(server_pem.cert, server_pem.key)
    assert handshake(server, client_context(anchors_file=anchors), "localhost").ok


def test_ip_literal_hostname(ca: CertificateAuthority, server_pem: Any, handshake: Any) -> None:
    outcome = handshake(
        server_context(server_pem.cert, server_pem.key),
        client_context(anchors_file=ca.layout.root_cert),
        "127.0.0.1",
    )
    assert outcome.ok


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p, t: server_context(t / "missing.pem", p.key), r"missing\.pem"),
        (lambda p, t: server_context(p.cert, t / "missing.key"), r"missing\.key"),
        (lambda p, t: server_context(p.key, p.key), r"cannot load certificate and key"),
        (
            lambda p, t: server_context(p.cert, p.key, client_auth="required"),
            "needs anchors_file",
        ),
        (
            lambda p, t: server_context(
                p.cert, p.key, client_auth="required", anchors_file=t / "garbage.pem"
            ),
            r"trust anchors: .*garbage\.pem",
        ),
        (
            lambda p, t: server_context(
                p.cert,
                p.key,
                client_auth="required",
                anchors_file=p.cert,
                crl_files=[t / "garbage.pem"],
            ),
            r"CRL: .*garbage\.pem",
        ),
        (lambda p, t: client_context(anchors_file=p.cert, key_file=p.key), "without cert_file"),
        (lambda p, t: server_context(p.cert, p.key, client_auth="maybe"), "client_auth"),
    ],
)
def test_bad_files_raise_tls_config_error(
    server_pem: Any, tmp_path: Path, build: Any, message: str
) -> None:
    (tmp_path / "garbage.pem").write_bytes(b"garbage")
    with pytest.raises(TLSConfigError, match=message):
        build(server_pem, tmp_path)


def test_mismatched_key(ca: CertificateAuthority, server_pem: Any, client_pem: Any) -> None:
    with pytest.raises(TLSConfigError, match="key does not match"):
        server_context(server_pem.cert, client_pem.key)
