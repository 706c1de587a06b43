"""Profile contents: what each kind of certificate says about itself."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs import CertificateAuthority, ProfileError, Validity, profile_for
from certs.profiles import LEAF_DAYS, general_names

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    return str(name.get_attributes_for_oid(oid)[0].value)


def test_root_profile(ca: CertificateAuthority) -> None:
    root = ca.root
    assert root.subject == root.issuer
    bc = ext(root, x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ext(root, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    assert ext(root, x509.SubjectKeyIdentifier).value.digest
    assert attr(root.subject, NameOID.COUNTRY_NAME) == "FR"
    assert attr(root.subject, NameOID.COMMON_NAME).startswith("AC RACINE ")


def test_intermediate_profile(ca: CertificateAuthority) -> None:
    inter = ca.intermediate
    assert inter.issuer == ca.root.subject
    bc = ext(inter, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    assert ext(inter, x509.KeyUsage).value.key_cert_sign
    aki = ext(inter, x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ext(ca.root, x509.SubjectKeyIdentifier).value.digest
    assert "ORGANISATIONS" in attr(inter.subject, NameOID.COMMON_NAME)
    # CAs live longer than the 3-year leaves they issue.
    assert inter.not_valid_after_utc - inter.not_valid_before_utc > timedelta(days=LEAF_DAYS)
    assert inter.not_valid_after_utc <= ca.root.not_valid_after_utc


def test_server_profile(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.issue(
        "server",
        cn="mx.example.fr",
        sans=["smtp.example.fr", "192.0.2.10", "exämple.fr"],
        identifier="1+123456789",
        organization="CH EXEMPLE",
        now=now,
    ).cert
    assert cert.subject.rfc4514_string() == r"CN=mx.example.fr,OU=1\+123456789,O=CH EXEMPLE,C=FR"
    eku = ext(cert, x509.ExtendedKeyUsage).value
    assert list(eku) == [SERVER_AUTH, CLIENT_AUTH]
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    # EC key: keyEncipherment is dropped (RFC 5480), RSA keeps it (see test below).
    assert not ku.value.key_encipherment
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    sans = ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [
        "mx.example.fr",
        "smtp.example.fr",
        "xn--exmple-cua.fr",
    ]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("192.0.2.10")]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    assert cert.serial_number.bit_length() > 64
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=LEAF_DAYS)


def test_server_rsa_keeps_key_encipherment(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.issue("server", cn="rsa.example.fr", key_type="rsa-2048", now=now).cert
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey) and key.key_size == 2048
    ku = ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment


def test_server_ip_literal_cn_becomes_ip_san(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.issue("server", cn="127.0.0.1", now=now).cert
    sans = ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert sans.get_values_for_type(x509.DNSName) == []


def test_application_profile(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.issue(
        "client-app",
        cn="LOGICIEL DPI",
        identifier="1+123456789",
        organization="CH EXEMPLE",
        sans=["dpi@ch-exemple.mssante.fr"],
        now=now,
    ).cert
    assert attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME) == "1+123456789"
    assert attr(cert.subject, NameOID.COMMON_NAME) == "LOGICIEL DPI"
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [CLIENT_AUTH]
    assert ext(cert, x509.KeyUsage).value.digital_signature
    emails = ext(cert, x509.SubjectAlternativeName).value.get_values_for_type(x509.RFC822Name)
    assert emails == ["dpi@ch-exemple.mssante.fr"]


def test_personal_profile(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.issue(
        "client-personal",
        cn="Jeanne Martin",
        given_name="Jeanne",
        surname="Martin",
        identifier="810001234567",
        now=now,
    ).cert
    assert attr(cert.subject, NameOID.SERIAL_NUMBER) == "810001234567"
    assert attr(cert.subject, NameOID.COMMON_NAME) == "Jeanne Martin"
    assert attr(cert.subject, NameOID.GIVEN_NAME) == "Jeanne"
    assert attr(cert.subject, NameOID.SURNAME) == "Martin"
    assert not cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        ext(cert, x509.SubjectAlternativeName)


@pytest.mark.parametrize("kind", ["client-app", "client-personal"])
def test_client_kinds_need_an_identifier(
    ca: CertificateAuthority, now: datetime, kind: str
) -> None:
    with pytest.raises(ProfileError, match="identifier"):
        ca.issue(kind, cn="x", now=now)  # type: ignore[arg-type]


def test_profile_override_changes_eku(ca: CertificateAuthority, now: datetime) -> None:
    profile = profile_for("client-app").with_eku(SERVER_AUTH)
    cert = ca.issue("client-app", cn="x", identifier="1+1", profile=profile, now=now).cert
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [SERVER_AUTH]


def test_explicit_validity_and_days(ca: CertificateAuthority, now: datetime) -> None:
    start = now - timedelta(days=400)
    cert = ca.issue(
        "server", cn="old.example.fr", not_before=start, not_after=now - timedelta(days=1), now=now
    ).cert
    assert cert.not_valid_before_utc == start
    assert cert.not_valid_after_utc == now - timedelta(days=1)
    short = ca.issue("server", cn="short.example.fr", days=30, now=now).cert
    assert short.not_valid_after_utc == now + timedelta(days=30)


def test_validity_rejects_naive_and_inverted(now: datetime) -> None:
    with pytest.raises(ProfileError, match="timezone"):
        Validity(now.replace(tzinfo=None), now)
    with pytest.raises(ProfileError, match="later"):
        Validity(now, now)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("MX.Example.FR.", x509.DNSName("mx.example.fr")),
        ("*.example.fr", x509.DNSName("*.example.fr")),
        ("::1", x509.IPAddress(ipaddress.ip_address("::1"))),
        ("a@Exämple.fr", x509.RFC822Name("a@xn--exmple-cua.fr")),
    ],
)
def test_general_names(value: str, expected: x509.GeneralName) -> None:
    assert general_names([value]) == [expected]


@pytest.mark.parametrize("bad", ["", "a..b", "f*.example.fr", "www.*.example.fr", "@x.fr"])
def test_general_names_rejects(bad: str) -> None:
    with pytest.raises(ProfileError):
        general_names([bad])
