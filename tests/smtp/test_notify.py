# covers: MSSC-NOTIF-1, TS-3
"""The patient notification sender against a real smarthost (aiosmtpd) on 127.0.0.1.

The smarthost's certificates come from demo CAs built at test time with our
PKI code; DKIM keys are generated here and their DNS record is served from
memory to dkimpy, an independent verifier. Nothing is mocked.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest
from dkim.util import parse_tag_value

from certs import server_context
from mssante.logs import pseudonym
from smtp.client import OutboundMessage, OutboundRecipient
from smtp.dkim import DkimKey, dns_record, generate_key, load_key, record_name
from smtp.dkim import verify as our_verify
from smtp.notify import (
    NotificationSender,
    SmarthostError,
    SmarthostSettings,
    TlsMode,
    sign_notification,
)

from sinks import Authorities, Pem, Recorder, free_port, kinds, serving

SMARTHOST = "smarthost.test"
US = "mss.operateur.test"
NOTIF_DOMAIN = "notif.operateur.test"
NO_REPLY = f"ne-pas-repondre@{NOTIF_DOMAIN}"
PATIENT = "lea.martin@example.org"
OTHER = "paul.durand@example.org"
PASSWORD = "s3cret smarthost password"

NOTIFICATION = (
    f"From: Messagerie de sante <{NO_REPLY}>\r\n"
    f"To: <{PATIENT}>\r\n"
    "Subject: Vous avez un nouveau message\r\n"
    "Date: Fri, 01 May 2026 10:00:00 +0200\r\n"
    f"Message-ID: <n1@{NOTIF_DOMAIN}>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Un nouveau message vous attend dans votre messagerie de sant=C3=A9.\r\n"
    "Connectez-vous pour le lire.\r\n"
).encode("ascii")

# ---------------------------------------------------------------- PKI and DKIM


@dataclass(frozen=True)
class Pki:
    anchors: Path  # our test CA's root
    smarthost: Pem  # named smarthost.test and 127.0.0.1, from our CA
    rogue: Pem  # same names, from another CA
    misnamed: Pem  # from our CA, but for another host


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    cas = Authorities.create(tmp_path_factory)
    names = [SMARTHOST, "127.0.0.1"]
    org = "SMARTHOST"
    return Pki(
        anchors=cas.ca.layout.root_cert,
        smarthost=cas.server(SMARTHOST, sans=names, organization=org, name="smarthost"),
        rogue=cas.server(SMARTHOST, sans=names, organization=org, untrusted=True, name="rogue"),
        misnamed=cas.server(
            "elsewhere.test", sans=["elsewhere.test"], organization=org, name="misnamed"
        ),
    )


def tls_server(pem: Pem) -> ssl.SSLContext:
    return server_context(pem.cert, pem.key)


@pytest.fixture(scope="module")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[DkimKey, DkimKey]:
    """Two keys for the same domain (a rotation: selectors mss1 and mss2)."""
    directory = tmp_path_factory.mktemp("dkim")
    made = []
    for selector in ("mss1", "mss2"):
        path = directory / f"{selector}.key"
        generate_key(path)
        made.append(load_key(path, domain=NOTIF_DOMAIN, selector=selector))
    return made[0], made[1]


def dnsfunc(*keys: DkimKey) -> Any:
    """dkimpy's DNS hook: the TXT records of ``keys`` (dkimpy asks for FQDNs)."""
    table = {(record_name(k) + ".").encode(): dns_record(k).encode() for k in keys}

    def lookup(name: bytes, timeout: float = 5) -> bytes | None:
        return table.get(name)

    return lookup


def split_signature(content: bytes) -> tuple[dict[bytes, bytes], bytes]:
    """The topmost DKIM-Signature's tags, and what follows that field."""
    assert content.startswith(b"DKIM-Signature:")
    end = content.index(b"\r\n")
    while content[end + 2 : end + 3] in (b" ", b"\t"):  # folded continuation lines
        end = content.index(b"\r\n", end + 2)
    value = content[len(b"DKIM-Signature:") : end].replace(b"\r\n", b"")
    tags: dict[bytes, bytes] = parse_tag_value(value)
    return tags, content[end + 2 :]


def signature_tags(content: bytes) -> dict[bytes, bytes]:
    return split_signature(content)[0]


# ---------------------------------------------------------------- the smarthost


LOGIN = (b"notifier", PASSWORD.encode())  # what the smarthost accepts for AUTH


@contextlib.asynccontextmanager
async def smarthost(
    handler: Recorder,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit: ssl.SSLContext | None = None,
    auth: bool = False,
) -> AsyncIterator[int]:
    """aiosmtpd on 127.0.0.1 (random port): plain, STARTTLS or implicit TLS; yields the port."""
    async with serving(
        handler, hostname=SMARTHOST, starttls=starttls, implicit=implicit, auth=auth
    ) as port:
        yield port


# ---------------------------------------------------------------- helpers


def sender_for(
    port: int,
    *,
    tls: TlsMode = "starttls",
    ca_file: Path | None = None,
    key: DkimKey | None = None,
    username: str | None = None,
    password_file: Path | None = None,
    host: str = "127.0.0.1",
) -> NotificationSender:
    settings = SmarthostSettings(
        host=host,
        port=port,
        tls=tls,
        ca_file=ca_file,
        username=username,
        password_file=password_file,
        timeout=10.0,
    )
    return NotificationSender(settings, hostname=US, dkim_key=key)


def notification(
    *recipients: str, data: bytes = NOTIFICATION, sender: str = NO_REPLY
) -> OutboundMessage:
    return OutboundMessage(
        sender=sender,
        recipients=tuple(OutboundRecipient(r) for r in recipients or (PATIENT,)),
        data=data,
        size=len(data),
    )


# ---------------------------------------------------------------- delivery and DKIM


async def test_starttls_delivery_is_dkim_signed_and_verifies_with_dkimpy(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey]
) -> None:
    key = dkim_keys[0]
    host = Recorder()
    msg = notification()
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        outcomes = await sender_for(port, ca_file=pki.anchors, key=key).deliver(msg)
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert outcomes[0].address == PATIENT
    assert outcomes[0].remote_mta == "127.0.0.1"
    assert outcomes[0].relayed  # aiosmtpd does not speak DSN
    [got] = host.received
    assert (got.mail_from, got.rcpt_tos, got.ehlo) == (NO_REPLY, [PATIENT], US)
    assert got.tls_version in ("TLSv1.2", "TLSv1.3")
    # An independent verifier accepts the signature, and so do we.
    assert dkim.verify(got.content, dnsfunc=dnsfunc(key)) is True
    verdict = our_verify(got.content, dns=lambda name: dns_record(key).encode())
    assert [r.result for r in verdict] == ["pass"]
    tags = signature_tags(got.content)
    assert (tags[b"d"], tags[b"s"], tags[b"c"]) == (
        NOTIF_DOMAIN.encode(),
        b"mss1",
        b"relaxed/relaxed",
    )
    signed = set(tags[b"h"].replace(b" ", b"").split(b":"))
    assert {
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"mime-version",
        b"content-type",
    } <= signed
    # The signature is prepended; the notification itself is unchanged, and the
    # queued message (the caller's bytes) stays unsigned.
    assert split_signature(got.content)[1] == NOTIFICATION
    assert msg.data == NOTIFICATION


async def test_signing_at_send_time_applies_a_rotated_key_to_queued_messages(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey]
) -> None:
    old, new = dkim_keys
    host = Recorder()
    queued = notification()
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        await sender_for(port, ca_file=pki.anchors, key=old).deliver(queued)
        await sender_for(port, ca_file=pki.anchors, key=new).deliver(queued)
    first, second = (r.content for r in host.received)
    assert (signature_tags(first)[b"s"], signature_tags(second)[b"s"]) == (b"mss1", b"mss2")
    assert dkim.verify(second, dnsfunc=dnsfunc(new)) is True
    assert dkim.verify(second, dnsfunc=dnsfunc(old)) is False  # not the old key's signature


def test_sign_notification_prepends_one_signature(dkim_keys: tuple[DkimKey, DkimKey]) -> None:
    key = dkim_keys[0]
    signed = sign_notification(NOTIFICATION, key)
    assert signed.endswith(NOTIFICATION)
    assert signed.count(b"DKIM-Signature:") == 1
    assert dkim.verify(signed, dnsfunc=dnsfunc(key)) is True


async def test_null_sender_is_sent_as_the_empty_reverse_path(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey]
) -> None:
    host = Recorder()
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        sender = sender_for(port, ca_file=pki.anchors, key=dkim_keys[0])
        outcomes = await sender.deliver(notification(sender=""))
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert host.mails == ["<>"]  # aiosmtpd's spelling of the null reverse-path


async def test_without_a_key_the_notification_goes_unsigned(pki: Pki) -> None:
    host = Recorder()
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        outcomes = await sender_for(port, ca_file=pki.anchors).deliver(notification())
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert host.received[0].content == NOTIFICATION


async def test_message_that_cannot_be_signed_is_permanent_and_not_sent(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey]
) -> None:
    host = Recorder()
    no_from = b"To: <lea.martin@example.org>\r\nSubject: x\r\n\r\nbody\r\n"
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        sender = sender_for(port, ca_file=pki.anchors, key=dkim_keys[0])
        outcomes = await sender.deliver(notification(data=no_from))
    assert kinds(outcomes) == [("permanent", 0, "5.6.0")]
    assert host.mails == []


async def test_no_recipients_means_no_work(pki: Pki) -> None:
    empty = OutboundMessage(sender=NO_REPLY, recipients=(), data=NOTIFICATION, size=1)
    assert await sender_for(free_port(), ca_file=pki.anchors).deliver(empty) == []


# ---------------------------------------------------------------- reply mapping


async def test_per_recipient_replies_map_to_outcomes(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey]
) -> None:
    gone, busy = "gone@example.org", "busy@example.org"
    host = Recorder(
        rcpt_replies={
            gone: "550 5.1.1 No such user",
            busy: "450 4.2.1 Mailbox busy",
        }
    )
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        sender = sender_for(port, ca_file=pki.anchors, key=dkim_keys[0])
        outcomes = await sender.deliver(notification(PATIENT, gone, busy, "bad address@x.org"))
    assert [o.address for o in outcomes] == [PATIENT, gone, busy, "bad address@x.org"]
    assert kinds(outcomes) == [
        ("delivered", 250, "2.0.0"),
        ("permanent", 550, "5.1.1"),
        ("temporary", 450, "4.2.1"),
        ("permanent", 0, "5.1.3"),  # never put on the wire
    ]
    assert outcomes[1].text == "5.1.1 No such user"
    assert host.received[0].rcpt_tos == [PATIENT]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("451 4.3.0 Try again later", ("temporary", 451, "4.3.0")),
        ("554 5.7.1 Rejected as spam", ("permanent", 554, "5.7.1")),
        ("552 Too much mail", ("permanent", 552, "5.0.0")),
    ],
)
async def test_data_reply_applies_to_every_accepted_recipient(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey], reply: str, expected: tuple[str, int, str]
) -> None:
    host = Recorder(data_reply=reply)
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        sender = sender_for(port, ca_file=pki.anchors, key=dkim_keys[0])
        outcomes = await sender.deliver(notification(PATIENT, OTHER))
    assert kinds(outcomes) == [expected, expected]


async def test_no_recipient_accepted_sends_no_data(pki: Pki) -> None:
    host = Recorder(rcpt_replies={PATIENT: "550 5.1.1 No such user"})
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        outcomes = await sender_for(port, ca_file=pki.anchors).deliver(notification())
    assert kinds(outcomes) == [("permanent", 550, "5.1.1")]
    assert host.received == []


# ---------------------------------------------------------------- transport security


async def test_smarthost_without_starttls_gets_nothing(pki: Pki) -> None:
    host = Recorder()
    async with smarthost(host) as port:
        outcomes = await sender_for(port, ca_file=pki.anchors).deliver(notification(PATIENT, OTHER))
    assert kinds(outcomes) == [("temporary", 0, "4.7.4"), ("temporary", 0, "4.7.4")]
    assert "plaintext" in outcomes[0].text
    assert host.mails == []
    assert host.received == []


@pytest.mark.parametrize(
    "certificate",
    [
        pytest.param("rogue", id="from-another-ca"),
        pytest.param("misnamed", id="for-another-name"),
    ],
)
async def test_smarthost_certificate_is_not_trusted(pki: Pki, certificate: str) -> None:
    host = Recorder()
    async with smarthost(host, starttls=tls_server(getattr(pki, certificate))) as port:
        outcomes = await sender_for(port, ca_file=pki.anchors).deliver(notification())
    assert kinds(outcomes) == [("temporary", 0, "4.7.5")]
    assert "not trusted" in outcomes[0].text
    assert host.mails == []


async def test_system_trust_store_does_not_trust_a_private_ca(pki: Pki) -> None:
    host = Recorder()
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        outcomes = await sender_for(port, ca_file=None).deliver(notification())
    assert kinds(outcomes) == [("temporary", 0, "4.7.5")]
    assert host.mails == []


async def test_implicit_tls_delivers(pki: Pki, dkim_keys: tuple[DkimKey, DkimKey]) -> None:
    host = Recorder()
    async with smarthost(host, implicit=tls_server(pki.smarthost)) as port:
        sender = sender_for(port, tls="implicit", ca_file=pki.anchors, key=dkim_keys[0])
        outcomes = await sender.deliver(notification())
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert host.received[0].tls_version in ("TLSv1.2", "TLSv1.3")
    assert dkim.verify(host.received[0].content, dnsfunc=dnsfunc(dkim_keys[0])) is True


async def test_implicit_tls_with_an_untrusted_certificate_is_temporary(pki: Pki) -> None:
    host = Recorder()
    async with smarthost(host, implicit=tls_server(pki.rogue)) as port:
        sender = sender_for(port, tls="implicit", ca_file=pki.anchors)
        outcomes = await sender.deliver(notification())
    assert kinds(outcomes) == [("temporary", 0, "4.7.5")]
    assert host.mails == []


async def test_plain_mode_works_against_a_local_sink(dkim_keys: tuple[DkimKey, DkimKey]) -> None:
    host = Recorder()
    async with smarthost(host) as port:
        outcomes = await sender_for(port, tls="none", key=dkim_keys[0]).deliver(notification())
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert host.received[0].tls_version is None
    assert dkim.verify(host.received[0].content, dnsfunc=dnsfunc(dkim_keys[0])) is True


async def test_connection_refused_is_temporary(pki: Pki) -> None:
    outcomes = await sender_for(free_port(), ca_file=pki.anchors).deliver(
        notification(PATIENT, OTHER)
    )
    assert kinds(outcomes) == [("temporary", 0, "4.4.1"), ("temporary", 0, "4.4.1")]


async def test_unreadable_ca_file_is_a_local_configuration_error(tmp_path: Path) -> None:
    outcomes = await sender_for(free_port(), ca_file=tmp_path / "missing.pem").deliver(
        notification()
    )
    assert kinds(outcomes) == [("temporary", 0, "4.3.5")]


# ---------------------------------------------------------------- AUTH


async def test_auth_with_a_password_file(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey], tmp_path: Path
) -> None:
    secret = tmp_path / "smarthost.password"
    secret.write_text(PASSWORD + "\n")  # stripped when read
    host = Recorder(credentials=LOGIN)
    async with smarthost(host, starttls=tls_server(pki.smarthost), auth=True) as port:
        sender = sender_for(
            port, ca_file=pki.anchors, key=dkim_keys[0], username="notifier", password_file=secret
        )
        outcomes = await sender.deliver(notification())
        # Read at each delivery: a rotated secret applies without a restart.
        secret.write_text("rotated\n")
        rotated = await sender.deliver(notification())
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert host.received[0].login == b"notifier"
    assert host.logins[0] == (b"notifier", PASSWORD.encode())
    assert host.logins[-1] == (b"notifier", b"rotated")
    assert kinds(rotated) == [("temporary", 0, "4.7.8")]  # credentials are ours to fix


async def test_auth_refused_is_temporary_and_sends_nothing(pki: Pki, tmp_path: Path) -> None:
    secret = tmp_path / "smarthost.password"
    secret.write_text("wrong")
    host = Recorder(credentials=LOGIN)
    async with smarthost(host, starttls=tls_server(pki.smarthost), auth=True) as port:
        sender = sender_for(port, ca_file=pki.anchors, username="notifier", password_file=secret)
        outcomes = await sender.deliver(notification())
    assert kinds(outcomes) == [("temporary", 0, "4.7.8")]
    assert "AUTH refused (535)" in outcomes[0].text
    assert host.mails == []


async def test_unreadable_password_file_is_a_local_configuration_error(
    pki: Pki, tmp_path: Path
) -> None:
    host = Recorder(credentials=LOGIN)
    async with smarthost(host, starttls=tls_server(pki.smarthost), auth=True) as port:
        sender = sender_for(
            port, ca_file=pki.anchors, username="notifier", password_file=tmp_path / "missing"
        )
        outcomes = await sender.deliver(notification())
    assert kinds(outcomes) == [("temporary", 0, "4.3.5")]
    assert host.logins == []


def test_settings_refuse_what_would_leak_or_cannot_work(tmp_path: Path) -> None:
    secret = tmp_path / "p"
    with pytest.raises(SmarthostError, match="in clear"):
        SmarthostSettings("127.0.0.1", 25, tls="none", username="u", password_file=secret)
    with pytest.raises(SmarthostError, match="go together"):
        SmarthostSettings("smtp.example.net", 587, username="u")
    with pytest.raises(SmarthostError, match="port"):
        SmarthostSettings("smtp.example.net", 0)
    with pytest.raises(SmarthostError, match="tls"):
        SmarthostSettings("smtp.example.net", 587, tls="ssl")  # type: ignore[arg-type]
    with pytest.raises(SmarthostError, match="host"):
        SmarthostSettings("smtp.example.net\r\nRCPT", 587)


# ---------------------------------------------------------------- logs


async def test_logs_name_the_smarthost_never_the_patient_or_the_content(
    pki: Pki, dkim_keys: tuple[DkimKey, DkimKey], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mssante.smtp.notify")
    host = Recorder(rcpt_replies={OTHER: f"550 5.1.1 <{OTHER}> unknown"})
    async with smarthost(host, starttls=tls_server(pki.smarthost)) as port:
        sender = sender_for(port, ca_file=pki.anchors, key=dkim_keys[0])
        await sender.deliver(notification(PATIENT, OTHER))
    async with smarthost(Recorder()) as port:  # a failure too: no STARTTLS
        await sender_for(port, ca_file=pki.anchors).deliver(notification(PATIENT))
    records = [r for r in caplog.records if r.name == "mssante.smtp.notify"]
    dumped = " ".join(f"{r.getMessage()} {getattr(r, 'fields', {})}" for r in records)
    for secret in (PATIENT, OTHER, "lea.martin", "nouveau message", "unknown"):
        assert secret not in dumped
    assert pseudonym(PATIENT) in dumped and pseudonym(OTHER) in dumped
    events = [r.getMessage() for r in records]
    assert "notification done" in events and "notification not sent" in events
    done = next(r for r in records if r.getMessage() == "notification done")
    assert done.fields["host"] == "127.0.0.1"  # type: ignore[attr-defined]
