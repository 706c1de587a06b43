"""Who is on the other end: certificate checks shared by the MX, submission and delivery.

The TLS layer only proves the peer holds the key of a certificate chaining to
our anchors (for the MX it is configured to let expired and revoked
certificates through the handshake); the verdict, with a reason a log and an
SMTP reply can name, comes from :func:`certs.verify.verify_chain` here, at the
injected clock's time, with the CRLs currently on disk.

Intermediates: Python's ``ssl`` (before 3.13) does not hand the peer's chain
over, so the issuers are looked up among the anchors bundle and this node's
own chain (the IGC-Santé bundle an operator installs carries both levels).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import BundleError, load_certificates, load_crls
from certs import tls as certs_tls
from certs.verify import Purpose, VerifyResult, verify_chain
from mssante.config import Config

__all__ = ["NO_CHECK_TIME", "TrustStore", "client_cert_server_context"]

log = logging.getLogger("mssante.smtp.peers")

#: OpenSSL's X509_V_FLAG_NO_CHECK_TIME: validity dates are ours to judge (with a reason).
NO_CHECK_TIME = 0x200000


@dataclass
class TrustStore:
    """Anchors, known intermediates and CRLs, reloaded when their files change."""

    anchors_file: Path
    crl_files: Sequence[Path] = ()
    extra_chain_files: Sequence[Path] = ()
    _stamp: tuple[float, ...] = ()
    _anchors: list[x509.Certificate] = field(default_factory=list)
    _intermediates: list[x509.Certificate] = field(default_factory=list)
    _crls: list[x509.CertificateRevocationList] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: Config) -> TrustStore:
        """The node's anchors and CRLs; its own chain supplies known intermediates."""
        return cls(
            config.path(config.tls.ca_file),
            [config.path(p) for p in config.tls.crl_files],
            [config.path(config.tls.cert_file)],
        )

    def _mtimes(self) -> tuple[float, ...]:
        stamps = []
        for path in [self.anchors_file, *self.crl_files, *self.extra_chain_files]:
            try:
                stamps.append(path.stat().st_mtime)
            except OSError:
                stamps.append(-1.0)
        return tuple(stamps)

    def refresh(self) -> None:
        """Reload what changed; a CRL that no longer parses keeps the last good one."""
        stamp = self._mtimes()
        if stamp == self._stamp:
            return
        anchors = list(load_certificates(self.anchors_file))
        extra: list[x509.Certificate] = []
        for path in self.extra_chain_files:
            extra += load_certificates(path)
        crls: list[x509.CertificateRevocationList] = []
        for path in self.crl_files:
            try:
                crls += load_crls(path)
            except BundleError as exc:
                log.warning(
                    "CRL unreadable, keeping the previous one",
                    extra={"fields": {"file": str(path), "error": str(exc)}},
                )
                crls += [c for c in self._crls if c not in crls]
        self._anchors = [c for c in anchors if c.issuer == c.subject] or anchors
        self._intermediates = [c for c in [*anchors, *extra] if c.issuer != c.subject]
        self._crls = crls
        self._stamp = stamp

    @property
    def intermediates(self) -> list[x509.Certificate]:
        return list(self._intermediates)

    def verify(self, cert: x509.Certificate, *, purpose: Purpose, at: datetime) -> VerifyResult:
        self.refresh()
        return verify_chain(
            cert,
            intermediates=self._intermediates,
            anchors=self._anchors,
            crls=self._crls,
            at=at,
            purpose=purpose,
        )


def client_cert_server_context(
    cert_file: Path, key_file: Path, trust: TrustStore, *, ciphers: str = ""
) -> ssl.SSLContext:
    """Ask for a client certificate; let date and revocation problems reach the SMTP layer.

    A certificate from an unknown CA still fails the handshake (OpenSSL gives
    Python no way to accept an unverifiable chain); the failure is logged with
    OpenSSL's reason and the client gets the matching TLS alert. Known
    intermediates join the verify store so that clients sending only their
    leaf (swaks, many MTAs) still chain; trust still ends at the anchors.
    """
    ctx = certs_tls.server_context(
        cert_file, key_file, client_auth="optional", anchors_file=trust.anchors_file
    )
    trust.refresh()
    if trust.intermediates:
        ctx.load_verify_locations(
            cadata="".join(
                c.public_bytes(serialization.Encoding.PEM).decode() for c in trust.intermediates
            )
        )
    ctx.verify_flags = ctx.verify_flags | NO_CHECK_TIME
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx
