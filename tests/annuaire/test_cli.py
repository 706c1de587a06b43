"""The directory commands as an operator runs them: real processes, real files."""

import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from annuaire.dn import dn_from_x509, parse_dn
from annuaire.extraction import read_extraction
from annuaire.synthetic import write_synthetic_file
from annuaire.whitelist_xml import WhitelistEntry, parse_whitelist, render_whitelist
from certs import CertificateAuthority, load_certificates, server_context
from mssante import config as cfg

from factories import NOW, finess, ins, rpps
from nodes import mssante

DOMAIN = "demo.mssante.test"


@pytest.fixture
def node(tmp_path):
    data = tmp_path / "node"
    result = mssante("init", "--demo", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    return data


def run(node: Path, *args: str):
    return mssante(*args, "--data-dir", str(node))


def ok(node: Path, *args: str) -> str:
    result = run(node, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def refused(node: Path, *args: str, words: str) -> None:
    result = run(node, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def test_bal_life_cycle(node, tmp_path):
    # covers: ANN-1, ANN-3
    secret = tmp_path / "pw"
    secret.write_text("une phrase de passe longue\n")
    ok(
        node,
        "bal",
        "add",
        f"dr.martin@{DOMAIN}",
        "--type",
        "PER",
        "--rpps",
        rpps(1),
        "--display-name",
        "Dr Marie MARTIN",
        "--profession-code",
        "10",
        "--profession-label",
        "Médecin",
        "--city",
        "Lyon",
        "--password-file",
        str(secret),
        "--cert",
        str(node / "pki/server.pem"),
    )
    ok(
        node,
        "bal",
        "add",
        f"cardio@{DOMAIN}",
        "--type",
        "ORG",
        "--finess",
        finess(2),
        "--member",
        f"dr.martin@{DOMAIN}",
    )
    listing = ok(node, "bal", "list")
    assert f"dr.martin@{DOMAIN}\tPER\tDr Marie MARTIN" in listing
    shown = ok(node, "bal", "show", f"DR.MARTIN@{DOMAIN}")
    assert "person_id: " + rpps(1) in shown
    assert "password: (argon2id hash)" in shown and "certificate: " in shown
    assert "une phrase" not in shown
    assert f"members: ['dr.martin@{DOMAIN}']" in ok(node, "bal", "show", f"cardio@{DOMAIN}")
    ok(node, "bal", "set", f"dr.martin@{DOMAIN}", "--liste-rouge", "yes", "--preferred", "1")
    assert "liste-rouge preferred=1" in ok(node, "bal", "list", "--type", "PER")
    assert ok(node, "annuaire", "search", "martin") == ""
    ok(node, "bal", "member", "remove", f"cardio@{DOMAIN}", f"dr.martin@{DOMAIN}")
    ok(node, "bal", "remove", f"cardio@{DOMAIN}")
    assert f"cardio@{DOMAIN}" not in ok(node, "bal", "list")
    audit = ok(node, "audit", "list")
    assert "bal.add bal:dr.martin@demo.mssante.test" in audit and "bal.remove" in audit


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--rpps", "1000000000", "11 digits"),
        ("--rpps", "10000000001", "check digit"),
        ("--adeli", "12345678A", "digits"),
        ("--finess", "75000000", "9"),
        ("--siret", "12345678901234", "check digit"),
        ("--siren", "12345678", "9 digits"),
    ],
)
def test_identifier_validators_on_the_command_line(node, flag, value, words):
    # covers: ANN-1
    kind = "PER" if flag in ("--rpps", "--adeli") else "ORG"
    refused(node, "bal", "add", f"x@{DOMAIN}", "--type", kind, flag, value, words=words)


def test_bal_refusals_are_one_line(node):
    # covers: ANN-3
    refused(node, "bal", "add", f"x@{DOMAIN}", "--type", "ORG", "--rpps", rpps(1), words="facility")
    refused(node, "bal", "show", f"ghost@{DOMAIN}", words="no BAL")
    ok(node, "bal", "add", f"x@{DOMAIN}", "--type", "PER", "--rpps", rpps(1))
    refused(
        node,
        "bal",
        "add",
        f"X@{DOMAIN}",
        "--type",
        "PER",
        "--rpps",
        rpps(2),
        words="already exists",
    )
    refused(node, "bal", "set", f"x@{DOMAIN}", words="nothing to change")


def whitelist_file(path: Path, domains: list[str], dn: str) -> Path:
    entries = [WhitelistEntry(d, parse_dn(dn), "test") for d in domains]
    path.write_bytes(render_whitelist(entries, NOW))
    return path


def test_whitelist_update_check_list_and_refusals(node, tmp_path):
    # covers: TS-2
    dn = "CN=bus.mssante.fr,OU=3180000000001,O=ANS,C=FR"
    listing = whitelist_file(tmp_path / "liste.xml", [f"d{i}.mssante.fr" for i in range(30)], dn)
    digest = hashlib.sha256(listing.read_bytes()).hexdigest()
    refused(node, "whitelist", "update", str(listing), "--checksum", "00" * 32, words="checksum")
    assert "30 entries" in ok(node, "whitelist", "update", str(listing), "--checksum", digest)
    assert ok(node, "whitelist", "check", "D3.mssante.fr").startswith("d3.mssante.fr\tCN=bus")
    assert run(node, "whitelist", "check", "gmail.com").returncode == 1
    assert ok(
        node,
        "whitelist",
        "check",
        "d3.mssante.fr",
        "--dn",
        "cn=BUS.mssante.fr, ou=3180000000001, o=ANS, c=FR",
    )
    assert (
        run(
            node, "whitelist", "check", "d3.mssante.fr", "--dn", "CN=bus.mssante.fr,O=OTHER,C=FR"
        ).returncode
        == 1
    )
    assert ok(node, "whitelist", "list").count("\n") == 31
    garbage = tmp_path / "garbage.xml"
    garbage.write_bytes(b"<html>maintenance</html>")
    refused(node, "whitelist", "update", str(garbage), words="list in force is kept")
    assert "whitelist.update whitelist:- refused" in ok(node, "audit", "list")
    small = whitelist_file(tmp_path / "small.xml", ["d1.mssante.fr"], dn)
    refused(node, "whitelist", "update", str(small), words="smaller")
    assert ok(node, "whitelist", "check", "d29.mssante.fr")


def test_self_entry_is_a_valid_whitelist_with_our_certificate_dn(node):
    # covers: TS-2
    output = ok(
        node, "whitelist", "self-entry", "--whole", "--contact", "support@demo.mssante.test"
    )
    parsed = parse_whitelist(output.encode())
    config = cfg.load(node)
    ours = dn_from_x509(load_certificates(config.path(config.tls.cert_file))[0].subject)
    # The node serves the patient domain too (node.serves_patient_domain): peers pair both.
    domains = sorted([DOMAIN, config.node.patient_domain])
    assert [(e.domain, e.dn) for e in parsed.entries] == [(d, ours) for d in domains]
    assert "<Domaine" in ok(node, "whitelist", "self-entry")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def serve_https(directory: Path, cert: Path, key: Path):
    handler = lambda *a, **k: _Quiet(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_whitelist_download_over_https_is_checked_against_our_anchors(node, tmp_path):
    # covers: TS-2
    site = tmp_path / "site"
    site.mkdir()
    whitelist_file(
        site / "listeblanchemssante.xml", [f"d{i}.mssante.fr" for i in range(5)], "CN=x,C=FR"
    )
    trusted = serve_https(site, node / "pki/server.pem", node / "pki/server.key")
    other_ca = CertificateAuthority.create(tmp_path / "other-ca", now=NOW)
    impostor_cert = other_ca.issue("server", cn="localhost", sans=["localhost"], now=NOW)
    other_ca.write_pem(impostor_cert, tmp_path / "impostor")
    impostor = serve_https(site, tmp_path / "impostor.pem", tmp_path / "impostor.key")
    try:
        port = trusted.server_address[1]
        assert "5 entries" in ok(
            node, "whitelist", "update", f"https://localhost:{port}/listeblanchemssante.xml"
        )
        bad_port = impostor.server_address[1]
        refused(
            node,
            "whitelist",
            "update",
            f"https://localhost:{bad_port}/listeblanchemssante.xml",
            words="CERTIFICATE_VERIFY_FAILED",
        )
        refused(node, "whitelist", "update", f"http://localhost:{port}/x.xml", words="https only")
    finally:
        trusted.shutdown()
        impostor.shutdown()


def test_national_import_search_and_export(node, tmp_path):
    # covers: ANN-2
    written = write_synthetic_file(
        tmp_path / "extraction.zip", 2000, seed=3, zipped=True, malformed_every=500
    )
    out = ok(node, "annuaire", "import", str(written.path))
    assert f"{written.malformed} malformed" in out and "removed" in out
    assert "0 added" in ok(node, "annuaire", "import", str(written.path))
    first = next(read_extraction(_lines(written.path)))
    found = ok(node, "annuaire", "search", first.address)
    assert found.startswith(first.address) and "[address]" in found
    ok(node, "bal", "add", f"visible@{DOMAIN}", "--type", "PER", "--rpps", rpps(5))
    ok(node, "bal", "add", f"hidden@{DOMAIN}", "--type", "PER", "--rpps", rpps(6), "--liste-rouge")
    ok(node, "annuaire", "export", "--out", str(tmp_path / "export.txt"))
    exported = list(
        read_extraction((tmp_path / "export.txt").read_text().splitlines(keepends=True))
    )
    assert [r.address for r in exported] == [f"visible@{DOMAIN}"]
    refused(node, "annuaire", "import", str(tmp_path / "missing.zip"), words="missing.zip")


def _lines(path: Path):
    from annuaire.extraction import open_extraction

    with open_extraction(path) as lines:
        yield from lines


def test_patients_commands(node, tmp_path):
    # covers: INS-1, INS-2
    csv = tmp_path / "patients.csv"
    csv.write_text(
        f"ins,status,first_name,last_name\n{ins(1)},open,Léa,Dupont\n{ins(2)},opposed,,\n"
    )
    assert "2 patients imported" in ok(node, "patients", "import", str(csv))
    assert "status: open" in ok(node, "patients", "show", ins(1))
    assert "status: not_created" in ok(node, "patients", "show", ins(3))
    ok(node, "patients", "set-status", ins(1), "closed")
    assert "status: closed" in ok(node, "patients", "show", ins(1))
    refused(
        node,
        "patients",
        "show",
        ins(1)[:-2] + "00" if not ins(1).endswith("00") else ins(1)[:-2] + "01",
        words="key",
    )
    refused(node, "patients", "show", "12345", words="15 characters")
    secret = tmp_path / "pw"
    secret.write_text("mot de passe du patient")
    ok(node, "patients", "passwd", ins(1), "--password-file", str(secret))
    assert "password: set" in ok(node, "patients", "show", ins(1))
    audit = ok(node, "audit", "list", "--action", "patients.set_status")
    assert ins(1) not in audit, "the audit log never shows an INS in clear"


def test_directory_commands_honour_mssante_data_dir(node):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MSSANTE_DATA_DIR": str(node)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mssante",
            "bal",
            "add",
            f"env@{DOMAIN}",
            "--type",
            "PER",
            "--rpps",
            rpps(4),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"env@{DOMAIN}" in ok(node, "bal", "list")
