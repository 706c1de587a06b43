# covers: TS-1, TS-2, TS-3, TS-4, TS-5, TS-6, LIM-1, INS-1
"""Two real nodes sharing a demo CA, each whitelisting the other, over real TLS sockets."""

from __future__ import annotations

import base64
import json
import shutil
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from annuaire.identifiers import luhn_key
from annuaire.ins import ins_key
from certs import CertificateAuthority
from smtp import dkim

from operators import PASSWORD, Pair, setup_pair

pytestmark = pytest.mark.slow


ISSUER = "https://psc.example.test/auth/realms/esante-wallet"
AUDIENCE = "mssante-operator-a"
SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(sub: str, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, SIGNER, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    work = tmp_path_factory.mktemp("two-nodes")
    jwks = work / "jwks.json"
    key = RSAAlgorithm.to_jwk(SIGNER.public_key(), as_dict=True)
    jwks.write_text(json.dumps({"keys": [{**key, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    pair = setup_pair(
        work,
        extra_config=(
            "[smtp]\nauth_max_failures_account = 3\n"
            f'oauth_issuer = "{ISSUER}"\noauth_audience = "{AUDIENCE}"\n'
            f'oauth_jwks_file = "{jwks}"\n'
        ),
    )
    pair.a.run("bal", "bind", "alice@a.test", "--oauth", f"{ISSUER} f:550e8400:alice")
    with pair.running():
        yield pair


def _message(
    sender: str, to: str, subject: str = "Compte rendu", body: str = "Bonjour.\n"
) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["X-MSS-Test"] = "passe tel quel"
    msg.set_content(body)
    return msg


def test_submitted_on_a_arrives_on_b_over_mutual_tls(pair: Pair) -> None:
    with pair.submit() as smtp:
        refused = smtp.send_message(_message("alice@a.test", "bob@b.test", "premier"))
        assert refused == {}
    found = pair.b.wait_inbox("bob@b.test", 1)
    assert len(found) == 1
    message = found[0]
    assert b"Subject: premier" in message
    assert b"X-MSS-Test: passe tel quel" in message
    assert b"Message-ID: <" in message and b"Date: " in message  # added on submission
    assert message.count(b"Received: from") == 2  # A's submission, B's MX
    assert b"with ESMTPSA" in message and b"with ESMTPS id" in message


def test_submission_refusals(pair: Pair) -> None:
    with pair.submit() as smtp:
        code, text = smtp.mail("carol@a.test")
        assert (code, text[:5]) == (553, b"5.7.1"), text
        smtp.rset()
        assert smtp.mail("alice@a.test")[0] == 250
        code, text = smtp.rcpt("someone@gmail.com")
        assert code == 550 and b"not in the MSSant" in text and b"trust space" in text
        code, text = smtp.rcpt("nobody@a.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = smtp.rcpt("123456789012345@patient.mssante.fr")
        assert (code, text[:5]) == (550, b"5.1.3") and b"INS" in text


def test_patient_domain_size_cap(pair: Pair) -> None:
    body = "180017500100" + "1"
    patient = f"{body}{ins_key(body)}@patient.mssante.fr"
    with pair.submit() as smtp:
        assert smtp.mail("alice@a.test", [f"SIZE={30 * 1024 * 1024}"])[0] == 250
        assert smtp.rcpt("bob@b.test")[0] == 250  # 30 MB is fine between professionals
        code, text = smtp.rcpt(patient)
        assert code == 552 and b"patient.mssante.fr" in text and b"25 MB" in text


def test_from_header_must_be_owned(pair: Pair) -> None:
    with pair.submit() as smtp:
        with pytest.raises(smtplib.SMTPDataError) as caught:
            smtp.send_message(_message("carol@a.test", "bob@b.test"), from_addr="alice@a.test")
        assert caught.value.smtp_code == 553


def test_no_auth_before_tls_and_bad_password(pair: Pair) -> None:
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=30)
    smtp.ehlo()
    assert not smtp.has_extn("auth")
    assert smtp.docmd("AUTH", "PLAIN AGFsaWNlQGEudGVzdABw")[0] == 538
    smtp.starttls(context=pair.client_context())
    with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        smtp.login("alice@a.test", "wrong password!")
    assert caught.value.smtp_code == 535
    smtp.quit()


def _plain(pair: Pair, user: str, password: str) -> int:
    """One AUTH PLAIN attempt (smtplib.login would try every mechanism in turn)."""
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=60)
    smtp.starttls(context=pair.client_context())
    smtp.ehlo()
    smtp.user, smtp.password = user, password
    try:
        return smtp.auth("PLAIN", smtp.auth_plain)[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code
    finally:
        smtp.close()


def test_lockout_after_repeated_failures(pair: Pair) -> None:
    codes = [_plain(pair, "carol@a.test", "not the password") for _ in range(4)]
    assert codes == [535, 535, 535, 454]
    assert _plain(pair, "carol@a.test", PASSWORD) == 454  # locked, even with the password


# ---------------------------------------------------------------------- MX refusals


def _issue(pair: Pair, name: str, **kw: object) -> Path:
    ca = CertificateAuthority.load(pair.ca_dir)
    issued = ca.issue("server", **kw)  # type: ignore[arg-type]
    prefix = pair.work / name
    ca.write_pem(issued, prefix)
    return prefix


def _mx(pair: Pair, cert: Path | None) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", pair.b.port("mx"), timeout=30)
    smtp.starttls(context=pair.client_context(cert))
    smtp.ehlo()
    return smtp


def test_mx_without_tls_is_refused(pair: Pair) -> None:
    smtp = smtplib.SMTP("127.0.0.1", pair.b.port("mx"), timeout=30)
    smtp.ehlo()
    assert smtp.has_extn("starttls")
    code, text = smtp.mail("alice@a.test")
    assert code == 530 and text.startswith(b"5.7.0")
    smtp.quit()


def test_mx_without_client_certificate(pair: Pair) -> None:
    with _mx(pair, None) as smtp:
        code, text = smtp.mail("alice@a.test")
        assert code == 530 and b"client certificate" in text


def test_mx_with_the_peers_certificate_and_the_rules(pair: Pair) -> None:
    with _mx(pair, pair.a.data_dir / "pki" / "server") as smtp:
        code, text = smtp.mail("alice@c.test")
        assert code == 550 and b"not in the MSSant" in text
        smtp.rset()
        code, text = smtp.mail("alice@a.test")
        assert code == 250, text
        code, text = smtp.rcpt("bob@a.test")
        assert code == 550 and b"Relaying denied" in text
        code, text = smtp.rcpt("x@elsewhere.org")
        assert code == 550 and text.startswith(b"5.7.1")
        assert smtp.rcpt("bob@b.test")[0] == 250
        # From: of a domain the certificate is not paired with.
        code, text = smtp.data(b"From: <x@b.test>\r\nSubject: t\r\n\r\nbody\r\n")
        assert code == 550 and b"Domain b.test is not in the MSSant" in text


def test_mx_size_cap(pair: Pair) -> None:
    with _mx(pair, pair.a.data_dir / "pki" / "server") as smtp:
        code, text = smtp.mail("alice@a.test", ["SIZE=999999999999"])
        assert code == 552 and text.startswith(b"5.3.4")


def test_mx_right_cn_different_dn(pair: Pair) -> None:
    prefix = _issue(pair, "impostor", cn="mx.a.test", organization="Autre operateur")
    with _mx(pair, prefix) as smtp:
        code, text = smtp.mail("alice@a.test")
        assert code == 550 and b"not paired with domain a.test" in text


def test_mx_expired_certificate(pair: Pair) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    prefix = _issue(
        pair, "expired", cn="mx.a.test", not_before=past, not_after=past + timedelta(days=1)
    )
    with _mx(pair, prefix) as smtp:
        code, text = smtp.mail("alice@a.test")
        assert code == 554 and b"expired" in text


def test_mx_revoked_certificate(pair: Pair) -> None:
    prefix = _issue(pair, "revoked", cn="mx.a.test")
    ca = CertificateAuthority.load(pair.ca_dir)
    ca.revoke(x509.load_pem_x509_certificate(Path(f"{prefix}.pem").read_bytes()))
    with _mx(pair, prefix) as smtp:
        code, text = smtp.mail("alice@a.test")
        assert code == 554 and b"revoked" in text


def test_mx_certificate_from_another_ca(pair: Pair) -> None:
    other = CertificateAuthority.create(pair.work / "other-ca", name="NOT IGC")
    issued = other.issue("server", cn="mx.a.test")
    prefix = pair.work / "foreign"
    other.write_pem(issued, prefix)
    smtp = smtplib.SMTP("127.0.0.1", pair.b.port("mx"), timeout=30)
    with pytest.raises((ssl.SSLError, smtplib.SMTPServerDisconnected, ConnectionError)):
        smtp.starttls(context=pair.client_context(prefix))
        smtp.mail("alice@a.test")
    smtp.close()
    assert pair.b.node is not None
    pair.b.node.wait_for("TLS handshake failed", timeout=10)


def test_success_dsn_comes_back_to_the_sender(pair: Pair) -> None:
    before = len(pair.a.inbox("alice@a.test"))
    with pair.submit() as smtp:
        smtp.send_message(
            _message("alice@a.test", "bob@b.test", "avec accusé"),
            rcpt_options=["NOTIFY=SUCCESS"],
            mail_options=["ENVID=dossier42", "RET=HDRS"],
        )
    reports = pair.a.wait_inbox("alice@a.test", before + 1)
    assert len(reports) == before + 1
    dsn = reports[-1]
    assert b"report-type=delivery-status" in dsn
    assert b"Action: delivered" in dsn and b"Status: 2.0.0" in dsn
    assert b"Original-Envelope-Id: dossier42" in dsn


# ---------------------------------------------------------------------- real clients


def finess(n: int) -> str:
    body = f"75{n:06d}"
    return body + str(luhn_key(body))


@pytest.fixture(scope="module")
def app_cert(pair: Pair) -> Path:
    """An APP mailbox on A bound to a client certificate (the national model)."""
    ca = CertificateAuthority.load(pair.ca_dir)
    issued = ca.issue(
        "client-app", cn="DPI Hopital A", identifier=finess(7), organization="Hopital A"
    )
    prefix = pair.work / "app"
    ca.write_pem(issued, prefix)
    pair.a.run(
        "bal", "add", "dpi@a.test", "--type", "APP", "--finess", finess(7),
        "--cert", f"{prefix}.pem",
    )  # fmt: skip
    return prefix


@pytest.mark.skipif(
    shutil.which("swaks") is None, reason="swaks not installed (.ci/run installs it)"
)
def test_swaks_as_a_peer_operator_with_its_certificate(pair: Pair) -> None:
    before = len(pair.b.inbox("bob@b.test"))
    server = pair.a.data_dir / "pki" / "server"
    result = subprocess.run(
        [
            "swaks", "--server", "127.0.0.1", "--port", str(pair.b.port("mx")),
            "--tls", "--tls-cert", f"{server}.pem", "--tls-key", f"{server}.key",
            "--ehlo", "mx.a.test", "--from", "alice@a.test", "--to", "bob@b.test",
            "--header", "Subject: via swaks", "--header", "X-MSS-Swaks: oui",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK queued as" in result.stdout
    found = pair.b.wait_inbox("bob@b.test", before + 1)
    assert b"X-MSS-Swaks: oui" in found[-1]


def test_auth_external_with_the_bound_app_certificate(pair: Pair, app_cert: Path) -> None:
    before = len(pair.b.inbox("bob@b.test"))
    with smtplib.SMTP_SSL(
        "127.0.0.1", pair.a.port("submissions"), context=pair.client_context(app_cert), timeout=30
    ) as smtp:
        smtp.ehlo()
        assert "EXTERNAL" in smtp.esmtp_features["auth"]
        code, _ = smtp.docmd("AUTH", "EXTERNAL =")
        assert code == 235
        smtp.sendmail(
            "dpi@a.test", ["bob@b.test"], _message("dpi@a.test", "bob@b.test", "CR APP").as_bytes()
        )
    found = pair.b.wait_inbox("bob@b.test", before + 1)
    assert b"Subject: CR APP" in found[-1]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed (.ci/run installs it)")
def test_curl_auth_external(pair: Pair, app_cert: Path, tmp_path: Path) -> None:
    before = len(pair.b.inbox("bob@b.test"))
    mail = tmp_path / "mail.eml"
    mail.write_bytes(_message("dpi@a.test", "bob@b.test", "via curl").as_bytes())
    result = subprocess.run(
        [
            "curl", "--silent", "--show-error", "--ssl-reqd",
            f"smtp://127.0.0.1:{pair.a.port('submission')}",
            "--cacert", str(pair.ca_dir / "root.pem"), "--insecure",
            "--cert", f"{app_cert}.pem", "--key", f"{app_cert}.key",
            "--login-options", "AUTH=EXTERNAL", "--user", "dpi@a.test:",
            "--mail-from", "dpi@a.test", "--mail-rcpt", "bob@b.test", "--upload-file", str(mail),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    found = pair.b.wait_inbox("bob@b.test", before + 1)
    assert b"Subject: via curl" in found[-1]


def test_external_refused_without_a_bound_certificate(pair: Pair) -> None:
    with smtplib.SMTP_SSL(
        "127.0.0.1",
        pair.a.port("submissions"),
        context=pair.client_context(pair.a.data_dir / "pki" / "server"),
        timeout=30,
    ) as smtp:
        smtp.ehlo()
        code, text = smtp.docmd("AUTH", "EXTERNAL =")
        assert code == 535, text


def _auth(pair: Pair, mechanism: str, initial: bytes) -> tuple[int, bytes]:
    smtp = smtplib.SMTP("127.0.0.1", pair.a.port("submission"), timeout=30)
    smtp.starttls(context=pair.client_context())
    smtp.ehlo()
    assert mechanism in smtp.esmtp_features["auth"]
    code, text = smtp.docmd("AUTH", f"{mechanism} {base64.b64encode(initial).decode()}")
    if code == 334:  # the RFC 7628 error challenge: answer it, then the failure comes
        code, text = smtp.docmd(base64.b64encode(b"\x01").decode())
    smtp.close()
    return code, text


def test_oauthbearer_and_xoauth2_with_a_token_from_the_issuer(pair: Pair) -> None:
    good = token("f:550e8400:alice")
    bearer = f"n,a=alice@a.test,\x01auth=Bearer {good}\x01\x01".encode()
    assert _auth(pair, "OAUTHBEARER", bearer)[0] == 235
    xoauth = f"user=alice@a.test\x01auth=Bearer {good}\x01\x01".encode()
    assert _auth(pair, "XOAUTH2", xoauth)[0] == 235
    for bad in (
        token("f:550e8400:alice", exp=int(time.time()) - 3600),  # expired
        token("f:550e8400:alice", aud="someone-else"),  # wrong audience
        token("f:unknown:subject"),  # not bound to any mailbox
    ):
        refused = f"n,a=alice@a.test,\x01auth=Bearer {bad}\x01\x01".encode()
        assert _auth(pair, "OAUTHBEARER", refused)[0] == 535


def test_starttls_injection_is_discarded(pair: Pair) -> None:
    with socket.create_connection(("127.0.0.1", pair.b.port("mx")), timeout=30) as raw:
        reader = raw.makefile("rb")
        assert reader.readline().startswith(b"220")
        raw.sendall(b"EHLO mx.a.test\r\n")
        while not reader.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<alice@a.test>\r\n")
        assert reader.readline().startswith(b"220")
        ctx = pair.client_context(pair.a.data_dir / "pki" / "server")
        with ctx.wrap_socket(raw, server_hostname="mx.b.test") as tls:
            tls.sendall(b"NOOP\r\n")
            first = tls.recv(4096)
            # The first answer in TLS is the NOOP's, not replies to the injected commands.
            assert first.startswith(b"250 2.0.0 OK"), first


def test_dkim_signed_mail_gets_authentication_results(pair: Pair) -> None:
    before = len(pair.b.inbox("bob@b.test"))
    key_file = pair.work / "dkim.key"
    dkim.generate_key(key_file)
    key = dkim.load_key(key_file, domain="a.test", selector="s1")
    body = (
        b"From: <alice@a.test>\r\nTo: <bob@b.test>\r\nSubject: signed\r\n"
        b"Message-ID: <dkim.1@a.test>\r\n\r\nSigned body.\r\n"
    )
    signed = dkim.sign(body, key) + body
    forged = b"Authentication-Results: mx.b.test; dkim=pass header.d=a.test\r\n"
    with _mx(pair, pair.a.data_dir / "pki" / "server") as smtp:
        smtp.sendmail("alice@a.test", ["bob@b.test"], forged + signed)
    stored = pair.b.wait_inbox("bob@b.test", before + 1)[-1]
    # No DNS here: the key cannot be fetched, and the header says so.
    assert stored.count(b"Authentication-Results: mx.b.test;") == 1
    assert b"dkim=temperror" in stored or b"dkim=permerror" in stored
    assert forged not in stored  # a result claiming to be ours, from outside, is dropped
    assert stored.endswith(signed)  # the rest of the message is untouched


def test_queue_commands_and_gauges_while_b_is_down(pair: Pair) -> None:
    assert pair.b.node is not None
    pair.b.node.stop()
    with pair.submit() as smtp:
        smtp.send_message(_message("alice@a.test", "bob@b.test", "en attente"))
    deadline = time.monotonic() + 30
    while "attempts=1" not in (listing := pair.a.run("queue", "list").stdout):
        assert time.monotonic() < deadline, listing
        time.sleep(0.2)  # the runner of another process
    assert "bob@b.test" in listing and "4.4.1" in listing
    queue_id = listing.split()[0]
    shown = pair.a.run("queue", "show", queue_id).stdout
    assert "alice@a.test" in shown and "attempts:  1" in shown
    with urllib.request.urlopen(f"http://127.0.0.1:{pair.a.port('http')}/metrics") as r:
        metrics = r.read().decode()
    assert 'mssante_queue_size{kind="messages"} 1' in metrics
    assert 'mssante_queue_size{kind="deferred"} 1' in metrics
    assert "1 recipient(s) due now" in pair.a.run("queue", "retry", queue_id).stdout
    assert "no DSN sent" in pair.a.run("queue", "delete", queue_id).stdout
    assert "-- 0 message(s)" in pair.a.run("queue", "list").stdout
