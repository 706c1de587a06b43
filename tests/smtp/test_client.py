# covers: TS-1, TS-2, TS-3, TS-6
"""The delivery client against real peers over real mutual TLS on 127.0.0.1.

Peers are aiosmtpd (a third-party server, for the byte-exact and
per-recipient cases) and a small scripted server for what aiosmtpd does not
do (DSN, a greeting refusal, a peer that drops the line after the final dot).
The PKI is built at test time; nothing is mocked but DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
from cryptography import x509

from certs import server_context
from mssante.logs import pseudonym
from smtp.client import (
    DeliveryClient,
    OutboundMessage,
    OutboundRecipient,
    Timeouts,
)
from smtp.resolve import Target

from sinks import Authorities, Pem, Recorder, common_name, free_port, kinds, serving

PEER_NAME = "mx.peer.test"
US_NAME = "mx.us.test"
DOMAIN = "peer.test"
ALICE = "alice@peer.test"
BOB = "bob@peer.test"

# ---------------------------------------------------------------- PKI


@dataclass(frozen=True)
class Pki:
    anchors: Path
    crls: tuple[Path, ...]
    us: Pem
    peer: Pem
    other_anchors: Path
    other_crls: tuple[Path, ...]
    rogue_peer: Pem  # a valid server certificate from another CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    cas = Authorities.create(tmp_path_factory)

    def issue(cn: str, *, untrusted: bool = False) -> Pem:
        sans = [cn, "localhost", "127.0.0.1"]
        return cas.server(cn, sans=sans, organization="CH DEMO", untrusted=untrusted)

    return Pki(
        anchors=cas.ca.layout.root_cert,
        crls=(cas.ca.layout.crl, cas.ca.layout.root_crl),
        us=issue(US_NAME),
        peer=issue(PEER_NAME),
        other_anchors=cas.other.layout.root_cert,
        other_crls=(cas.other.layout.crl, cas.other.layout.root_crl),
        rogue_peer=issue("rogue." + PEER_NAME, untrusted=True),
    )


def peer_context(
    pki: Pki, *, pem: Pem | None = None, anchors: Path | None = None
) -> ssl.SSLContext:
    """A trust-space MX: our CA's anchors and CRLs, client certificate required."""
    pem = pem or pki.peer
    return server_context(
        pem.cert,
        pem.key,
        client_auth="required",
        anchors_file=anchors or pki.anchors,
        crl_files=pki.crls if anchors is None else pki.other_crls,
    )


# ---------------------------------------------------------------- aiosmtpd peer


@dataclass
class Peer:
    port: int
    handler: Any

    def target(self, tls_name: str | None = None) -> Target:
        return Target("127.0.0.1", self.port, tls_name)


@contextlib.asynccontextmanager
async def aiosmtpd_peer(
    handler: Recorder, tls_context: ssl.SSLContext | None
) -> AsyncIterator[Peer]:
    async with serving(handler, hostname=PEER_NAME, starttls=tls_context, utf8=True) as port:
        yield Peer(port, handler)


@pytest.fixture
async def peer(pki: Pki) -> AsyncIterator[Peer]:
    async with aiosmtpd_peer(Recorder(), peer_context(pki)) as running:
        yield running


# ---------------------------------------------------------------- scripted peer


@dataclass
class Script:
    """A hand-written peer for what aiosmtpd cannot be made to say."""

    tls_context: ssl.SSLContext | None
    greeting: str = "220 scripted.peer.test ESMTP"
    extensions: tuple[str, ...] = ("STARTTLS", "8BITMIME", "ENHANCEDSTATUSCODES", "SIZE 10000000")
    replies: dict[str, str] = field(default_factory=dict)
    drop_after_data: bool = False
    commands: list[tuple[bool, str]] = field(default_factory=list)  # (over TLS, line)
    data: list[bytes] = field(default_factory=list)

    def sent(self, verb: str) -> list[str]:
        return [line for _, line in self.commands if line.upper().startswith(verb)]

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False

        async def say(*lines: str) -> None:
            writer.write("".join(line + "\r\n" for line in lines).encode())
            await writer.drain()

        try:
            await say(self.greeting)
            if not self.greeting.startswith("220"):
                return
            while line := await reader.readline():
                command = line.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append((tls, command))
                verb = command.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    names = [e for e in self.extensions if not (tls and e == "STARTTLS")]
                    lines = ["scripted.peer.test", *names]
                    await say(*[f"250-{x}" for x in lines[:-1]], f"250 {lines[-1]}")
                elif verb == "STARTTLS" and self.tls_context is not None:
                    await say("220 2.0.0 go ahead")
                    await writer.start_tls(self.tls_context)
                    tls = True
                elif verb == "DATA":
                    await say(self.replies.get("DATA", "354 go on"))
                    body = bytearray()
                    while (chunk := await reader.readline()) not in (b".\r\n", b""):
                        body += chunk
                    self.data.append(bytes(body))
                    if self.drop_after_data:
                        return
                    await say(self.replies.get("DOT", "250 2.0.0 queued"))
                elif verb == "QUIT":
                    await say("221 2.0.0 bye")
                    return
                else:
                    await say(self.replies.get(verb, "250 2.0.0 Ok"))
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def stream_server(handler: Handler) -> AsyncIterator[int]:
    """A raw asyncio server on 127.0.0.1 whose sessions are over when it is."""
    sessions: set[asyncio.Task[Any]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        sessions.add(task)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
        # Python 3.11 leaves accepted connections alone: end them before the loop does.
        for task in sessions:
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*sessions, return_exceptions=True), 10)


@contextlib.asynccontextmanager
async def scripted_peer(script: Script) -> AsyncIterator[Peer]:
    async with stream_server(script.session) as port:
        yield Peer(port, script)


# ---------------------------------------------------------------- client helpers


@dataclass
class AllowLog:
    """peer_allowed that records its calls and refuses when told to."""

    refuse: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, domain: str, cert: x509.Certificate) -> str | None:
        self.calls.append((domain, common_name(cert)))
        return self.refuse


def make_client(
    pki: Pki,
    *,
    allowed: Callable[[str, x509.Certificate], str | None] | None = None,
    transport: Callable[[str], tuple[str, int] | None] = lambda _domain: None,
    resolver: Any = None,
    timeouts: Timeouts | None = None,
    cert: Pem | None = None,
) -> DeliveryClient:
    us = cert or pki.us
    return DeliveryClient(
        hostname=US_NAME,
        cert_file=us.cert,
        key_file=us.key,
        anchors_file=pki.anchors,
        crl_files=pki.crls,
        peer_allowed=allowed or AllowLog(),
        transport=transport,
        resolver=resolver,
        timeouts=timeouts,
    )


def message(
    *recipients: str | OutboundRecipient,
    data: bytes = b"Subject: test\r\n\r\nhello\r\n",
    sender: str = "doctor@us.test",
    **kwargs: Any,
) -> OutboundMessage:
    rcpts = tuple(
        r if isinstance(r, OutboundRecipient) else OutboundRecipient(r) for r in recipients
    )
    return OutboundMessage(
        sender=sender,
        recipients=rcpts or (OutboundRecipient(ALICE),),
        data=data,
        size=len(data),
        **kwargs,
    )


# ---------------------------------------------------------------- happy path


BODY = (
    b"From: Dr A <doctor@us.test>\r\n"
    b"To: <alice@peer.test>\r\n"
    b"Subject: =?utf-8?q?compte_rendu?=\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b".a line starting with a dot\r\n"
    b".\r\n"
    b"..two dots\r\n"
    b"r\xc3\xa9sultat : \xc3\xa9chographie normale \xe2\x9c\x93\r\n"
    b"trailing spaces   \r\n"
    b"\r\n"
    b"last line\r\n"
)


async def test_happy_path_relays_the_bytes_exactly_over_mutual_tls(
    pki: Pki, peer: Peer, caplog: pytest.LogCaptureFixture
) -> None:
    allowed = AllowLog()
    client = make_client(pki, allowed=allowed)
    caplog.set_level(logging.INFO, logger="mssante.smtp.client")
    msg = message(
        OutboundRecipient(ALICE, notify="SUCCESS,FAILURE", orcpt="rfc822;alice@peer.test"),
        OutboundRecipient(BOB),
        data=BODY,
        eight_bit=True,
        envid="QUEUE+2D42",
        ret="HDRS",
    )

    outcomes = await client.deliver_to(DOMAIN, [peer.target(PEER_NAME)], msg)

    assert kinds(outcomes) == [("delivered", 250, "2.0.0")] * 2
    assert [o.address for o in outcomes] == [ALICE, BOB]
    assert outcomes[0].remote_mta == PEER_NAME
    assert outcomes[0].text == "2.0.0 Ok: queued"
    # aiosmtpd has no DSN extension: the parameters are not relayed and the
    # queue must report "relayed" for NOTIFY=SUCCESS.
    assert all(o.relayed for o in outcomes)
    (got,) = peer.handler.received
    assert got.content == BODY
    assert got.mail_from == "doctor@us.test"
    assert got.rcpt_tos == [ALICE, BOB]
    assert got.rcpt_options == []
    assert f"SIZE={len(BODY)}" in got.mail_options
    assert "BODY=8BITMIME" in got.mail_options
    assert not any(o.startswith(("RET=", "ENVID=")) for o in got.mail_options)
    assert got.client_cn == US_NAME  # our server certificate served as the client certificate
    assert allowed.calls == [(DOMAIN, PEER_NAME)]
    # Logs: target, TLS, outcomes; recipients only as pseudonyms, never content.
    logged = "\n".join(
        f"{r.getMessage()} {getattr(r, 'fields', {})}"
        for r in caplog.records
        if r.name == "mssante.smtp.client"
    )
    assert "tls established" in logged
    assert "'tls_version': 'TLSv1.3'" in logged or "'tls_version': 'TLSv1.2'" in logged
    assert f"CN={PEER_NAME}" in logged
    assert pseudonym(ALICE) in logged and pseudonym(BOB) in logged
    assert "'250 2.0.0': 2" in logged
    assert ALICE not in logged and BOB not in logged
    assert "chographie" not in logged and "compte_rendu" not in logged


async def test_message_without_final_crlf_gets_one_and_is_otherwise_unchanged(
    pki: Pki, peer: Peer
) -> None:
    data = b"Subject: x\r\n\r\nno final line break"
    outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], message(data=data))
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert peer.handler.received[0].content == data + b"\r\n"


async def test_smtputf8_address_is_sent_with_the_smtputf8_parameter(pki: Pki, peer: Peer) -> None:
    rcpt = "élise@peer.test"
    outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], message(rcpt))
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    (got,) = peer.handler.received
    assert got.rcpt_tos == [rcpt]
    assert "SMTPUTF8" in got.mail_options


# ---------------------------------------------------------------- per-recipient replies


async def test_per_recipient_replies_map_to_outcomes(pki: Pki, peer: Peer) -> None:
    peer.handler.rcpt_replies[ALICE] = "550 5.1.1 <alice@peer.test>: no such mailbox"
    peer.handler.rcpt_replies["carol@peer.test"] = "452 4.2.2 mailbox full"
    msg = message(ALICE, BOB, "carol@peer.test")

    outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], msg)

    assert kinds(outcomes) == [
        ("permanent", 550, "5.1.1"),
        ("delivered", 250, "2.0.0"),
        ("temporary", 452, "4.2.2"),
    ]
    assert outcomes[0].text == "5.1.1 <alice@peer.test>: no such mailbox"
    assert peer.handler.received[0].rcpt_tos == [BOB]


async def test_no_recipient_accepted_sends_no_data(pki: Pki, peer: Peer) -> None:
    peer.handler.rcpt_replies[ALICE] = "550 5.1.1 unknown"
    outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], message(ALICE))
    assert kinds(outcomes) == [("permanent", 550, "5.1.1")]
    assert peer.handler.mails == ["doctor@us.test"]
    assert peer.handler.received == []


async def test_data_refused_with_451_is_temporary_for_every_accepted_recipient(
    pki: Pki, peer: Peer
) -> None:
    peer.handler.rcpt_replies[BOB] = "550 5.1.1 unknown"
    peer.handler.data_reply = "451 4.3.0 try again later"
    outcomes = await make_client(pki).deliver_to(
        DOMAIN, [peer.target()], message(ALICE, BOB, "carol@peer.test")
    )
    assert kinds(outcomes) == [
        ("temporary", 451, "4.3.0"),
        ("permanent", 550, "5.1.1"),
        ("temporary", 451, "4.3.0"),
    ]


async def test_data_refused_with_554_is_permanent(pki: Pki, peer: Peer) -> None:
    peer.handler.data_reply = "554 5.6.0 content refused"
    outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], message())
    assert kinds(outcomes) == [("permanent", 554, "5.6.0")]


async def test_unusable_recipient_address_is_never_put_on_the_wire(pki: Pki, peer: Peer) -> None:
    evil = "x@peer.test> NOTIFY=NEVER"
    outcomes = await make_client(pki).deliver_to(
        DOMAIN, [peer.target()], message(evil, ALICE, "a\r\nRSET@peer.test")
    )
    assert kinds(outcomes) == [
        ("permanent", 0, "5.1.3"),
        ("delivered", 250, "2.0.0"),
        ("permanent", 0, "5.1.3"),
    ]
    assert peer.handler.received[0].rcpt_tos == [ALICE]


# ---------------------------------------------------------------- targets


async def test_connection_refused_moves_to_the_next_target(pki: Pki, peer: Peer) -> None:
    dead = Target("127.0.0.1", free_port(), None)
    outcomes = await make_client(pki).deliver_to(DOMAIN, [dead, peer.target()], message())
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert len(peer.handler.received) == 1


async def test_all_targets_failing_is_temporary_no_answer(pki: Pki) -> None:
    targets = [Target("127.0.0.1", free_port(), None), Target("127.0.0.1", free_port(), None)]
    outcomes = await make_client(pki).deliver_to(DOMAIN, targets, message(ALICE, BOB))
    assert kinds(outcomes) == [("temporary", 0, "4.4.1")] * 2
    assert outcomes[0].remote_mta is None
    assert "cannot connect" in outcomes[0].text


async def test_no_targets_at_all_is_temporary(pki: Pki) -> None:
    outcomes = await make_client(pki).deliver_to(DOMAIN, [], message())
    assert kinds(outcomes) == [("temporary", 0, "4.4.3")]


async def test_greeting_4xx_moves_to_the_next_target(pki: Pki, peer: Peer) -> None:
    busy = Script(peer_context(pki), greeting="421 4.3.2 too busy")
    async with scripted_peer(busy) as first:
        outcomes = await make_client(pki).deliver_to(
            DOMAIN, [first.target(), peer.target()], message()
        )
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]


async def test_greeting_4xx_everywhere_reports_the_peer_reply(pki: Pki) -> None:
    busy = Script(peer_context(pki), greeting="421 4.3.2 too busy")
    async with scripted_peer(busy) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message())
    assert kinds(outcomes) == [("temporary", 421, "4.3.2")]
    assert outcomes[0].text == "4.3.2 too busy"


async def test_greeting_timeout_is_no_answer(pki: Pki) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog) and never speaks
    with silent:
        target = Target("127.0.0.1", silent.getsockname()[1], None)
        client = make_client(pki, timeouts=Timeouts(connect=0.2))
        outcomes = await client.deliver_to(DOMAIN, [target], message())
    assert kinds(outcomes) == [("temporary", 0, "4.4.1")]
    assert "timeout" in outcomes[0].text


async def test_cancellation_while_waiting_for_a_reply_propagates(pki: Pki) -> None:
    mail_seen = asyncio.Event()

    async def hang_at_mail(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tls = False
        writer.write(b"220 hang.peer.test\r\n")
        while line := await reader.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"EHLO":
                writer.write(
                    b"250-hang.peer.test\r\n250 STARTTLS\r\n" if not tls else b"250 ok\r\n"
                )
            elif verb == b"STARTTLS":
                writer.write(b"220 go\r\n")
                await writer.drain()
                await writer.start_tls(peer_context(pki))
                tls = True
            elif verb == b"MAIL":
                mail_seen.set()  # and never answer
            await writer.drain()
        writer.close()

    async with stream_server(hang_at_mail) as port:
        target = Target("127.0.0.1", port, None)
        task = asyncio.create_task(make_client(pki).deliver_to(DOMAIN, [target], message()))
        await mail_seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_cancellation_as_the_connection_opens_is_not_lost(pki: Pki) -> None:
    # On Python 3.11, aiosmtplib's wait_for can swallow this cancellation; the
    # client notices it between steps (here after the short greeting timeout).
    accepted = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()
        writer.close()

    async with stream_server(silent) as port:
        target = Target("127.0.0.1", port, None)
        client = make_client(pki, timeouts=Timeouts(connect=0.5))
        task = asyncio.create_task(client.deliver_to(DOMAIN, [target, target], message()))
        await accepted.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------- closed trust space


async def test_peer_without_starttls_never_gets_the_envelope(pki: Pki) -> None:
    async with aiosmtpd_peer(Recorder(), None) as plain:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [plain.target()], message())
        assert plain.handler.mails == []
        assert plain.handler.received == []
    assert kinds(outcomes) == [("temporary", 0, "4.7.4")]
    assert "plaintext" in outcomes[0].text


async def test_starttls_refused_never_sends_plaintext(pki: Pki) -> None:
    script = Script(None)  # advertises STARTTLS, then answers 454
    script.replies["STARTTLS"] = "454 4.7.0 TLS not available"
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message())
    assert kinds(outcomes) == [("temporary", 454, "4.7.0")]
    assert script.sent("MAIL") == []


async def test_furthest_failure_is_reported_when_every_target_fails(pki: Pki) -> None:
    async with aiosmtpd_peer(Recorder(), None) as plain:
        targets = [plain.target(), Target("127.0.0.1", free_port(), None)]
        outcomes = await make_client(pki).deliver_to(DOMAIN, targets, message())
    assert kinds(outcomes) == [("temporary", 0, "4.7.4")]


async def test_peer_certificate_from_another_ca_is_refused_before_mail(pki: Pki) -> None:
    rogue = peer_context(pki, pem=pki.rogue_peer)
    async with aiosmtpd_peer(Recorder(), rogue) as peer:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], message())
        assert peer.handler.mails == []
    assert kinds(outcomes) == [("temporary", 0, "4.7.5")]
    assert "certificate" in outcomes[0].text


async def test_peer_name_mismatch_is_refused_when_a_tls_name_is_expected(
    pki: Pki, peer: Peer
) -> None:
    outcomes = await make_client(pki).deliver_to(
        DOMAIN, [peer.target("mx.elsewhere.test")], message()
    )
    assert kinds(outcomes) == [("temporary", 0, "4.7.5")]
    assert peer.handler.mails == []


async def test_peer_refusing_our_certificate_is_a_tls_failure(pki: Pki) -> None:
    # The peer only trusts the other CA, so our client certificate is refused.
    picky = peer_context(pki, anchors=pki.other_anchors)
    async with aiosmtpd_peer(Recorder(), picky) as peer:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [peer.target()], message())
        assert peer.handler.mails == []
    assert kinds(outcomes) == [("temporary", 0, "4.7.5")]


async def test_peer_dn_not_paired_with_the_domain_is_temporary_and_sends_nothing(
    pki: Pki, peer: Peer
) -> None:
    allowed = AllowLog(refuse="DN not listed for peer.test")
    outcomes = await make_client(pki, allowed=allowed).deliver_to(
        DOMAIN, [peer.target()], message(ALICE, BOB)
    )
    assert kinds(outcomes) == [("temporary", 0, "4.7.1")] * 2
    assert "not paired with peer.test" in outcomes[0].text
    assert "DN not listed" in outcomes[0].text
    assert outcomes[0].remote_mta == "127.0.0.1"
    assert allowed.calls == [(DOMAIN, PEER_NAME)]
    assert peer.handler.mails == []


async def test_whitelist_check_crashing_is_temporary_and_final(pki: Pki, peer: Peer) -> None:
    def broken(domain: str, cert: x509.Certificate) -> str | None:
        raise RuntimeError("database is gone")

    other = Recorder()
    async with aiosmtpd_peer(other, peer_context(pki)) as second:
        outcomes = await make_client(pki, allowed=broken).deliver_to(
            DOMAIN, [peer.target(), second.target()], message()
        )
        assert other.mails == []
    assert kinds(outcomes) == [("temporary", 0, "4.3.0")]


async def test_unreadable_tls_material_is_a_local_configuration_error(
    pki: Pki, peer: Peer, tmp_path: Path
) -> None:
    missing = Pem(tmp_path / "nope.pem", tmp_path / "nope.key")
    outcomes = await make_client(pki, cert=missing).deliver_to(DOMAIN, [peer.target()], message())
    assert kinds(outcomes) == [("temporary", 0, "4.3.5")]
    assert peer.handler.mails == []


# ---------------------------------------------------------------- extensions (scripted peer)


async def test_dsn_parameters_are_relayed_when_the_peer_advertises_dsn(pki: Pki) -> None:
    script = Script(peer_context(pki), extensions=("STARTTLS", "DSN", "8BITMIME", "SIZE 0"))
    msg = message(
        OutboundRecipient(ALICE, notify="success,failure", orcpt="rfc822;alice+2Bx@peer.test"),
        OutboundRecipient(BOB, notify="NEVER"),
        envid="QUEUE+2D42",
        ret="FULL",
    )
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], msg)
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")] * 2
    assert not any(o.relayed for o in outcomes)
    assert script.sent("MAIL") == [
        f"MAIL FROM:<doctor@us.test> SIZE={msg.size} RET=FULL ENVID=QUEUE+2D42"
    ]
    assert script.sent("RCPT") == [
        "RCPT TO:<alice@peer.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;alice+2Bx@peer.test",
        "RCPT TO:<bob@peer.test> NOTIFY=NEVER",
    ]
    # Nothing was said before TLS but EHLO and STARTTLS.
    assert [line for tls, line in script.commands if not tls] == ["EHLO mx.us.test", "STARTTLS"]


async def test_dsn_parameters_are_not_sent_when_not_advertised(pki: Pki) -> None:
    script = Script(peer_context(pki), extensions=("STARTTLS",))
    msg = message(OutboundRecipient(ALICE, notify="SUCCESS"), envid="X", ret="HDRS", eight_bit=True)
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], msg)
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert outcomes[0].relayed
    # No SIZE, no 8BITMIME advertised: no parameters at all (the 8-bit body is still sent).
    assert script.sent("MAIL") == ["MAIL FROM:<doctor@us.test>"]
    assert script.sent("RCPT") == ["RCPT TO:<alice@peer.test>"]


async def test_malformed_dsn_values_are_dropped_not_sent(pki: Pki) -> None:
    script = Script(peer_context(pki), extensions=("STARTTLS", "DSN"))
    msg = message(
        OutboundRecipient(ALICE, notify="SUCCESS NEVER", orcpt="rfc822;a b@peer.test"),
        envid="has=equals",
        ret="ALL",
    )
    async with scripted_peer(script) as only:
        await make_client(pki).deliver_to(DOMAIN, [only.target()], msg)
    assert script.sent("MAIL") == ["MAIL FROM:<doctor@us.test>"]
    assert script.sent("RCPT") == ["RCPT TO:<alice@peer.test>"]


async def test_null_sender_is_sent_as_empty_path(pki: Pki) -> None:
    script = Script(peer_context(pki))
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message(sender=""))
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert script.sent("MAIL")[0].startswith("MAIL FROM:<> ")


async def test_smtputf8_needed_but_not_offered_is_permanent(pki: Pki) -> None:
    script = Script(peer_context(pki))
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(
            DOMAIN, [only.target()], message("élise@peer.test")
        )
    assert kinds(outcomes) == [("permanent", 0, "5.6.7")]
    assert script.sent("MAIL") == []


async def test_message_larger_than_peer_size_is_permanent(pki: Pki) -> None:
    script = Script(peer_context(pki), extensions=("STARTTLS", "SIZE 10"))
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message())
    assert kinds(outcomes) == [("permanent", 0, "5.3.4")]
    assert script.sent("MAIL") == []


async def test_mail_refused_applies_to_every_recipient(pki: Pki) -> None:
    script = Script(peer_context(pki))
    script.replies["MAIL"] = "451 4.7.1 greylisted"
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message(ALICE, BOB))
    assert kinds(outcomes) == [("temporary", 451, "4.7.1")] * 2
    assert script.sent("RCPT") == []


async def test_status_is_synthesised_when_missing_or_inconsistent(pki: Pki) -> None:
    script = Script(peer_context(pki))
    script.replies["RCPT"] = "550 no such user"
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message())
    assert kinds(outcomes) == [("permanent", 550, "5.0.0")]

    script = Script(peer_context(pki))
    script.replies["RCPT"] = "450 5.1.1 class does not match"
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message())
    assert kinds(outcomes) == [("temporary", 450, "4.0.0")]


async def test_connection_lost_after_the_final_dot_is_temporary(pki: Pki) -> None:
    script = Script(peer_context(pki), drop_after_data=True)
    async with scripted_peer(script) as only:
        outcomes = await make_client(pki).deliver_to(DOMAIN, [only.target()], message(ALICE, BOB))
    assert kinds(outcomes) == [("temporary", 0, "4.4.2")] * 2
    assert script.data == [b"Subject: test\r\n\r\nhello\r\n"]


# ---------------------------------------------------------------- deliver() with resolution


async def test_deliver_uses_the_transport_map(pki: Pki, peer: Peer) -> None:
    asked: list[str] = []

    def transport(domain: str) -> tuple[str, int] | None:
        asked.append(domain)
        return ("127.0.0.1", peer.port)

    outcomes = await make_client(pki, transport=transport).deliver("Peer.Test", message())
    assert kinds(outcomes) == [("delivered", 250, "2.0.0")]
    assert asked == [DOMAIN]


class _Resolver:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def resolve(self, qname: str, rdtype: str) -> list[Any]:
        raise self.error


async def test_deliver_with_nxdomain_is_permanent_without_connecting(pki: Pki) -> None:
    client = make_client(pki, resolver=_Resolver(dns.resolver.NXDOMAIN()))
    outcomes = await client.deliver(DOMAIN, message(ALICE, BOB))
    assert kinds(outcomes) == [("permanent", 0, "5.1.2")] * 2


async def test_deliver_with_dns_timeout_is_temporary(pki: Pki) -> None:
    error = dns.resolver.LifetimeTimeout(timeout=5.0, errors=[])
    outcomes = await make_client(pki, resolver=_Resolver(error)).deliver(DOMAIN, message())
    assert kinds(outcomes) == [("temporary", 0, "4.4.3")]


async def test_no_recipients_means_no_work(pki: Pki) -> None:
    empty = OutboundMessage(sender="a@us.test", recipients=(), data=b"x\r\n", size=3)
    assert await make_client(pki).deliver(DOMAIN, empty) == []
