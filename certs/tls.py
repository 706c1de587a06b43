"""``ssl.SSLContext`` factories for the trust space (mutual TLS, TLS ≥ 1.2).

Trust anchors and CRLs are parsed with :mod:`certs.bundle` first, so DER and
``.p7b`` files work and a broken file is reported by name instead of as an
opaque OpenSSL error.

With CRL files, contexts set ``VERIFY_CRL_CHECK_LEAF``: OpenSSL then *needs*
a CRL from the leaf's issuer and fails the handshake without one ("unable to
get certificate CRL"), and also fails on a CRL past its next update ("CRL has
expired") — stricter than :func:`certs.verify.verify_chain`, which only warns
about a stale CRL. Intermediates are not checked for revocation in the
handshake.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .bundle import load_certificates, load_crls
from .errors import BundleError, TLSConfigError

__all__ = ["ClientAuth", "client_context", "peer_certificate", "server_context"]

ClientAuth: TypeAlias = Literal["none", "optional", "required"]
StrPath: TypeAlias = str | os.PathLike[str]

# Forward secrecy and AEAD only for TLS 1.2; TLS 1.3 suites are all fine.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
_VERIFY_MODES: dict[str, ssl.VerifyMode] = {
    "none": ssl.CERT_NONE,
    "optional": ssl.CERT_OPTIONAL,
    "required": ssl.CERT_REQUIRED,
}


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.set_ciphers(_TLS12_CIPHERS)


def _check_readable(path: StrPath, what: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise TLSConfigError(f"cannot read {what} {os.fspath(path)}: {exc.strerror}") from exc


def _load_identity(ctx: ssl.SSLContext, cert_file: StrPath, key_file: StrPath | None) -> None:
    _check_readable(cert_file, "certificate file")
    if key_file is not None:
        _check_readable(key_file, "key file")
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        files = os.fspath(cert_file) + (f" / {os.fspath(key_file)}" if key_file else "")
        raise TLSConfigError(
            f"cannot load certificate and key {files}: not PEM, or key does not match ({exc})"
        ) from exc


def _load_anchors(ctx: ssl.SSLContext, anchors_file: StrPath) -> None:
    try:
        certs = load_certificates(anchors_file)
    except BundleError as exc:
        raise TLSConfigError(f"trust anchors: {exc}") from exc
    ctx.load_verify_locations(
        cadata="".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
    )


def _load_crls(ctx: ssl.SSLContext, crl_files: Iterable[StrPath]) -> None:
    """Load CRLs (any format) via a PEM temp file: ``cadata`` cannot carry CRLs."""
    pem = bytearray()
    for path in crl_files:
        try:
            crls = load_crls(path)
        except BundleError as exc:
            raise TLSConfigError(f"CRL: {exc}") from exc
        for crl in crls:
            pem += crl.public_bytes(serialization.Encoding.PEM)
    if not pem:
        return
    with tempfile.TemporaryDirectory(prefix="certs-crl-") as tmp:
        combined = Path(tmp) / "crls.pem"
        combined.write_bytes(bytes(pem))
        ctx.load_verify_locations(cafile=combined)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def server_context(
    cert_file: StrPath,
    key_file: StrPath | None,
    *,
    client_auth: ClientAuth = "none",
    anchors_file: StrPath | None = None,
    crl_files: Iterable[StrPath] = (),
) -> ssl.SSLContext:
    """Server side: our certificate chain, and client certificates checked per ``client_auth``.

    CRLs only matter when client certificates are verified; they are ignored
    with ``client_auth="none"``.
    """
    if client_auth not in _VERIFY_MODES:
        raise TLSConfigError(f"client_auth must be none, optional or required, not {client_auth!r}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_identity(ctx, cert_file, key_file)
    if client_auth != "none":
        if anchors_file is None:
            raise TLSConfigError(f"client_auth={client_auth!r} needs anchors_file")
        _load_anchors(ctx, anchors_file)
        _load_crls(ctx, crl_files)
        ctx.verify_mode = _VERIFY_MODES[client_auth]
    return ctx


def client_context(
    *,
    anchors_file: StrPath,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
    crl_files: Iterable[StrPath] = (),
    check_hostname: bool = True,
) -> ssl.SSLContext:
    """Client side: the server chain is always verified.

    ``check_hostname=False`` only skips the name check (e.g. when connecting
    by IP to a peer whose name was checked another way), never the chain.
    """
    if key_file is not None and cert_file is None:
        raise TLSConfigError("key_file given without cert_file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(ctx)
    ctx.check_hostname = check_hostname
    ctx.verify_mode = ssl.CERT_REQUIRED
    _load_anchors(ctx, anchors_file)
    _load_crls(ctx, crl_files)
    if cert_file is not None:
        _load_identity(ctx, cert_file, key_file)
    return ctx


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> x509.Certificate | None:
    """The peer's leaf as a cryptography object (``None`` if it sent none), for verify_chain."""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return x509.load_der_x509_certificate(der)
