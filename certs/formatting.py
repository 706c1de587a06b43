"""Human-readable names and times for messages, files and the CLI.

``rfc4514_string`` prints serialNumber/givenName/surname as bare OIDs;
personal (CPS-like) subjects carry the RPPS number in serialNumber, so we
name those attributes to keep log lines readable.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

__all__ = ["format_name", "format_time"]

_OVERRIDES = {
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.TITLE: "title",
}


def format_name(name: x509.Name) -> str:
    """RFC 4514 string with friendly labels, e.g. ``CN=mx.example.fr,OU=1\\+123,O=X,C=FR``."""
    return name.rfc4514_string(_OVERRIDES)


def format_time(value: datetime) -> str:
    """``2025-01-01T00:00:00Z``: the one time format used in files and messages."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
