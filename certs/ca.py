"""A demo/test certificate authority kept in a directory (see :mod:`certs.layout`).

Two levels like IGC-Santé: a root that only signs the intermediate, and an
intermediate ("serveurs applicatifs") that signs every leaf. It is meant for
tests, demos and closed pilots: keys are stored unencrypted (mode 0600) and
there is no locking, so run one writer at a time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from mssante.files import atomic_write

from .crl import CRL_DAYS, build_crl, crl_number
from .errors import CAError
from .keys import KeyType, PrivateKey, generate_private_key, load_private_key_pem, private_key_pem
from .layout import CALayout, serial_hex
from .profiles import (
    CA_INTERMEDIATE_DAYS,
    CA_ROOT_DAYS,
    LEAF_DAYS,
    Kind,
    LeafProfile,
    LeafSubject,
    Validity,
    build_intermediate,
    build_leaf,
    build_root,
    ca_subject,
    profile_for,
)
from .revocation import (
    CrlScope,
    Revocation,
    dump_revocations,
    load_revocations,
    parse_reason,
)

__all__ = ["CertificateAuthority", "IssuedCertificate", "write_pem"]

_PRIVATE = 0o600
_PUBLIC = 0o644


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now(now: datetime | None) -> datetime:
    """The outermost-layer clock default; everything below receives ``now`` explicitly."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return now


@dataclass(frozen=True)
class IssuedCertificate:
    """A freshly issued leaf, its private key and the chain to send with it (root excluded)."""

    cert: x509.Certificate
    key: PrivateKey
    chain: tuple[x509.Certificate, ...]

    @property
    def serial_hex(self) -> str:
        return serial_hex(self.cert.serial_number)

    def cert_pem(self) -> bytes:
        """Leaf followed by its intermediates, the order TLS servers send them in."""
        return b"".join(_pem(cert) for cert in (self.cert, *self.chain))

    def key_pem(self) -> bytes:
        return private_key_pem(self.key)


def write_pem(issued: IssuedCertificate, prefix: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``PREFIX.pem`` (leaf + chain) and ``PREFIX.key`` (0600); return both paths.

    The suffix is appended, not substituted, so ``mx.example.fr`` stays intact.
    """
    base = os.fspath(prefix)
    key_path = atomic_write(base + ".key", issued.key_pem(), mode=_PRIVATE)
    cert_path = atomic_write(base + ".pem", issued.cert_pem(), mode=_PUBLIC)
    return cert_path, key_path


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CAError(f"CA file missing: {path}") from None
    except OSError as exc:
        raise CAError(f"cannot read CA file {path}: {exc.strerror or exc}") from exc


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(_read(path))
    except ValueError as exc:
        raise CAError(f"{path}: not a PEM certificate ({exc})") from exc


def _load_key(path: Path, cert: x509.Certificate) -> PrivateKey:
    try:
        key = load_private_key_pem(_read(path))
    except (TypeError, ValueError) as exc:
        raise CAError(f"{path}: not an unencrypted PEM EC/RSA private key ({exc})") from exc
    if key.public_key() != cert.public_key():
        raise CAError(f"{path} does not match the certificate next to it")
    return key


@dataclass(frozen=True)
class CertificateAuthority:
    """A root + intermediate pair stored under ``layout.directory``."""

    layout: CALayout
    root: x509.Certificate
    root_key: PrivateKey
    intermediate: x509.Certificate
    intermediate_key: PrivateKey

    @property
    def directory(self) -> Path:
        return self.layout.directory

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        """Intermediates sent along with leaves (the root is the peers' anchor)."""
        return (self.intermediate,)

    @classmethod
    def create(
        cls,
        directory: str | os.PathLike[str],
        *,
        name: str = "IGC-SANTE DEMO",
        organization: str = "MSSANTE DEMO",
        now: datetime | None = None,
        key_type: KeyType = "ec-p256",
        root_days: int = CA_ROOT_DAYS,
        intermediate_days: int = CA_INTERMEDIATE_DAYS,
    ) -> CertificateAuthority:
        """Create a new CA in ``directory``; refuses to overwrite an existing one."""
        when = _now(now)
        layout = CALayout.at(directory)
        if layout.root_cert.exists() or layout.root_key.exists():
            raise CAError(f"a CA already exists in {layout.directory}")
        try:
            layout.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            layout.issued_dir.mkdir(exist_ok=True)
        except OSError as exc:
            raise CAError(f"cannot create CA directory {layout.directory}: {exc}") from exc
        root_key = generate_private_key(key_type)
        root_validity = Validity.for_days(when, root_days)
        root = build_root(
            root_key,
            subject=ca_subject(f"AC RACINE {name}", unit=name, organization=organization),
            validity=root_validity,
        )
        inter_key = generate_private_key(key_type)
        inter_end = min(when + timedelta(days=intermediate_days), root_validity.not_after)
        intermediate = build_intermediate(
            inter_key.public_key(),
            subject=ca_subject(f"AC {name} ORGANISATIONS", unit=name, organization=organization),
            issuer=root,
            issuer_key=root_key,
            validity=Validity(when, inter_end),
        )
        # Keys first: a crash leaves no certificate whose key is missing.
        atomic_write(layout.root_key, private_key_pem(root_key), mode=_PRIVATE)
        atomic_write(layout.intermediate_key, private_key_pem(inter_key), mode=_PRIVATE)
        atomic_write(layout.intermediate_cert, _pem(intermediate), mode=_PUBLIC)
        atomic_write(layout.revoked, dump_revocations({}), mode=_PUBLIC)
        ca = cls(layout, root, root_key, intermediate, inter_key)
        ca.crl(when)
        ca.root_crl(when)
        # root.pem last: its presence marks a complete CA.
        atomic_write(layout.root_cert, _pem(root), mode=_PUBLIC)
        return ca

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> CertificateAuthority:
        """Load a CA written by :meth:`create`; raises :class:`CAError` with the faulty file."""
        layout = CALayout.at(directory)
        if not layout.directory.is_dir():
            raise CAError(f"CA directory not found: {layout.directory}")
        root = _load_cert(layout.root_cert)
        root_key = _load_key(layout.root_key, root)
        intermediate = _load_cert(layout.intermediate_cert)
        inter_key = _load_key(layout.intermediate_key, intermediate)
        try:
            intermediate.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise CAError(
                f"{layout.intermediate_cert} was not issued by {layout.root_cert}"
            ) from exc
        return cls(layout, root, root_key, intermediate, inter_key)

    def issue(
        self,
        kind: Kind,
        *,
        cn: str,
        sans: Sequence[str] = (),
        identifier: str | None = None,
        organization: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        key_type: KeyType = "ec-p256",
        now: datetime | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        days: int | None = None,
        profile: LeafProfile | None = None,
    ) -> IssuedCertificate:
        """Issue a leaf of ``kind`` and record it under ``issued/``.

        Validity: ``not_before`` defaults to ``now``; ``not_after`` to ``days``
        (default 3 years) later, capped at the intermediate's expiry. An explicit
        ``not_after`` is honoured as given, so tests can mint odd certificates.
        """
        when = _now(now)
        chosen = profile or profile_for(kind)
        if chosen.kind != kind:
            raise CAError(f"profile is for {chosen.kind!r}, not {kind!r}")
        if days is not None and not_after is not None:
            raise CAError("give either days or not_after, not both")
        start = not_before or when
        if not_after is None:
            not_after = min(
                start + timedelta(days=days or LEAF_DAYS), self.intermediate.not_valid_after_utc
            )
        key = generate_private_key(key_type)
        cert = build_leaf(
            chosen,
            key.public_key(),
            subject=LeafSubject(
                cn=cn,
                identifier=identifier,
                organization=organization,
                given_name=given_name,
                surname=surname,
            ),
            sans=sans,
            issuer=self.intermediate,
            issuer_key=self.intermediate_key,
            validity=Validity(start, not_after),
        )
        self.layout.issued_dir.mkdir(exist_ok=True)
        atomic_write(self.layout.issued_cert(cert.serial_number), _pem(cert), mode=_PUBLIC)
        return IssuedCertificate(cert, key, self.chain)

    def write_pem(
        self, issued: IssuedCertificate, prefix: str | os.PathLike[str]
    ) -> tuple[Path, Path]:
        """Same as :func:`write_pem`; kept on the CA for discoverability."""
        return write_pem(issued, prefix)

    def issued_certificate(self, serial: int) -> x509.Certificate | None:
        """The leaf this CA issued with ``serial``, if any."""
        path = self.layout.issued_cert(serial)
        return _load_cert(path) if path.exists() else None

    def revocations(self) -> dict[int, Revocation]:
        return load_revocations(self.layout.revoked)

    def revoke(
        self,
        target: int | x509.Certificate,
        *,
        reason: x509.ReasonFlags | str = x509.ReasonFlags.unspecified,
        now: datetime | None = None,
    ) -> Revocation:
        """Revoke a leaf (listed in ``crl.pem``) or the intermediate (``root-crl.pem``).

        Idempotent: revoking twice keeps the first date and reason.
        """
        when = _now(now)
        flag = parse_reason(reason)
        serial = target if isinstance(target, int) else target.serial_number
        scope = self._scope_of(serial, None if isinstance(target, int) else target)
        entries = self.revocations()
        if serial in entries:
            return entries[serial]
        entry = Revocation(serial, when.replace(microsecond=0), flag, scope)
        entries[serial] = entry
        atomic_write(self.layout.revoked, dump_revocations(entries), mode=_PUBLIC)
        self.crl(when)
        self.root_crl(when)
        return entry

    def _scope_of(self, serial: int, cert: x509.Certificate | None) -> CrlScope:
        if serial == self.root.serial_number and (cert is None or cert == self.root):
            raise CAError("the root cannot be revoked; distrust it and create a new CA")
        inter = self.intermediate
        if serial == inter.serial_number and (cert is None or cert == inter):
            return "root"
        known = self.issued_certificate(serial)
        if known is None or (cert is not None and cert != known):
            raise CAError(f"serial {serial_hex(serial)} was not issued by this CA")
        return "intermediate"

    def crl(self, now: datetime | None = None) -> x509.CertificateRevocationList:
        """Regenerate, write (``crl.pem``) and return the intermediate's CRL at ``now``."""
        return self._publish("intermediate", _now(now))

    def root_crl(self, now: datetime | None = None) -> x509.CertificateRevocationList:
        """Regenerate, write (``root-crl.pem``) and return the root's CRL at ``now``."""
        return self._publish("root", _now(now))

    def _publish(self, scope: CrlScope, now: datetime) -> x509.CertificateRevocationList:
        if scope == "root":
            issuer, key, path = self.root, self.root_key, self.layout.root_crl
        else:
            issuer, key, path = self.intermediate, self.intermediate_key, self.layout.crl
        entries = [e for e in self.revocations().values() if e.crl == scope]
        crl = build_crl(
            issuer, key, entries, now=now, number=self._next_crl_number(path), days=CRL_DAYS
        )
        atomic_write(path, crl.public_bytes(serialization.Encoding.PEM), mode=_PUBLIC)
        return crl

    @staticmethod
    def _next_crl_number(path: Path) -> int:
        """Previous number + 1, so relying parties can tell newer CRLs apart."""
        if not path.exists():
            return 1
        try:
            previous = x509.load_pem_x509_crl(_read(path))
        except ValueError as exc:
            raise CAError(f"{path}: existing CRL is unreadable ({exc})") from exc
        return crl_number(previous) + 1
