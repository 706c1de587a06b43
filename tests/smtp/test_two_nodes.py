# covers: TS-1, TS-2, TS-3, TS-4, TS-6, LIM-1
"""Two real nodes sharing a demo CA, each whitelisting the other, over real TLS sockets."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from cryptography import x509

from annuaire.identifiers import luhn_key
from certs import CertificateAuthority

from operators import PASSWORD, Pair, setup_pair

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    pair = setup_pair(
        tmp_path_factory.mktemp("two-nodes"), extra_config="[smtp]\nauth_max_failures_account = 3\n"
    )
    try:
        pair.a.start()
        pair.b.start()
        yield pair
    finally:
        pair.stop()


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
