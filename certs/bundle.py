"""Loading trust anchors and CRLs from the formats operators actually receive.

IGC-Santé publishes its chains as PEM bundles and as PKCS#7 ``.p7b`` files
(PEM or DER); CRLs come as DER from the distribution points or as PEM
concatenations. Everything that fails to parse becomes a :class:`BundleError`
naming the file, because a cryptic ASN.1 error at start-up is useless.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import pkcs7

from .errors import BundleError

__all__ = ["Source", "load_certificates", "load_crls"]

Source: TypeAlias = str | os.PathLike[str] | bytes

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)
_CERT_LABELS = {b"CERTIFICATE", b"X509 CERTIFICATE"}
_PKCS7_LABELS = {b"PKCS7", b"PKCS #7 SIGNED DATA", b"CMS"}
_CRL_LABELS = {b"X509 CRL"}

_EXPECTED_CERTS = (
    "expected PEM certificates, a DER certificate, or a PKCS#7 (.p7b) bundle in PEM or DER form"
)
_EXPECTED_CRLS = "expected one or more PEM CRLs (X509 CRL) or a DER CRL"


def _read(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, bytes):
        return source, name or "<bytes>"
    path = Path(source)
    label = name or str(path)
    try:
        return path.read_bytes(), label
    except OSError as exc:
        raise BundleError(f"{label}: cannot read file: {exc.strerror or exc}") from exc


def _pem_blocks(data: bytes, label: str) -> list[tuple[bytes, bytes]]:
    blocks: list[tuple[bytes, bytes]] = []
    for match in _PEM_BLOCK.finditer(data):
        body = re.sub(rb"\s+", b"", match.group(2))
        if b":" in match.group(2):  # RFC 1421 headers (encrypted PEM): never for certs
            raise BundleError(f"{label}: PEM block {match.group(1).decode()} has headers")
        try:
            blocks.append((match.group(1), base64.b64decode(body, validate=True)))
        except binascii.Error as exc:
            raise BundleError(f"{label}: bad base64 in a PEM block: {exc}") from exc
    return blocks


def _dedupe(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    unique: list[x509.Certificate] = []
    for cert in certs:
        if cert not in unique:
            unique.append(cert)
    return tuple(unique)


def _der_pkcs7(der: bytes, label: str) -> list[x509.Certificate]:
    certs = pkcs7.load_der_pkcs7_certificates(der)
    if not certs:
        raise BundleError(f"{label}: PKCS#7 bundle contains no certificates")
    return certs


def load_certificates(source: Source, *, name: str | None = None) -> tuple[x509.Certificate, ...]:
    """All certificates in a path or bytes, in file order, duplicates removed.

    PEM files may mix CERTIFICATE and PKCS7 blocks; other blocks (keys,
    CRLs) are ignored. ``name`` labels bytes input in error messages.
    """
    data, label = _read(source, name)
    if b"-----BEGIN " in data:
        certs: list[x509.Certificate] = []
        for kind, der in _pem_blocks(data, label):
            try:
                if kind in _CERT_LABELS:
                    certs.append(x509.load_der_x509_certificate(der))
                elif kind in _PKCS7_LABELS:
                    certs.extend(_der_pkcs7(der, label))
            except (ValueError, UnsupportedAlgorithm) as exc:
                raise BundleError(f"{label}: invalid {kind.decode()} PEM block: {exc}") from exc
        if not certs:
            raise BundleError(f"{label}: no certificate found; {_EXPECTED_CERTS}")
        return _dedupe(certs)
    try:
        return (x509.load_der_x509_certificate(data),)
    except ValueError:
        pass
    try:
        return _dedupe(_der_pkcs7(data, label))
    except (ValueError, UnsupportedAlgorithm):  # e.g. PKCS#7 that is not signed-data
        pass
    raise BundleError(f"{label}: not a certificate bundle; {_EXPECTED_CERTS}")


def load_crls(
    source: Source, *, name: str | None = None
) -> tuple[x509.CertificateRevocationList, ...]:
    """All CRLs in a path or bytes: one DER CRL or any number of PEM ones."""
    data, label = _read(source, name)
    if b"-----BEGIN " in data:
        crls: list[x509.CertificateRevocationList] = []
        for kind, der in _pem_blocks(data, label):
            if kind not in _CRL_LABELS:
                continue
            try:
                crls.append(x509.load_der_x509_crl(der))
            except ValueError as exc:
                raise BundleError(f"{label}: invalid X509 CRL PEM block: {exc}") from exc
        if not crls:
            raise BundleError(f"{label}: no CRL found; {_EXPECTED_CRLS}")
        return tuple(crls)
    try:
        return (x509.load_der_x509_crl(data),)
    except ValueError:
        raise BundleError(f"{label}: not a CRL; {_EXPECTED_CRLS}") from None
