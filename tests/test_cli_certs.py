"""`mssante certs …` as an operator runs it."""

import subprocess

import pytest

from nodes import mssante


@pytest.mark.slow
def test_issue_check_revoke_round_trip(tmp_path):
    # covers: TS-1
    ca_dir = str(tmp_path / "ca")
    assert mssante("certs", "create-ca", "--ca-dir", ca_dir).returncode == 0
    issued = mssante(
        "certs",
        "issue",
        "--ca-dir",
        ca_dir,
        "--kind",
        "server",
        "--cn",
        "mx.hopital.mssante.test",
        "--identifier",
        "1750000012",
        "--out",
        str(tmp_path / "mx"),
    )
    assert issued.returncode == 0, issued.stderr
    assert (tmp_path / "mx.key").stat().st_mode & 0o777 == 0o600

    ok = mssante(
        "certs",
        "check",
        str(tmp_path / "mx.pem"),
        "--ca-dir",
        ca_dir,
        "--hostname",
        "mx.hopital.mssante.test",
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: valid for server use" in ok.stdout
    assert "mx.hopital.mssante.test" in ok.stdout

    wrong_name = mssante(
        "certs",
        "check",
        str(tmp_path / "mx.pem"),
        "--ca-dir",
        ca_dir,
        "--hostname",
        "mx.autre.mssante.test",
    )
    assert wrong_name.returncode == 1 and "FAILED [hostname_mismatch]" in wrong_name.stdout

    as_client = mssante(
        "certs", "check", str(tmp_path / "mx.pem"), "--ca-dir", ca_dir, "--purpose", "client"
    )
    assert as_client.returncode == 0, "operator certificates serve both directions"

    revoked = mssante(
        "certs",
        "revoke",
        str(tmp_path / "mx.pem"),
        "--ca-dir",
        ca_dir,
        "--reason",
        "key_compromise",
    )
    assert revoked.returncode == 0, revoked.stderr
    after = mssante("certs", "check", str(tmp_path / "mx.pem"), "--ca-dir", ca_dir)
    assert after.returncode == 1 and "FAILED [revoked]" in after.stdout

    republished = mssante("certs", "crl", "--ca-dir", ca_dir)
    assert republished.returncode == 0 and "next update" in republished.stdout
    still = mssante("certs", "check", str(tmp_path / "mx.pem"), "--ca-dir", ca_dir)
    assert "FAILED [revoked]" in still.stdout, "republishing keeps the revocations"


@pytest.mark.slow
def test_check_against_a_node_trusting_a_p7b_bundle(tmp_path):
    node = tmp_path / "node"
    assert mssante("init", "--demo", "--data-dir", str(node)).returncode == 0
    p7b = node / "pki" / "anchors.p7b"
    subprocess.run(
        [
            "openssl",
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            str(node / "pki/ca/root.pem"),
            "-outform",
            "DER",
            "-out",
            str(p7b),
        ],
        check=True,
    )
    config = node / "mssante.toml"
    config.write_text(
        config.read_text().replace('ca_file = "pki/ca/root.pem"', 'ca_file = "pki/anchors.p7b"')
    )
    checked = mssante("certs", "check", str(node / "pki/server.pem"), "--data-dir", str(node))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_bad_inputs_are_one_line_errors(tmp_path):
    missing_ca = mssante(
        "certs",
        "issue",
        "--ca-dir",
        str(tmp_path / "none"),
        "--kind",
        "server",
        "--cn",
        "x.test",
        "--out",
        str(tmp_path / "x"),
    )
    assert missing_ca.returncode == 2
    assert len(missing_ca.stderr.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    assert mssante("certs", "create-ca", "--ca-dir", str(tmp_path / "ca")).returncode == 0
    checked = mssante("certs", "check", str(garbage), "--ca-dir", str(tmp_path / "ca"))
    assert checked.returncode == 2
    assert "garbage.pem" in checked.stderr
