"""CA directory round trips: create, load, issue, revoke, CRLs, file modes, atomicity."""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs import CAError, CALayout, CertificateAuthority, serial_hex, write_pem


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.name.endswith(".tmp")]


# covers: TS-1
def test_create_writes_the_documented_layout(fresh_ca: CertificateAuthority) -> None:
    layout = fresh_ca.layout
    for path in (
        layout.root_cert,
        layout.root_key,
        layout.intermediate_cert,
        layout.intermediate_key,
        layout.revoked,
        layout.crl,
        layout.root_crl,
    ):
        assert path.is_file(), path
    assert layout.issued_dir.is_dir()
    assert mode(layout.root_key) == 0o600
    assert mode(layout.intermediate_key) == 0o600
    # PKCS#8 PEM, unencrypted, matching the root certificate's public key.
    root_key = serialization.load_pem_private_key(layout.root_key.read_bytes(), password=None)
    root_cert = x509.load_pem_x509_certificate(layout.root_cert.read_bytes())
    assert root_key.public_key() == root_cert.public_key()
    assert json.loads(layout.revoked.read_text()) == {}
    assert list(x509.load_pem_x509_crl(layout.crl.read_bytes())) == []
    assert leftovers(layout.directory) == []


def test_create_refuses_to_overwrite(fresh_ca: CertificateAuthority, now: datetime) -> None:
    with pytest.raises(CAError, match="already exists"):
        CertificateAuthority.create(fresh_ca.directory, now=now)


def test_load_round_trip(fresh_ca: CertificateAuthority, now: datetime) -> None:
    issued = fresh_ca.issue("server", cn="mx.example.fr", now=now)
    loaded = CertificateAuthority.load(fresh_ca.directory)
    assert loaded.root == fresh_ca.root
    assert loaded.intermediate == fresh_ca.intermediate
    assert loaded.issued_certificate(issued.cert.serial_number) == issued.cert
    again = loaded.issue("client-app", cn="app", identifier="1+1", now=now)
    again.cert.verify_directly_issued_by(fresh_ca.intermediate)


def test_load_reports_missing_file(fresh_ca: CertificateAuthority) -> None:
    fresh_ca.layout.intermediate_key.unlink()
    with pytest.raises(CAError, match=r"missing: .*intermediate\.key"):
        CertificateAuthority.load(fresh_ca.directory)


def test_load_reports_garbage_and_mismatched_keys(
    fresh_ca: CertificateAuthority, other_ca: CertificateAuthority
) -> None:
    layout = fresh_ca.layout
    layout.intermediate_cert.write_bytes(b"not a certificate")
    with pytest.raises(CAError, match=r"intermediate\.pem: not a PEM certificate"):
        CertificateAuthority.load(fresh_ca.directory)
    layout.intermediate_cert.write_bytes(other_ca.layout.intermediate_cert.read_bytes())
    with pytest.raises(CAError, match=r"intermediate\.key does not match"):
        CertificateAuthority.load(fresh_ca.directory)


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="not found"):
        CertificateAuthority.load(tmp_path / "nope")


def test_issue_records_the_certificate_by_serial(
    fresh_ca: CertificateAuthority, now: datetime
) -> None:
    issued = fresh_ca.issue("client-personal", cn="Jeanne Martin", identifier="8100", now=now)
    path = fresh_ca.layout.issued_dir / f"{issued.serial_hex}.pem"
    assert x509.load_pem_x509_certificate(path.read_bytes()) == issued.cert
    assert issued.chain == (fresh_ca.intermediate,)
    assert len(issued.serial_hex) % 2 == 0


def test_write_pem(fresh_ca: CertificateAuthority, now: datetime, tmp_path: Path) -> None:
    issued = fresh_ca.issue("server", cn="mx.example.fr", now=now)
    cert_path, key_path = write_pem(issued, tmp_path / "mx.example.fr")
    assert cert_path.name == "mx.example.fr.pem" and key_path.name == "mx.example.fr.key"
    assert mode(key_path) == 0o600
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert chain == [issued.cert, fresh_ca.intermediate]
    assert leftovers(tmp_path) == []


# covers: TS-1
def test_revoke_leaf_updates_register_and_crl(
    fresh_ca: CertificateAuthority, now: datetime
) -> None:
    issued = fresh_ca.issue("client-app", cn="app", identifier="1+1", now=now)
    entry = fresh_ca.revoke(issued.cert, reason="keyCompromise", now=now)
    assert entry.crl == "intermediate" and entry.reason is x509.ReasonFlags.key_compromise
    register = json.loads(fresh_ca.layout.revoked.read_text())
    assert register == {
        issued.serial_hex: {
            "revoked_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reason": "keyCompromise",
            "crl": "intermediate",
        }
    }
    crl = x509.load_pem_x509_crl(fresh_ca.layout.crl.read_bytes())
    assert crl.is_signature_valid(fresh_ca.intermediate.public_key())  # type: ignore[arg-type]
    revoked = crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number)
    assert revoked is not None and revoked.revocation_date_utc == now
    reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
    assert reason is x509.ReasonFlags.key_compromise
    assert list(x509.load_pem_x509_crl(fresh_ca.layout.root_crl.read_bytes())) == []
    # Idempotent: the first revocation wins.
    later = fresh_ca.revoke(issued.cert.serial_number, reason="superseded", now=now + timedelta(1))
    assert later == entry
    assert leftovers(fresh_ca.directory) == []


def test_revoke_intermediate_goes_to_root_crl(
    fresh_ca: CertificateAuthority, now: datetime
) -> None:
    fresh_ca.revoke(fresh_ca.intermediate, reason="cACompromise", now=now)
    root_crl = fresh_ca.root_crl(now)
    assert root_crl.get_revoked_certificate_by_serial_number(fresh_ca.intermediate.serial_number)
    assert list(fresh_ca.crl(now)) == []


def test_revoke_refuses_unknown_and_root(
    fresh_ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    with pytest.raises(CAError, match="not issued by this CA"):
        fresh_ca.revoke(12345, now=now)
    foreign = other_ca.issue("server", cn="x.example.fr", now=now).cert
    with pytest.raises(CAError, match="not issued by this CA"):
        fresh_ca.revoke(foreign, now=now)
    with pytest.raises(CAError, match="root cannot be revoked"):
        fresh_ca.revoke(fresh_ca.root, now=now)
    with pytest.raises(CAError, match="unknown revocation reason"):
        fresh_ca.revoke(fresh_ca.intermediate, reason="bored", now=now)


def test_crl_numbers_increase_and_dates_follow_now(
    fresh_ca: CertificateAuthority, now: datetime
) -> None:
    def number(crl: x509.CertificateRevocationList) -> int:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    first = fresh_ca.crl(now)
    second = fresh_ca.crl(now + timedelta(days=1))
    assert number(second) == number(first) + 1
    assert second.last_update_utc == now + timedelta(days=1)
    assert second.next_update_utc == now + timedelta(days=8)
    assert x509.load_pem_x509_crl(fresh_ca.layout.crl.read_bytes()) == second


def test_revocations_survive_reload(fresh_ca: CertificateAuthority, now: datetime) -> None:
    issued = fresh_ca.issue("server", cn="mx.example.fr", now=now)
    fresh_ca.revoke(issued.cert, now=now)
    loaded = CertificateAuthority.load(fresh_ca.directory)
    assert set(loaded.revocations()) == {issued.cert.serial_number}
    crl = loaded.crl(now + timedelta(days=2))
    assert crl.get_revoked_certificate_by_serial_number(issued.cert.serial_number) is not None


def test_corrupt_register_is_a_clear_error(fresh_ca: CertificateAuthority) -> None:
    fresh_ca.layout.revoked.write_text('{"ZZ": {}}')
    with pytest.raises(CAError, match=r"revoked\.json: bad entry 'ZZ'"):
        fresh_ca.revocations()


def test_layout_and_serial_hex() -> None:
    layout = CALayout.at("/srv/ca")
    assert layout.crl == Path("/srv/ca/crl.pem")
    assert layout.issued_cert(0xABC) == Path("/srv/ca/issued/0ABC.pem")
    assert serial_hex(255) == "FF"
