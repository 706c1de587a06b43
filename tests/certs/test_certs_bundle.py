"""Trust bundle and CRL loading: PEM bundles, DER, PKCS#7 (.p7b) written by openssl."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from certs import BundleError, CertificateAuthority, load_certificates, load_crls

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@pytest.fixture(scope="module")
def certs_in_bundle(ca: CertificateAuthority, now: datetime) -> list[x509.Certificate]:
    leaf = ca.issue("server", cn="bundle.example.fr", now=now).cert
    return [ca.root, ca.intermediate, leaf]


@pytest.fixture
def pem_bundle(tmp_path: Path, certs_in_bundle: list[x509.Certificate]) -> Path:
    path = tmp_path / "bundle.pem"
    # Comments between blocks, as in real distribution bundles.
    path.write_bytes(
        b"".join(b"# subject\n" + c.public_bytes(Encoding.PEM) for c in certs_in_bundle)
    )
    return path


def test_multi_cert_pem_bundle(pem_bundle: Path, certs_in_bundle: list[x509.Certificate]) -> None:
    assert list(load_certificates(pem_bundle)) == certs_in_bundle
    assert list(load_certificates(str(pem_bundle))) == certs_in_bundle
    assert list(load_certificates(pem_bundle.read_bytes())) == certs_in_bundle


def test_duplicates_are_dropped(ca: CertificateAuthority) -> None:
    pem = ca.root.public_bytes(Encoding.PEM)
    assert load_certificates(pem + pem) == (ca.root,)


def test_single_der_certificate(ca: CertificateAuthority, tmp_path: Path) -> None:
    path = tmp_path / "root.cer"
    path.write_bytes(ca.root.public_bytes(Encoding.DER))
    assert load_certificates(path) == (ca.root,)


@needs_openssl
@pytest.mark.parametrize("outform", ["PEM", "DER"])
def test_p7b_from_openssl(
    outform: str, pem_bundle: Path, tmp_path: Path, certs_in_bundle: list[x509.Certificate]
) -> None:
    out = tmp_path / f"bundle-{outform}.p7b"
    subprocess.run(
        [
            "openssl",
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            str(pem_bundle),
            "-outform",
            outform,
            "-out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    if outform == "PEM":
        assert out.read_bytes().startswith(b"-----BEGIN PKCS7-----")
    loaded = load_certificates(out)
    assert sorted(c.serial_number for c in loaded) == sorted(
        c.serial_number for c in certs_in_bundle
    )
    assert set(loaded) == set(certs_in_bundle)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello world",
        b"\x30\x03\x02\x01\x01",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_garbage_gives_bundle_error(garbage: bytes, tmp_path: Path) -> None:
    path = tmp_path / "anchors.pem"
    path.write_bytes(garbage)
    with pytest.raises(BundleError, match=r"anchors\.pem: .*(expected|invalid)"):
        load_certificates(path)


def test_pem_without_certificates(ca: CertificateAuthority, tmp_path: Path) -> None:
    path = tmp_path / "crl-only.pem"
    path.write_bytes(ca.layout.crl.read_bytes())
    with pytest.raises(BundleError, match="no certificate found"):
        load_certificates(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"missing\.pem: cannot read file"):
        load_certificates(tmp_path / "missing.pem")


def test_bad_base64(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bad base64"):
        load_certificates(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")


def test_crls_pem_many_and_der(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime, tmp_path: Path
) -> None:
    first, second = ca.crl(now), other_ca.root_crl(now)
    many = tmp_path / "many.pem"
    many.write_bytes(first.public_bytes(Encoding.PEM) + second.public_bytes(Encoding.PEM))
    assert load_crls(many) == (first, second)
    der = tmp_path / "one.crl"
    der.write_bytes(first.public_bytes(Encoding.DER))
    assert load_crls(der) == (first,)


def test_crl_garbage(tmp_path: Path, ca: CertificateAuthority) -> None:
    path = tmp_path / "bad.crl"
    path.write_bytes(b"\x00\x01garbage")
    with pytest.raises(BundleError, match=r"bad\.crl: not a CRL"):
        load_crls(path)
    with pytest.raises(BundleError, match="<bytes>: no CRL found"):
        load_crls(ca.root.public_bytes(Encoding.PEM))


@needs_openssl
def test_p7b_without_certificates(ca: CertificateAuthority, tmp_path: Path) -> None:
    out = tmp_path / "crl-only.p7b"
    subprocess.run(
        ["openssl", "crl2pkcs7", "-in", str(ca.layout.crl), "-outform", "DER", "-out", str(out)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(BundleError, match=r"crl-only\.p7b: .*(no certificates|expected)"):
        load_certificates(out)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_bundle_error(data: bytes) -> None:
    for loader in (load_certificates, load_crls):
        with contextlib.suppress(BundleError):
            loader(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_random_pem_bodies_only_ever_raise_bundle_error(body: bytes) -> None:
    for label in (b"CERTIFICATE", b"PKCS7", b"X509 CRL"):
        wrapped = b"-----BEGIN " + label + b"-----\n" + body + b"\n-----END " + label + b"-----\n"
        for loader in (load_certificates, load_crls):
            with contextlib.suppress(BundleError):
                loader(wrapped)
