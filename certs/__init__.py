"""IGC-Santé-style PKI for the MSSanté operator: profiles, demo CA, bundles, verification, TLS.

See :mod:`certs.layout` for the CA directory format and :mod:`certs.profiles`
for where identifiers (FINESS, RPPS) sit in certificate subjects.
"""

from __future__ import annotations

from .bundle import load_certificates, load_crls
from .ca import CertificateAuthority, IssuedCertificate, write_pem
from .describe import describe, fingerprint
from .errors import BundleError, CAError, CertsError, ProfileError, TLSConfigError
from .formatting import format_name, format_time
from .hostname import hostname_matches
from .keys import KEY_TYPES, KeyType, PrivateKey, generate_private_key
from .layout import CALayout, serial_hex
from .profiles import (
    KINDS,
    Kind,
    LeafProfile,
    LeafSubject,
    Validity,
    build_intermediate,
    build_leaf,
    build_root,
    profile_for,
)
from .revocation import Revocation
from .tls import ClientAuth, client_context, peer_certificate, server_context
from .verify import Purpose, Reason, VerifyResult, verify_chain

__all__ = [
    "KEY_TYPES",
    "KINDS",
    "BundleError",
    "CAError",
    "CALayout",
    "CertificateAuthority",
    "CertsError",
    "ClientAuth",
    "IssuedCertificate",
    "KeyType",
    "Kind",
    "LeafProfile",
    "LeafSubject",
    "PrivateKey",
    "ProfileError",
    "Purpose",
    "Reason",
    "Revocation",
    "TLSConfigError",
    "Validity",
    "VerifyResult",
    "build_intermediate",
    "build_leaf",
    "build_root",
    "client_context",
    "describe",
    "fingerprint",
    "format_name",
    "format_time",
    "generate_private_key",
    "hostname_matches",
    "load_certificates",
    "load_crls",
    "peer_certificate",
    "profile_for",
    "serial_hex",
    "server_context",
    "verify_chain",
    "write_pem",
]
