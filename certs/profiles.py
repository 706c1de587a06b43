"""Certificate profiles modelled on IGC-Santé.

Where identifiers sit in the subject (encoded order C, O, OU…, CN):

* server:          ``CN=<fqdn>, OU=<facility id, e.g. 1+FINESS>, O=<org>, C=FR``
* client-app:      ``CN=<application name>, OU=<facility id>, O=<org>, C=FR``
  (the structure identifier goes in OU, as on IGC-Santé "ORGANISATIONS" certs)
* client-personal: ``CN=<given> <family>, serialNumber=<RPPS id, e.g. 810001234567>,
  SN=<family>, GN=<given>, O=<org>, C=FR`` (serialNumber, 2.5.4.5, identifies the
  *person*; OU stays free for the facility they act for)

Builders never read the clock: callers pass a :class:`Validity`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import ProfileError
from .keys import PrivateKey

__all__ = [
    "CA_INTERMEDIATE_DAYS",
    "CA_ROOT_DAYS",
    "KINDS",
    "LEAF_DAYS",
    "KeyUsageBit",
    "Kind",
    "LeafProfile",
    "LeafSubject",
    "PublicKey",
    "Validity",
    "build_intermediate",
    "build_leaf",
    "build_root",
    "ca_subject",
    "general_names",
    "leaf_subject",
    "profile_for",
]

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
Kind: TypeAlias = Literal["server", "client-app", "client-personal"]
KINDS: tuple[Kind, ...] = get_args(Kind)
KeyUsageBit: TypeAlias = Literal[
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
]

LEAF_DAYS = 3 * 365  # IGC-Santé issues 3-year certificates
CA_INTERMEDIATE_DAYS = 10 * 365
CA_ROOT_DAYS = 20 * 365

# RFC 5480 §3: an EC key cannot encrypt, so these bits must not be asserted for it.
_ENCIPHERMENT_BITS: frozenset[KeyUsageBit] = frozenset({"key_encipherment", "data_encipherment"})


@dataclass(frozen=True)
class Validity:
    """A validity window; explicit so tests can mint expired or future certificates."""

    not_before: datetime
    not_after: datetime

    def __post_init__(self) -> None:
        for field in ("not_before", "not_after"):
            value: datetime = getattr(self, field)
            if value.tzinfo is None:
                raise ProfileError(f"{field} must be timezone-aware (UTC)")
            # X.509 times have one-second resolution; truncate so round trips compare equal.
            object.__setattr__(self, field, value.astimezone(UTC).replace(microsecond=0))
        if self.not_after <= self.not_before:
            raise ProfileError("not_after must be later than not_before")

    @classmethod
    def for_days(cls, now: datetime, days: int) -> Validity:
        """Window starting at ``now`` and lasting ``days`` days."""
        if days <= 0:
            raise ProfileError("days must be positive")
        return cls(now, now + timedelta(days=days))


@dataclass(frozen=True)
class LeafProfile:
    """What a leaf of a given kind may do; ``dataclasses.replace`` it to make odd certs."""

    kind: Kind
    key_usage: frozenset[KeyUsageBit]
    extended_key_usage: tuple[x509.ObjectIdentifier, ...]
    identifier_attribute: x509.ObjectIdentifier
    identifier_required: bool

    def with_eku(self, *oids: x509.ObjectIdentifier) -> LeafProfile:
        """Copy with another EKU list (e.g. a server-only cert for negative tests)."""
        return dataclasses.replace(self, extended_key_usage=tuple(oids))


_PROFILES: dict[Kind, LeafProfile] = {
    # Operators use the same certificate to accept and to open trust-space connections.
    "server": LeafProfile(
        kind="server",
        key_usage=frozenset({"digital_signature", "key_encipherment"}),
        extended_key_usage=(ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
        identifier_attribute=NameOID.ORGANIZATIONAL_UNIT_NAME,
        identifier_required=False,
    ),
    "client-app": LeafProfile(
        kind="client-app",
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        identifier_attribute=NameOID.ORGANIZATIONAL_UNIT_NAME,
        identifier_required=True,
    ),
    "client-personal": LeafProfile(
        kind="client-personal",
        key_usage=frozenset({"digital_signature"}),
        extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
        identifier_attribute=NameOID.SERIAL_NUMBER,
        identifier_required=True,
    ),
}


def profile_for(kind: Kind) -> LeafProfile:
    """The default profile of a leaf kind."""
    try:
        return _PROFILES[kind]
    except KeyError:
        raise ProfileError(f"unknown certificate kind {kind!r}; expected {KINDS}") from None


@dataclass(frozen=True)
class LeafSubject:
    """Subject data of a leaf; see the module docstring for where each field lands."""

    cn: str
    identifier: str | None = None
    organization: str | None = None
    given_name: str | None = None
    surname: str | None = None
    country: str = "FR"


def ca_subject(cn: str, *, unit: str | None = None, organization: str | None = None) -> x509.Name:
    """``CN=<cn>, OU=<unit>, O=<org>, C=FR`` like the IGC-Santé CA names."""
    pairs = (
        (NameOID.COUNTRY_NAME, "FR"),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
        (NameOID.COMMON_NAME, cn),
    )
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs if value])


def leaf_subject(profile: LeafProfile, subject: LeafSubject) -> x509.Name:
    """Build the subject DN of a leaf, placing the identifier per the profile."""
    if not subject.cn:
        raise ProfileError("cn must not be empty")
    if profile.identifier_required and not subject.identifier:
        raise ProfileError(f"a {profile.kind} certificate needs an identifier")
    attrs: list[x509.NameAttribute[str]] = [
        x509.NameAttribute(NameOID.COUNTRY_NAME, subject.country)
    ]
    if subject.organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject.organization))
    if subject.given_name:
        attrs.append(x509.NameAttribute(NameOID.GIVEN_NAME, subject.given_name))
    if subject.surname:
        attrs.append(x509.NameAttribute(NameOID.SURNAME, subject.surname))
    if subject.identifier:
        attrs.append(x509.NameAttribute(profile.identifier_attribute, subject.identifier))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject.cn))
    return x509.Name(attrs)


def general_names(sans: Iterable[str]) -> list[x509.GeneralName]:
    """Turn strings into SAN entries: IP literal → IP, ``a@b`` → email, else DNS (A-label)."""
    names: list[x509.GeneralName] = []
    for value in sans:
        entry = _general_name(value.strip())
        if entry not in names:
            names.append(entry)
    return names


def _general_name(value: str) -> x509.GeneralName:
    if not value:
        raise ProfileError("empty subjectAltName entry")
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        pass
    if "@" in value:
        local, _, domain = value.rpartition("@")
        if not local:
            raise ProfileError(f"invalid e-mail address {value!r}")
        return x509.RFC822Name(f"{local}@{_dns_a_label(domain)}")
    return x509.DNSName(_dns_a_label(value))


def _dns_a_label(value: str) -> str:
    """Lower-case ASCII (IDNA) form; ``*`` is allowed only as the whole leftmost label."""
    labels = value.rstrip(".").split(".")
    if any(not label for label in labels):
        raise ProfileError(f"invalid DNS name {value!r}")
    if any("*" in label for label in labels[1:]) or ("*" in labels[0] and labels[0] != "*"):
        raise ProfileError(f"wildcard only allowed as the whole leftmost label: {value!r}")
    try:
        return ".".join(labels).encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ProfileError(f"invalid DNS name {value!r}: {exc}") from None


def _key_usage(bits: frozenset[KeyUsageBit], public_key: PublicKey) -> x509.KeyUsage:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        bits = bits - _ENCIPHERMENT_BITS
    return x509.KeyUsage(
        digital_signature="digital_signature" in bits,
        content_commitment="content_commitment" in bits,
        key_encipherment="key_encipherment" in bits,
        data_encipherment="data_encipherment" in bits,
        key_agreement="key_agreement" in bits,
        key_cert_sign="key_cert_sign" in bits,
        crl_sign="crl_sign" in bits,
        encipher_only=False,
        decipher_only=False,
    )


_CA_USAGE: frozenset[KeyUsageBit] = frozenset({"key_cert_sign", "crl_sign"})


def _base(
    subject: x509.Name, issuer: x509.Name, public_key: PublicKey, validity: Validity
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())  # 159 random bits
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(_public(issuer))
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _public(cert: x509.Certificate) -> PublicKey:
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ProfileError(f"unsupported issuer key type {type(key).__name__}")
    return key


def build_root(key: PrivateKey, *, subject: x509.Name, validity: Validity) -> x509.Certificate:
    """Self-signed root: CA:true critical, keyCertSign+cRLSign critical, SKI."""
    public_key = key.public_key()
    builder = (
        _base(subject, subject, public_key, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_key_usage(_CA_USAGE, public_key), critical=True)
    )
    return builder.sign(key, hashes.SHA256())


def build_intermediate(
    public_key: PublicKey,
    *,
    subject: x509.Name,
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    validity: Validity,
    path_length: int | None = 0,
) -> x509.Certificate:
    """Issuing CA ("serveurs applicatifs"): pathlen 0 so it can only sign leaves."""
    builder = (
        _base(subject, issuer.subject, public_key, validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_key_usage(_CA_USAGE, public_key), critical=True)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def build_leaf(
    profile: LeafProfile,
    public_key: PublicKey,
    *,
    subject: LeafSubject,
    sans: Sequence[str] = (),
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    validity: Validity,
) -> x509.Certificate:
    """End-entity certificate of ``profile.kind``.

    A server's CN is always copied into the SANs: hostname checks ignore the CN.
    """
    entries = list(sans)
    if profile.kind == "server":
        entries.insert(0, subject.cn)
    names = general_names(entries)
    if profile.kind == "server" and not names:
        raise ProfileError("a server certificate needs at least one DNS or IP name")
    builder = (
        _base(leaf_subject(profile, subject), issuer.subject, public_key, validity)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(profile.key_usage, public_key), critical=True)
        .add_extension(_authority_key_id(issuer), critical=False)
    )
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usage)), critical=False
        )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())
