"""One-glance summary of a certificate for ``certs check`` and logs."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .formatting import format_name, format_time
from .layout import serial_hex

__all__ = ["describe", "fingerprint"]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as colon-separated upper-case hex (``openssl -fingerprint``)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return []
    return [str(getattr(name, "value", name)) for name in ext]


def describe(cert: x509.Certificate) -> str:
    """Subject, issuer, serial, validity, SANs and SHA-256 fingerprint, one per line."""
    lines = [
        f"subject:    {format_name(cert.subject)}",
        f"issuer:     {format_name(cert.issuer)}",
        f"serial:     {serial_hex(cert.serial_number)}",
        f"not before: {format_time(cert.not_valid_before_utc)}",
        f"not after:  {format_time(cert.not_valid_after_utc)}",
    ]
    sans = _sans(cert)
    if sans:
        lines.append(f"SANs:       {', '.join(sans)}")
    lines.append(f"SHA-256:    {fingerprint(cert)}")
    return "\n".join(lines)
