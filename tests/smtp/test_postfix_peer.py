# covers: TS-1, TS-2
"""Debian's Postfix as a peer operator, configured by the test into a temporary directory.

Postfix (operator p.test) holds a certificate from our demo CA; node B
(b.test) and Postfix whitelist each other. Postfix relays a message to our MX
with its client certificate, and accepts one from us over mutual TLS.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mssante import config as cfg

from nodes import free_port_offset, mssante, rpps
from operators import PASSWORD, Peer

pytestmark = pytest.mark.slow

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MASTER_CF = """\
{port}     inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _postfix_usable() -> str | None:
    if not os.path.exists(POSTFIX):
        return "Postfix is not installed (apt-get install postfix; .ci/run does)"
    if os.geteuid() != 0:
        return "a private Postfix instance needs root to start"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or postdrop group is missing"
    return None


@dataclass
class PostfixPeer:
    config_dir: Path
    port: int
    mail_dir: Path
    log: Path

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def delivered(self, user: str) -> list[bytes]:
        new = self.mail_dir / "p.test" / user / "new"
        return [p.read_bytes() for p in sorted(new.glob("*"))] if new.exists() else []


@dataclass
class Setup:
    b: Peer
    postfix: PostfixPeer
    ca_dir: Path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    reason = _postfix_usable()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("postfix-peer")
    ca_dir = work / "ca"
    assert mssante("certs", "create-ca", "--ca-dir", str(ca_dir)).returncode == 0
    # Our node B, and a node directory for p.test used only for its certificate
    # and its whitelist entry (Postfix runs that operator).
    dirs = {}
    for name, domain in (("b", "b.test"), ("p", "p.test")):
        data_dir = work / name
        result = mssante(
            "init", "--demo", "--data-dir", str(data_dir), "--domain", domain,
            "--ca-dir", str(ca_dir), "--port-offset", str(free_port_offset()),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        dirs[name] = data_dir
    b = Peer("b", "b.test", dirs["b"], cfg.load(dirs["b"]).listeners.mx.port - 2525)
    p_entry = work / "p.xml"
    p_entry.write_text(
        mssante("whitelist", "self-entry", "--whole", "--data-dir", str(dirs["p"])).stdout
    )
    b.run("whitelist", "update", str(p_entry))
    pw = work / "pw"
    pw.write_text(PASSWORD)
    b.run(
        "bal", "add", "bob@b.test", "--type", "PER", "--rpps", rpps(2), "--password-file", str(pw)
    )

    port = cfg.load(dirs["p"]).listeners.mx.port  # a free port picked for p.test
    b.run("transport", "set", "p.test", f"127.0.0.1:{port}")
    peer = _configure_postfix(work / "postfix", port, dirs["p"], ca_dir, b.port("mx"))
    started = peer.postfix("start")
    if started.returncode != 0:
        pytest.fail(f"postfix start failed: {started.stderr}")
    try:
        b.start()
        yield Setup(b, peer, ca_dir)
    finally:
        if b.node is not None:
            b.node.stop()
        peer.postfix("stop")


def _configure_postfix(root: Path, port: int, p_dir: Path, ca_dir: Path, b_mx: int) -> PostfixPeer:
    config_dir, queue_dir, data_dir, mail_dir = (
        root / "etc",
        root / "spool",
        root / "lib",
        root / "mail",
    )
    for d in (config_dir, queue_dir, data_dir, mail_dir):
        d.mkdir(parents=True)
    postfix_user = pwd.getpwnam("postfix")
    os.chown(data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
    os.chown(mail_dir, postfix_user.pw_uid, postfix_user.pw_gid)
    root.chmod(0o755)
    for parent in root.parents:  # Postfix's processes must reach their directories
        if str(parent).startswith("/tmp/pytest"):
            parent.chmod(0o755)
    tls = config_dir / "tls"
    tls.mkdir()
    for src, name in (
        (p_dir / "pki" / "server.pem", "cert.pem"),
        (p_dir / "pki" / "server.key", "key.pem"),
        (ca_dir / "root.pem", "ca.pem"),
    ):
        shutil.copy(src, tls / name)
    (config_dir / "vmailbox").write_text("carol@p.test p.test/carol/\n")
    (config_dir / "transport").write_text(f"b.test smtp:[127.0.0.1]:{b_mx}\n")
    # We reach B by address: its certificate must name mx.b.test (verified, not just encrypted).
    (config_dir / "tls_policy").write_text(f"[127.0.0.1]:{b_mx} secure match=mx.b.test\n")
    log = root / "maillog"
    (config_dir / "main.cf").write_text(
        "\n".join(
            [
                "compatibility_level = 3.6",
                f"queue_directory = {queue_dir}",
                f"data_directory = {data_dir}",
                "mail_owner = postfix",
                "setgid_group = postdrop",
                f"maillog_file = {log}",
                f"maillog_file_prefixes = {root}",
                "myhostname = mx.p.test",
                "mydomain = p.test",
                "mydestination =",
                "inet_interfaces = 127.0.0.1",
                "inet_protocols = ipv4",
                "mynetworks = 127.0.0.0/8",
                "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination",
                "virtual_mailbox_domains = p.test",
                f"virtual_mailbox_base = {mail_dir}",
                f"virtual_mailbox_maps = texthash:{config_dir}/vmailbox",
                f"virtual_uid_maps = static:{postfix_user.pw_uid}",
                f"virtual_gid_maps = static:{postfix_user.pw_gid}",
                f"transport_maps = texthash:{config_dir}/transport",
                # Receiving: TLS offered, a client certificate asked for.
                "smtpd_tls_security_level = may",
                f"smtpd_tls_cert_file = {tls}/cert.pem",
                f"smtpd_tls_key_file = {tls}/key.pem",
                f"smtpd_tls_CAfile = {tls}/ca.pem",
                "smtpd_tls_ask_ccert = yes",
                "smtpd_tls_received_header = yes",
                # Sending: TLS mandatory, our certificate presented, the peer's verified.
                "smtp_tls_security_level = encrypt",
                f"smtp_tls_policy_maps = texthash:{config_dir}/tls_policy",
                f"smtp_tls_cert_file = {tls}/cert.pem",
                f"smtp_tls_key_file = {tls}/key.pem",
                f"smtp_tls_CAfile = {tls}/ca.pem",
                "smtp_tls_loglevel = 1",
                "maximal_queue_lifetime = 1h",
                "bounce_queue_lifetime = 1h",
                "biff = no",
                "",
            ]
        )
    )
    (config_dir / "master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{port}"))
    return PostfixPeer(config_dir, port, mail_dir, log)


def _wait(check: object, what: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            tail = log.read_text()[-3000:] if log.exists() else "(no Postfix log)"
            raise AssertionError(f"{what} did not happen; Postfix log:\n{tail}")
        time.sleep(0.3)  # other processes at work, not a timing assertion


def test_postfix_relays_to_our_mx_with_its_client_certificate(setup: Setup) -> None:
    before = len(setup.b.inbox("bob@b.test"))
    with smtplib.SMTP("127.0.0.1", setup.postfix.port, timeout=30) as smtp:
        smtp.sendmail(
            "alice@p.test",
            ["bob@b.test"],
            b"From: <alice@p.test>\r\nTo: <bob@b.test>\r\nSubject: de Postfix\r\n"
            b"X-MSS-Peer: postfix\r\n\r\nBonjour.\r\n",
        )
    _wait(lambda: len(setup.b.inbox("bob@b.test")) > before, "relay to our MX", setup.postfix.log)
    stored = setup.b.inbox("bob@b.test")[-1]
    assert b"X-MSS-Peer: postfix" in stored
    assert b"by mx.b.test (MSSant" in stored and b"with ESMTPS" in stored


def test_postfix_accepts_mail_from_us_over_mutual_tls(setup: Setup) -> None:
    ctx = ssl.create_default_context(cafile=str(setup.ca_dir / "root.pem"))
    ctx.check_hostname = False
    with smtplib.SMTP("127.0.0.1", setup.b.port("submission"), timeout=30) as smtp:
        smtp.starttls(context=ctx)
        smtp.login("bob@b.test", PASSWORD)
        smtp.sendmail(
            "bob@b.test",
            ["carol@p.test"],
            b"From: <bob@b.test>\r\nTo: <carol@p.test>\r\nSubject: vers Postfix\r\n\r\nSalut.\r\n",
        )
    _wait(lambda: setup.postfix.delivered("carol"), "delivery into Postfix", setup.postfix.log)
    received = setup.postfix.delivered("carol")[-1]
    assert b"Subject: vers Postfix" in received
    # Postfix's Received line: it verified the client certificate we presented.
    assert b'Client CN "mx.b.test"' in received and b"verified OK" in received
