"""Certificate path validation outside the TLS handshake.

OpenSSL only says "handshake failed"; this verifier rebuilds the path with
the same trust material and names the first problem precisely, so logs and
the ``certs check`` CLI can say *which* certificate is wrong and *why*.

Checks, in this order (the first failure is reported):

1. parse the leaf (MALFORMED) and build leaf → intermediates → anchor by issuer
   name, AKI/SKI when both are present, and signature (UNKNOWN_ISSUER;
   BAD_SIGNATURE only when the AKI names the candidate's key yet the signature
   fails; PATH_TOO_LONG beyond ``MAX_PATH``). Greedy, anchors first, no
   backtracking across cross-certificates;
2. validity of every certificate at ``at``, the anchor included
   (NOT_YET_VALID, EXPIRED);
3. unknown critical extensions (UNHANDLED_CRITICAL_EXTENSION);
4. basicConstraints: leaf not a CA (LEAF_IS_CA), intermediates CA:true, an
   anchor with CA:false refused, pathlen honoured (NOT_A_CA, PATH_TOO_LONG);
5. keyUsage when present: keyCertSign on CAs, digitalSignature on the leaf
   (MISSING_KEY_USAGE; an absent extension means "unrestricted", RFC 5280);
6. EKU: the leaf *must* list serverAuth/clientAuth for the purpose (stricter
   than OpenSSL, which accepts no EKU); a CA with an EKU must allow it too;
7. revocation of every non-anchor certificate against the CRLs of its issuer
   (REVOKED, CRL_INVALID, CRL_MISSING);
8. hostname against DNS/IP SANs when asked (HOSTNAME_MISMATCH).

CRL policy: a CRL whose signature does not verify with the issuer's key is a
failure (CRL_INVALID); CRLs of a namesake CA (AKI pointing at another key)
are skipped. A CRL past its ``next_update`` is *stale*: it is still used and
a warning is added (OpenSSL, unlike us, rejects it in the handshake). A CRL
issued after ``at`` is used too: newer revocation data is better, and it is
what validating at a past instant (e.g. a signature time) needs; an entry
revoked after ``at`` therefore does not fail, it only warns. With no CRL for
an issuer the check fails with CRL_MISSING if ``require_crl`` is set, else
it warns when CRLs were supplied at all (none supplied = no revocation check).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeAlias

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from .describe import describe
from .formatting import format_name, format_time
from .hostname import hostname_matches
from .layout import serial_hex

__all__ = ["MAX_PATH", "Purpose", "Reason", "VerifyResult", "describe", "verify_chain"]

Purpose: TypeAlias = Literal["server", "client"]
MAX_PATH = 8  # certificates in a path, leaf and anchor included

_HANDLED_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)
_EKU = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


class Reason(enum.Enum):
    """Why a verification failed; values are stable strings for logs and JSON."""

    MALFORMED = "malformed"
    UNKNOWN_ISSUER = "unknown_issuer"
    BAD_SIGNATURE = "bad_signature"
    PATH_TOO_LONG = "path_too_long"
    NOT_YET_VALID = "not_yet_valid"
    EXPIRED = "expired"
    UNHANDLED_CRITICAL_EXTENSION = "unhandled_critical_extension"
    NOT_A_CA = "not_a_ca"
    LEAF_IS_CA = "leaf_is_ca"
    MISSING_KEY_USAGE = "missing_key_usage"
    MISSING_EKU_SERVER_AUTH = "missing_eku_server_auth"
    MISSING_EKU_CLIENT_AUTH = "missing_eku_client_auth"
    REVOKED = "revoked"
    CRL_INVALID = "crl_invalid"
    CRL_MISSING = "crl_missing"
    HOSTNAME_MISMATCH = "hostname_mismatch"


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :func:`verify_chain`; ``chain`` is as far as the path got."""

    ok: bool
    reason: Reason | None
    detail: str
    chain: tuple[x509.Certificate, ...]
    warnings: tuple[str, ...] = ()


class _Fail(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _who(cert: x509.Certificate) -> str:
    return f"certificate {format_name(cert.subject)}"


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # cryptography parses extensions lazily
        raise _Fail(Reason.MALFORMED, f"{_who(cert)} has malformed extensions: {exc}") from exc


def _parse_leaf(leaf: x509.Certificate | bytes) -> x509.Certificate:
    if isinstance(leaf, x509.Certificate):
        return leaf
    try:
        if leaf.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(leaf)
        return x509.load_der_x509_certificate(leaf)
    except ValueError as exc:
        raise _Fail(Reason.MALFORMED, f"leaf is not a PEM or DER certificate: {exc}") from exc


def _check_parses(cert: x509.Certificate) -> None:
    """Touch extensions up front: cryptography parses them lazily and may raise later."""
    try:
        _ = cert.extensions
        _ = cert.not_valid_after_utc
    except ValueError as exc:
        raise _Fail(Reason.MALFORMED, f"{_who(cert)} has malformed extensions: {exc}") from exc


def _key_ids(child: x509.Certificate, parent: x509.Certificate) -> bool | None:
    """True/False when child's AKI and parent's SKI both exist and (dis)agree, else None."""
    aki = _ext(child, x509.AuthorityKeyIdentifier)
    ski = _ext(parent, x509.SubjectKeyIdentifier)
    if not isinstance(aki, x509.AuthorityKeyIdentifier) or aki.key_identifier is None:
        return None
    if not isinstance(ski, x509.SubjectKeyIdentifier):
        return None
    return aki.key_identifier == ski.digest


def _find_issuer(
    cert: x509.Certificate,
    candidates: Sequence[tuple[x509.Certificate, bool]],
    used: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, bool] | None:
    """The first candidate that really signed ``cert``.

    BAD_SIGNATURE needs positive evidence (AKI equals the candidate's SKI) that
    the candidate's key was meant; a mere name match that fails to verify is a
    namesake CA, i.e. UNKNOWN_ISSUER.
    """
    named = [
        (c, is_anchor)
        for c, is_anchor in candidates
        if c.subject == cert.issuer and c not in used and _key_ids(cert, c) is not False
    ]
    for candidate, is_anchor in named:
        try:
            cert.verify_directly_issued_by(candidate)
        except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
            continue
        return candidate, is_anchor
    claimed = [c for c, _ in named if _key_ids(cert, c)]
    if claimed:
        raise _Fail(
            Reason.BAD_SIGNATURE,
            f"signature of {_who(cert)} does not verify with the key of "
            f"{format_name(claimed[0].subject)}",
        )
    return None


def _build_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    anchors: Sequence[x509.Certificate],
    chain: list[x509.Certificate],
) -> None:
    """Extend ``chain`` (holding the leaf) up to an anchor, preferring anchors."""
    candidates = [(c, True) for c in anchors] + [(c, False) for c in intermediates]
    current = leaf
    while True:
        found = _find_issuer(current, candidates, chain)
        if found is None:
            if current.issuer == current.subject:
                detail = f"{_who(current)} is self-signed and not a trusted anchor"
            else:
                detail = (
                    f"{_who(current)} was issued by {format_name(current.issuer)}, "
                    "which is neither a trusted anchor nor a known intermediate"
                )
            raise _Fail(Reason.UNKNOWN_ISSUER, detail)
        issuer, is_anchor = found
        chain.append(issuer)
        if is_anchor:
            return
        if len(chain) >= MAX_PATH:
            raise _Fail(Reason.PATH_TOO_LONG, f"no anchor within {MAX_PATH} certificates")
        current = issuer


def _check_dates(chain: Sequence[x509.Certificate], at: datetime) -> None:
    for cert in chain:
        if at < cert.not_valid_before_utc:
            raise _Fail(
                Reason.NOT_YET_VALID,
                f"{_who(cert)} is not valid before {format_time(cert.not_valid_before_utc)}",
            )
        if at > cert.not_valid_after_utc:
            raise _Fail(
                Reason.EXPIRED,
                f"{_who(cert)} expired on {format_time(cert.not_valid_after_utc)}",
            )


def _check_critical(chain: Sequence[x509.Certificate]) -> None:
    for cert in chain:
        for ext in cert.extensions:
            if ext.critical and ext.oid not in _HANDLED_CRITICAL:
                raise _Fail(
                    Reason.UNHANDLED_CRITICAL_EXTENSION,
                    f"{_who(cert)} has a critical extension this verifier does not "
                    f"process ({ext.oid.dotted_string})",
                )


def _check_constraints(chain: Sequence[x509.Certificate]) -> None:
    leaf_bc = _ext(chain[0], x509.BasicConstraints)
    if isinstance(leaf_bc, x509.BasicConstraints) and leaf_bc.ca:
        raise _Fail(Reason.LEAF_IS_CA, f"{_who(chain[0])} is a CA and cannot be used as a leaf")
    last = len(chain) - 1
    for index in range(1, len(chain)):
        cert = chain[index]
        bc = _ext(cert, x509.BasicConstraints)
        is_ca = isinstance(bc, x509.BasicConstraints) and bc.ca
        # A legacy v1 anchor without basicConstraints is tolerated; an explicit CA:false is not.
        if not is_ca and not (index == last and bc is None):
            raise _Fail(Reason.NOT_A_CA, f"{_who(cert)} issues certificates but is not a CA")
        below = sum(1 for c in chain[1:index] if c.subject != c.issuer)
        limit = bc.path_length if isinstance(bc, x509.BasicConstraints) else None
        if limit is not None and below > limit:
            raise _Fail(
                Reason.PATH_TOO_LONG,
                f"{_who(cert)} allows {limit} intermediate(s) below it, found {below}",
            )


def _check_key_usage(chain: Sequence[x509.Certificate]) -> None:
    for index, cert in enumerate(chain):
        ku = _ext(cert, x509.KeyUsage)
        if not isinstance(ku, x509.KeyUsage):
            continue
        if index == 0 and not ku.digital_signature:
            raise _Fail(Reason.MISSING_KEY_USAGE, f"{_who(cert)} lacks keyUsage digitalSignature")
        if index > 0 and not ku.key_cert_sign:
            raise _Fail(Reason.MISSING_KEY_USAGE, f"{_who(cert)} lacks keyUsage keyCertSign")


def _check_eku(chain: Sequence[x509.Certificate], purpose: Purpose) -> None:
    wanted = _EKU[purpose]
    reason = (
        Reason.MISSING_EKU_SERVER_AUTH if purpose == "server" else Reason.MISSING_EKU_CLIENT_AUTH
    )
    label = "serverAuth" if purpose == "server" else "clientAuth"
    for index, cert in enumerate(chain):
        eku = _ext(cert, x509.ExtendedKeyUsage)
        if eku is None and index > 0:
            continue
        allowed = isinstance(eku, x509.ExtendedKeyUsage) and (
            wanted in eku or (index > 0 and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in eku)
        )
        if not allowed:
            raise _Fail(reason, f"{_who(cert)} lacks extendedKeyUsage {label}")


def _issuer_key(cert: x509.Certificate) -> CertificateIssuerPublicKeyTypes | None:
    key = cert.public_key()
    issuer_types = (
        rsa.RSAPublicKey,
        ec.EllipticCurvePublicKey,
        dsa.DSAPublicKey,
        ed25519.Ed25519PublicKey,
        ed448.Ed448PublicKey,
    )
    return key if isinstance(key, issuer_types) else None


def _crl_signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    key = _issuer_key(issuer)
    try:
        return key is not None and crl.is_signature_valid(key)
    except (UnsupportedAlgorithm, ValueError, TypeError):
        return False


def _crls_for(
    issuer: x509.Certificate, crls: Sequence[x509.CertificateRevocationList]
) -> list[x509.CertificateRevocationList]:
    """CRLs naming ``issuer`` whose AKI (if any) points at its key."""
    ski = _ext(issuer, x509.SubjectKeyIdentifier)
    matching = []
    for crl in crls:
        if crl.issuer != issuer.subject:
            continue
        try:
            aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        except x509.ExtensionNotFound:
            aki = None
        except ValueError as exc:
            raise _Fail(Reason.CRL_INVALID, f"CRL of {format_name(crl.issuer)}: {exc}") from exc
        if (
            aki is not None
            and aki.key_identifier is not None
            and isinstance(ski, x509.SubjectKeyIdentifier)
            and aki.key_identifier != ski.digest
        ):
            continue
        matching.append(crl)
    return matching


def _check_revocation(
    chain: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    at: datetime,
    require_crl: bool,
    warnings: list[str],
) -> None:
    for index in range(len(chain) - 1):
        cert, issuer = chain[index], chain[index + 1]
        issuer_name = format_name(issuer.subject)
        usable = []
        for crl in _crls_for(issuer, crls):
            if not _crl_signed_by(crl, issuer):
                raise _Fail(Reason.CRL_INVALID, f"CRL of {issuer_name} has an invalid signature")
            next_update = crl.next_update_utc
            if next_update is None or next_update < at:
                when = format_time(next_update) if next_update else "never"
                warnings.append(f"CRL of {issuer_name} is stale (next update was due {when})")
            usable.append(crl)
        if not usable:
            if require_crl:
                raise _Fail(Reason.CRL_MISSING, f"no CRL for issuer {issuer_name}")
            if crls:
                warnings.append(f"no CRL for issuer {issuer_name}; revocation not checked")
            continue
        for crl in usable:
            entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
            if entry is None:
                continue
            revoked_at = entry.revocation_date_utc
            if revoked_at > at:
                warnings.append(
                    f"{_who(cert)} is revoked from {format_time(revoked_at)}, after the "
                    "validation time"
                )
                continue
            try:
                reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
                why = reason.value
            except (x509.ExtensionNotFound, ValueError):
                why = "unspecified"
            raise _Fail(
                Reason.REVOKED,
                f"{_who(cert)} (serial {serial_hex(cert.serial_number)}) was revoked on "
                f"{format_time(revoked_at)} ({why})",
            )


def _check_hostname(leaf: x509.Certificate, hostname: str) -> None:
    if hostname_matches(leaf, hostname):
        return
    san = _ext(leaf, x509.SubjectAlternativeName)
    names = (
        ", ".join(str(getattr(n, "value", n)) for n in san)
        if isinstance(san, x509.SubjectAlternativeName)
        else "none"
    )
    raise _Fail(
        Reason.HOSTNAME_MISMATCH,
        f"{_who(leaf)} does not match hostname {hostname!r} (SANs: {names})",
    )


def verify_chain(
    leaf: x509.Certificate | bytes,
    *,
    intermediates: Iterable[x509.Certificate] = (),
    anchors: Iterable[x509.Certificate],
    crls: Iterable[x509.CertificateRevocationList] = (),
    at: datetime,
    purpose: Purpose,
    hostname: str | None = None,
    require_crl: bool = False,
) -> VerifyResult:
    """Validate ``leaf`` for ``purpose`` at instant ``at``; never raises for bad input certs."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware (UTC)")
    if purpose not in _EKU:
        raise ValueError(f"purpose must be 'server' or 'client', not {purpose!r}")
    chain: list[x509.Certificate] = []
    warnings: list[str] = []
    try:
        cert = _parse_leaf(leaf)
        chain.append(cert)
        _check_parses(cert)
        _build_path(cert, tuple(intermediates), tuple(anchors), chain)
        for member in chain[1:]:
            _check_parses(member)
        _check_dates(chain, at)
        _check_critical(chain)
        _check_constraints(chain)
        _check_key_usage(chain)
        _check_eku(chain, purpose)
        _check_revocation(chain, tuple(crls), at, require_crl, warnings)
        if hostname is not None:
            _check_hostname(cert, hostname)
    except _Fail as failure:
        return VerifyResult(False, failure.reason, failure.detail, tuple(chain), tuple(warnings))
    subject = format_name(chain[0].subject)
    return VerifyResult(
        True, None, f"certificate {subject} is valid", tuple(chain), tuple(warnings)
    )
