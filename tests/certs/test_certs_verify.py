"""verify_chain: one test per Reason, plus warnings (stale CRL…) and describe()."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from certs import (
    CertificateAuthority,
    LeafSubject,
    Reason,
    Validity,
    VerifyResult,
    build_intermediate,
    build_leaf,
    build_root,
    describe,
    generate_private_key,
    profile_for,
    verify_chain,
)
from certs.crl import build_crl
from certs.profiles import ca_subject


def check(
    ca: CertificateAuthority,
    leaf: x509.Certificate | bytes,
    at: datetime,
    *,
    purpose: str = "server",
    intermediates: tuple[x509.Certificate, ...] | None = None,
    **kwargs: object,
) -> VerifyResult:
    return verify_chain(
        leaf,
        intermediates=ca.chain if intermediates is None else intermediates,
        anchors=[ca.root],
        at=at,
        purpose=purpose,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def server(ca: CertificateAuthority, now: datetime) -> x509.Certificate:
    return ca.issue(
        "server", cn="mx.example.fr", sans=["*.mail.example.fr", "192.0.2.7"], now=now
    ).cert


# covers: TS-1
def test_valid_server_chain(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    result = check(ca, server, now, hostname="MX.example.FR.", crls=[ca.crl(now), ca.root_crl(now)])
    assert result.ok and result.reason is None
    assert result.chain == (server, ca.intermediate, ca.root)
    assert result.warnings == ()
    assert "is valid" in result.detail


def test_leaf_as_pem_bytes_and_both_purposes(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    pem = server.public_bytes(Encoding.PEM)
    assert check(ca, pem, now).ok
    assert check(ca, server.public_bytes(Encoding.DER), now, purpose="client").ok


def test_malformed_leaf(ca: CertificateAuthority, now: datetime) -> None:
    result = check(ca, b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----", now)
    assert result.reason is Reason.MALFORMED and not result.ok and result.chain == ()


# covers: TS-1
def test_expired_and_not_yet_valid(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    later = server.not_valid_after_utc + timedelta(seconds=1)
    result = check(ca, server, later)
    assert result.reason is Reason.EXPIRED
    expiry = server.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result.detail == f"certificate CN=mx.example.fr,C=FR expired on {expiry}"
    result = check(ca, server, now - timedelta(seconds=1))
    assert result.reason is Reason.NOT_YET_VALID
    assert "CN=mx.example.fr" in result.detail


def test_expired_intermediate_is_named(tmp_path: Path, now: datetime) -> None:
    short = CertificateAuthority.create(
        tmp_path / "short",
        intermediate_days=1,
        now=now,
    )
    leaf = short.issue("server", cn="a.example.fr", not_after=now + timedelta(days=5), now=now)
    result = check(short, leaf.cert, now + timedelta(days=2))
    assert result.reason is Reason.EXPIRED
    assert "ORGANISATIONS" in result.detail


# covers: TS-1
def test_unknown_issuer_wrong_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    foreign = other_ca.issue("client-app", cn="app", identifier="1+1", now=now).cert
    # Same CA names, different keys: AKI/SKI keep them apart.
    assert foreign.issuer == ca.intermediate.subject
    result = check(ca, foreign, now, purpose="client")
    assert result.reason is Reason.UNKNOWN_ISSUER
    assert result.chain == (foreign,)


def test_unknown_issuer_missing_intermediate(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    result = check(ca, server, now, intermediates=())
    assert result.reason is Reason.UNKNOWN_ISSUER
    assert "neither a trusted anchor nor a known intermediate" in result.detail


def test_self_signed_leaf(
    other_ca: CertificateAuthority, ca: CertificateAuthority, now: datetime
) -> None:
    result = check(ca, other_ca.root, now)
    assert result.reason is Reason.UNKNOWN_ISSUER and "self-signed" in result.detail


def test_bad_signature(ca: CertificateAuthority, now: datetime) -> None:
    forged = build_leaf(
        profile_for("server"),
        generate_private_key().public_key(),
        subject=LeafSubject(cn="evil.example.fr"),
        issuer=ca.intermediate,  # names and AKI claim the real intermediate…
        issuer_key=generate_private_key(),  # …but another key signs
        validity=Validity.for_days(now, 10),
    )
    result = check(ca, forged, now)
    assert result.reason is Reason.BAD_SIGNATURE
    assert "CN=evil.example.fr" in result.detail


def test_leaf_is_ca(ca: CertificateAuthority, now: datetime) -> None:
    result = check(ca, ca.intermediate, now, intermediates=())
    assert result.reason is Reason.LEAF_IS_CA


def test_not_a_ca(ca: CertificateAuthority, now: datetime) -> None:
    issuing_leaf = ca.issue("server", cn="leaf.example.fr", now=now)
    grandchild = build_leaf(
        profile_for("server"),
        generate_private_key().public_key(),
        subject=LeafSubject(cn="child.example.fr"),
        issuer=issuing_leaf.cert,
        issuer_key=issuing_leaf.key,
        validity=Validity.for_days(now, 10),
    )
    result = check(ca, grandchild, now, intermediates=(issuing_leaf.cert, ca.intermediate))
    assert result.reason is Reason.NOT_A_CA
    assert "CN=leaf.example.fr" in result.detail


def test_path_too_long(ca: CertificateAuthority, now: datetime) -> None:
    sub_key = generate_private_key()
    sub = build_intermediate(
        sub_key.public_key(),
        subject=ca_subject("AC SOUS-ORDONNEE"),
        issuer=ca.intermediate,
        issuer_key=ca.intermediate_key,
        validity=Validity.for_days(now, 100),
    )
    leaf = build_leaf(
        profile_for("server"),
        generate_private_key().public_key(),
        subject=LeafSubject(cn="deep.example.fr"),
        issuer=sub,
        issuer_key=sub_key,
        validity=Validity.for_days(now, 10),
    )
    result = check(ca, leaf, now, intermediates=(sub, ca.intermediate))
    assert result.reason is Reason.PATH_TOO_LONG
    assert "ORGANISATIONS" in result.detail  # the pathlen-0 CA is the one blamed


def test_missing_key_usage_on_leaf(ca: CertificateAuthority, now: datetime) -> None:
    profile = dataclasses.replace(profile_for("server"), key_usage=frozenset({"key_agreement"}))
    cert = ca.issue("server", cn="ku.example.fr", profile=profile, now=now).cert
    result = check(ca, cert, now)
    assert result.reason is Reason.MISSING_KEY_USAGE and "digitalSignature" in result.detail


def test_missing_key_cert_sign_on_ca(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    no_sign = (
        x509.CertificateBuilder()
        .subject_name(ca_subject("AC SANS KEYCERTSIGN"))
        .issuer_name(ca.root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, True, False, False),
            critical=True,
        )
        .sign(ca.root_key, hashes.SHA256())
    )
    leaf = build_leaf(
        profile_for("server"),
        generate_private_key().public_key(),
        subject=LeafSubject(cn="x.example.fr"),
        issuer=no_sign,
        issuer_key=key,
        validity=Validity.for_days(now, 10),
    )
    result = check(ca, leaf, now, intermediates=(no_sign,))
    assert result.reason is Reason.MISSING_KEY_USAGE and "keyCertSign" in result.detail


def test_missing_eku(ca: CertificateAuthority, now: datetime) -> None:
    server_only = profile_for("client-app").with_eku(ExtendedKeyUsageOID.SERVER_AUTH)
    cert = ca.issue("client-app", cn="app", identifier="1+1", profile=server_only, now=now).cert
    assert check(ca, cert, now, purpose="client").reason is Reason.MISSING_EKU_CLIENT_AUTH
    app = ca.issue("client-app", cn="app", identifier="1+1", now=now).cert
    assert check(ca, app, now, purpose="server").reason is Reason.MISSING_EKU_SERVER_AUTH
    no_eku = profile_for("client-app").with_eku()
    bare = ca.issue("client-app", cn="app", identifier="1+1", profile=no_eku, now=now).cert
    assert check(ca, bare, now, purpose="client").reason is Reason.MISSING_EKU_CLIENT_AUTH


def test_unhandled_critical_extension(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name.from_rfc4514_string("CN=odd.example.fr"))
        .issuer_name(ca.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            critical=True,
        )
        .sign(ca.intermediate_key, hashes.SHA256())
    )
    result = check(ca, cert, now)
    assert result.reason is Reason.UNHANDLED_CRITICAL_EXTENSION
    assert "1.3.6.1.4.1.99999.1" in result.detail


# covers: TS-1
def test_revoked(tmp_path: Path, now: datetime) -> None:
    start = now - timedelta(days=10)
    fresh_ca = CertificateAuthority.create(tmp_path / "ca", now=start)
    cert = fresh_ca.issue("client-app", cn="app", identifier="1+1", not_before=start, now=now).cert
    fresh_ca.revoke(cert, reason="keyCompromise", now=now - timedelta(days=1))
    crls = [fresh_ca.crl(now), fresh_ca.root_crl(now)]
    result = check(fresh_ca, cert, now, purpose="client", crls=crls)
    assert result.reason is Reason.REVOKED
    assert "keyCompromise" in result.detail and "CN=app" in result.detail
    # Validating at an instant before the revocation (e.g. a signature time) with
    # the newer CRL: the certificate was still good then, with a warning.
    earlier = check(fresh_ca, cert, now - timedelta(days=2), purpose="client", crls=crls)
    assert earlier.ok
    assert any("after the validation time" in w for w in earlier.warnings)


def test_revoked_intermediate(fresh_ca: CertificateAuthority, now: datetime) -> None:
    cert = fresh_ca.issue("server", cn="a.example.fr", now=now).cert
    fresh_ca.revoke(fresh_ca.intermediate, reason="cACompromise", now=now)
    result = check(
        fresh_ca, cert, now + timedelta(1), crls=[fresh_ca.crl(now), fresh_ca.root_crl(now)]
    )
    assert result.reason is Reason.REVOKED and "ORGANISATIONS" in result.detail


def test_crl_missing(ca: CertificateAuthority, server: x509.Certificate, now: datetime) -> None:
    result = check(ca, server, now, require_crl=True)
    assert result.reason is Reason.CRL_MISSING
    # The intermediate needs the root's CRL too.
    result = check(ca, server, now, require_crl=True, crls=[ca.crl(now)])
    assert result.reason is Reason.CRL_MISSING and "AC RACINE" in result.detail
    assert check(ca, server, now, require_crl=True, crls=[ca.crl(now), ca.root_crl(now)]).ok


def test_no_crl_for_issuer_is_a_warning(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    result = check(ca, server, now, crls=[ca.crl(now)])
    assert result.ok
    assert any("revocation not checked" in w and "AC RACINE" in w for w in result.warnings)


def test_crl_invalid(ca: CertificateAuthority, server: x509.Certificate, now: datetime) -> None:
    forged = build_crl(ca.intermediate, generate_private_key(), [], now=now, number=1)
    result = check(ca, server, now, crls=[forged])
    assert result.reason is Reason.CRL_INVALID and "invalid signature" in result.detail


def test_crl_of_namesake_ca_is_ignored(
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    server: x509.Certificate,
    now: datetime,
) -> None:
    result = check(ca, server, now, crls=[other_ca.crl(now)], require_crl=True)
    assert result.reason is Reason.CRL_MISSING


def test_stale_crl_is_used_with_warning(fresh_ca: CertificateAuthority, now: datetime) -> None:
    cert = fresh_ca.issue(
        "server", cn="a.example.fr", not_before=now - timedelta(days=60), now=now
    ).cert
    old = now - timedelta(days=30)
    stale = fresh_ca.crl(old)
    result = check(fresh_ca, cert, now, crls=[stale, fresh_ca.root_crl(now)])
    assert result.ok
    assert len(result.warnings) == 1 and "stale" in result.warnings[0]
    # …and still used: a revocation listed in a stale CRL is honoured.
    fresh_ca.revoke(cert, now=old)
    stale_revoking = fresh_ca.crl(old)
    result = check(fresh_ca, cert, now, crls=[stale_revoking, fresh_ca.root_crl(now)])
    assert result.reason is Reason.REVOKED
    assert any("stale" in w for w in result.warnings)


def test_crl_newer_than_validation_time_is_used(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    newer = build_crl(
        ca.intermediate, ca.intermediate_key, [], now=now + timedelta(days=1), number=99
    )
    result = check(ca, server, now, crls=[newer, ca.root_crl(now)], require_crl=True)
    assert result.ok and result.warnings == ()


@pytest.mark.parametrize(
    ("hostname", "ok"),
    [
        ("mx.example.fr", True),
        ("Mx.Example.Fr.", True),
        ("smtp.mail.example.fr", True),
        ("mail.example.fr", False),  # wildcard needs one label
        ("a.b.mail.example.fr", False),  # …exactly one
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("example.fr", False),
        ("other.example.fr", False),
    ],
)
def test_hostname(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime, hostname: str, ok: bool
) -> None:
    result = check(ca, server, now, hostname=hostname)
    assert result.ok is ok
    if not ok:
        assert result.reason is Reason.HOSTNAME_MISMATCH
        assert hostname in result.detail and "mx.example.fr" in result.detail


def test_hostname_idna(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.issue("server", cn="mx.hôpital.fr", now=now).cert
    assert check(ca, cert, now, hostname="MX.HÔPITAL.FR").ok
    assert check(ca, cert, now, hostname="mx.xn--hpital-ixa.fr").ok


def test_expired_anchor(now: datetime) -> None:
    root_key, inter_key = generate_private_key(), generate_private_key()
    root = build_root(
        root_key, subject=ca_subject("AC RACINE COURTE"), validity=Validity.for_days(now, 2)
    )
    inter = build_intermediate(
        inter_key.public_key(),
        subject=ca_subject("AC LONGUE"),
        issuer=root,
        issuer_key=root_key,
        validity=Validity.for_days(now, 30),
    )
    leaf = build_leaf(
        profile_for("server"),
        generate_private_key().public_key(),
        subject=LeafSubject(cn="a.example.fr"),
        issuer=inter,
        issuer_key=inter_key,
        validity=Validity.for_days(now, 30),
    )
    result = verify_chain(
        leaf, intermediates=[inter], anchors=[root], at=now + timedelta(3), purpose="server"
    )
    assert result.reason is Reason.EXPIRED and "AC RACINE COURTE" in result.detail


def test_rejects_naive_time(
    ca: CertificateAuthority, server: x509.Certificate, now: datetime
) -> None:
    with pytest.raises(ValueError, match="timezone"):
        check(ca, server, now.replace(tzinfo=None))


def test_describe(server: x509.Certificate) -> None:
    text = describe(server)
    assert "subject:    CN=mx.example.fr,C=FR" in text
    assert "issuer:     CN=AC IGC-SANTE DEMO ORGANISATIONS" in text
    assert f"{server.serial_number:X}" in text
    assert "*.mail.example.fr" in text
    fp = server.fingerprint(hashes.SHA256()).hex(":").upper()
    assert f"SHA-256:    {fp}" in text


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=400))
def test_random_leaf_bytes_are_malformed_not_exceptions(
    ca: CertificateAuthority, now: datetime, data: bytes
) -> None:
    for leaf in (data, b"-----BEGIN CERTIFICATE-----\n" + data):
        result = check(ca, leaf, now)
        assert not result.ok and result.reason is Reason.MALFORMED
