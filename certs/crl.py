"""CRL construction.

The CRL is signed by the CA whose certificates it lists (no indirect CRLs),
carries AKI and an increasing CRL number, and omits the reason code when it
is "unspecified", as RFC 5280 §5.3.1 recommends.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .keys import PrivateKey
from .revocation import Revocation

__all__ = ["CRL_DAYS", "build_crl", "crl_number"]

CRL_DAYS = 7  # peers refetch weekly at least; short enough to bound a stale CRL


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL number, or 0 when absent."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def build_crl(
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    revocations: Iterable[Revocation],
    *,
    now: datetime,
    number: int,
    days: int = CRL_DAYS,
) -> x509.CertificateRevocationList:
    """Sign a full CRL valid from ``now`` for ``days`` days."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
    )
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    except x509.ExtensionNotFound:
        pass
    for entry in sorted(revocations, key=lambda e: e.serial):
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
        )
        if entry.reason is not x509.ReasonFlags.unspecified:
            revoked = revoked.add_extension(x509.CRLReason(entry.reason), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder.sign(issuer_key, hashes.SHA256())
