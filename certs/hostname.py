"""Hostname matching against subjectAltName (RFC 6125 rules, no CN fallback).

The CN is ignored on purpose: every profile puts the FQDN in the SANs, and
falling back to CN is what browsers and OpenSSL's X509_check_host dropped.
"""

from __future__ import annotations

import ipaddress

from cryptography import x509

__all__ = ["hostname_matches", "normalise_hostname"]


def normalise_hostname(hostname: str) -> str:
    """Lower-case ASCII (IDNA A-label) form without the trailing dot."""
    text = hostname.strip().rstrip(".")
    try:
        return text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return text.lower()


def _dns_matches(pattern: str, host: str) -> bool:
    pattern = normalise_hostname(pattern)
    if pattern == host:
        return True
    p_labels, h_labels = pattern.split("."), host.split(".")
    # Wildcard only as the whole leftmost label, covering exactly one label,
    # and never directly under a public suffix-like single label (``*.fr``).
    if p_labels[0] != "*" or len(p_labels) < 3 or len(p_labels) != len(h_labels):
        return False
    return p_labels[1:] == h_labels[1:] and bool(h_labels[0])


def hostname_matches(cert: x509.Certificate, hostname: str) -> bool:
    """True when ``hostname`` (DNS name or IP literal) is among the certificate's SANs."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        address = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        host = normalise_hostname(hostname)
        return bool(host) and any(
            _dns_matches(p, host) for p in sans.get_values_for_type(x509.DNSName)
        )
    return address in sans.get_values_for_type(x509.IPAddress)
