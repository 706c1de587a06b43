# covers: TS-1, TS-3, TS-6, LIM-1
"""The sans-IO SMTP server core, driven with bytes only (no sockets)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtp.protocol import (
    NEED_DATA,
    Auth,
    AuthResponse,
    DataChunk,
    DataEnd,
    Event,
    Limits,
    MailFrom,
    ProtocolError,
    RcptTo,
    Reply,
    Reset,
    ServerConnection,
    StartTls,
)

OK = Reply(250, "2.1.0", "OK")


class Driver:
    """Feeds bytes, answers events with ``decide``, records messages and replies."""

    def __init__(
        self,
        conn: ServerConnection,
        decide: Callable[[Event], Reply | None] | None = None,
    ) -> None:
        self.conn = conn
        self.decide = decide or self.default
        self.events: list[Event] = []
        self.messages: list[bytes] = []
        self._current = bytearray()
        conn.greeting()

    def default(self, event: Event) -> Reply | None:
        if isinstance(event, StartTls):
            return Reply(220, "2.0.0", "Ready to start TLS")
        if isinstance(event, DataEnd):
            if event.too_big:
                return Reply(552, "5.3.4", "too big")
            if event.bare_newline:
                return Reply(550, "5.6.0", "bare newline")
            return Reply(250, "2.0.0", "queued")
        if isinstance(event, MailFrom | RcptTo):
            return OK
        return None

    def feed(self, data: bytes) -> bytes:
        self.conn.receive(data)
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                break
            assert not isinstance(event, type(NEED_DATA))
            self.events.append(event)
            if isinstance(event, DataChunk):
                self._current += event.data
                continue
            if isinstance(event, DataEnd):
                self.messages.append(bytes(self._current))
                self._current.clear()
            reply = self.decide(event)
            if reply is not None:
                self.conn.respond(reply)
            if isinstance(event, StartTls) and reply is not None and reply.code == 220:
                self.conn.tls_established()
        return self.conn.data_to_send()


def tls_driver(**kw: object) -> Driver:
    d = Driver(ServerConnection("mx.test", tls=True, **kw))  # type: ignore[arg-type]
    d.conn.data_to_send()
    return d


def codes(out: bytes) -> list[int]:
    return [int(line[:3]) for line in out.split(b"\r\n") if line[3:4] == b" "]


def test_greeting_and_ehlo_lists_extensions() -> None:
    d = Driver(ServerConnection("mx.test"))
    assert d.conn.data_to_send().startswith(b"220 mx.test ")
    out = d.feed(b"EHLO client.test\r\n").decode()
    for ext in ["PIPELINING", "SIZE ", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN"]:
        assert ext in out
    assert "STARTTLS" in out
    assert "AUTH" not in out  # never before TLS


def test_mail_before_tls_is_refused_with_530() -> None:
    d = Driver(ServerConnection("mx.test"))
    d.conn.data_to_send()
    out = d.feed(b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\n")
    assert b"530 5.7.0 Must issue a STARTTLS command first\r\n" in out


def test_auth_advertised_only_after_tls_and_refused_before() -> None:
    conn = ServerConnection("sub.test")
    conn.auth_mechanisms = ("PLAIN", "LOGIN")
    d = Driver(conn)
    out = d.feed(b"EHLO c\r\nAUTH PLAIN AGEAYg==\r\n")
    assert b"AUTH" not in out.split(b"\r\n")[1]
    assert b"538 5.7.11" in out
    out = d.feed(b"STARTTLS\r\n")
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    out = d.feed(b"EHLO c\r\n")
    assert b"250-AUTH PLAIN LOGIN\r\n" in out or b"250 AUTH PLAIN LOGIN\r\n" in out
    assert b"STARTTLS" not in out


def test_starttls_discards_pipelined_commands() -> None:
    d = Driver(ServerConnection("mx.test"))
    d.conn.data_to_send()
    d.feed(b"EHLO c\r\n")
    out = d.feed(b"STARTTLS\r\nMAIL FROM:<evil@x.fr>\r\nRCPT TO:<a@b.fr>\r\n")
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    assert not any(isinstance(e, MailFrom) for e in d.events)
    # After TLS the session starts over: MAIL needs a new EHLO.
    out = d.feed(b"MAIL FROM:<a@b.fr>\r\n")
    assert out.startswith(b"503 5.5.1 Send EHLO first")


def transaction(body: bytes) -> bytes:
    return b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\nRCPT TO:<c@d.fr>\r\nDATA\r\n" + body


def test_pipelined_transaction_and_dot_unstuffing() -> None:
    d = tls_driver()
    out = d.feed(transaction(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"))
    assert codes(out) == [250, 250, 250, 354, 250, 221]
    assert d.messages == [b"Subject: x\r\n\r\n.leading dot\r\n"]
    assert d.conn.closing


def test_data_split_at_every_byte_boundary_is_identical() -> None:
    payload = b"A: b\r\n\r\n.\r\n".replace(b"\r\n.\r\n", b"\r\n..\r\n") + b"line\r\n.\r\n"
    whole = transaction(payload)
    reference = tls_driver()
    reference.feed(whole)
    for cut in range(1, len(whole)):
        d = tls_driver()
        d.feed(whole[:cut])
        d.feed(whole[cut:])
        assert d.messages == reference.messages, cut


@pytest.mark.parametrize(
    "smuggle",
    [
        b"\n.\n",
        b"\r.\r",
        b"\n.\r\n",
        b"\r\n.\n",
        b"\r\n.\r",
        b"\n.\r\r\n",
    ],
)
def test_smuggling_never_splits_a_message(smuggle: bytes) -> None:
    d = tls_driver()
    body = (
        b"Subject: one\r\n\r\nfirst"
        + smuggle
        + b"MAIL FROM:<spoof@x.fr>\r\nRCPT TO:<c@d.fr>\r\nDATA\r\n"
        + b"Subject: two\r\n\r\nsmuggled\r\n.\r\n"
    )
    out = d.feed(transaction(body))
    assert len(d.messages) == 1
    ends = [e for e in d.events if isinstance(e, DataEnd)]
    assert len(ends) == 1 and ends[0].bare_newline
    assert [e for e in d.events if isinstance(e, MailFrom)][-1].address == "a@b.fr"
    assert out.endswith(b"550 5.6.0 bare newline\r\n")


def test_size_cap_stops_chunks_but_reads_to_the_end() -> None:
    d = tls_driver(limits=Limits(max_message_size=100))
    out = d.feed(transaction(b"x" * 60 + b"\r\n" + b"y" * 60 + b"\r\n.\r\nNOOP\r\n"))
    end = next(e for e in d.events if isinstance(e, DataEnd))
    assert end.too_big and end.size == 124
    assert sum(len(e.data) for e in d.events if isinstance(e, DataChunk)) <= 100
    assert codes(out)[-2:] == [552, 250]  # the session is still in sync


def test_declared_size_over_cap_refused_at_mail() -> None:
    d = tls_driver(limits=Limits(max_message_size=1000))
    out = d.feed(b"EHLO c\r\nMAIL FROM:<a@b.fr> SIZE=1001\r\n")
    assert b"552 5.3.4 Message size exceeds the limit of 1000 bytes" in out


def test_long_line_in_data_is_passed_in_pieces() -> None:
    d = tls_driver(limits=Limits(data_flush=1024))
    long_line = b"z" * 10_000 + b"\r\n"
    d.feed(transaction(b""))
    d.feed(long_line[:5000])
    assert d.conn.buffered < 1100  # bounded, whatever the line length
    d.feed(long_line[5000:] + b".\r\n")
    assert d.messages == [long_line]


def test_dsn_parameters_are_parsed() -> None:
    d = tls_driver()
    d.feed(
        b"EHLO c\r\nMAIL FROM:<a@b.fr> RET=HDRS ENVID=abc+2Bd BODY=8BITMIME SIZE=10\r\n"
        b"RCPT TO:<c@d.fr> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;c+40d.fr\r\n"
    )
    mail = next(e for e in d.events if isinstance(e, MailFrom))
    rcpt = next(e for e in d.events if isinstance(e, RcptTo))
    assert (mail.ret, mail.envid, mail.body, mail.size) == ("headers", "abc+d", "8BITMIME", 10)
    assert rcpt.notify == frozenset({"SUCCESS", "FAILURE"})
    assert rcpt.orcpt == "rfc822;c+40d.fr"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (b"MAIL FROM:a@b.fr", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.fr> FOO=1", b"555 5.5.4"),
        (b"MAIL FROM:<a@b.fr> SIZE=x", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.fr> BODY=BINARYMIME", b"555 5.5.4"),
        (b"MAIL FROM:<a@b.fr> RET=ALL", b"501 5.5.4"),
        (b"MAIL FROM:<a@b.fr> SIZE=1 SIZE=2", b"501 5.5.4"),
        (b"MAIL FROM:<\xc3\xa9@b.fr>", b"553 5.6.7"),
        (b"RCPT TO:<c@d.fr>", b"503 5.5.1"),
        (b"DATA", b"503 5.5.1"),
        (b"BDAT 10 LAST", b"502 5.5.1"),
        (b"FROB", b"500 5.5.2"),
        (b"\xff\xfe", b"500 5.5.2"),
    ],
)
def test_bad_commands_get_precise_codes(command: bytes, expected: bytes) -> None:
    d = tls_driver()
    out = d.feed(b"EHLO c\r\n" + command + b"\r\n")
    assert out.split(b"\r\n")[-2].startswith(expected)


def test_notify_syntax_is_checked() -> None:
    d = tls_driver()
    out = d.feed(b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\nRCPT TO:<c@d.fr> NOTIFY=NEVER,SUCCESS\r\n")
    assert out.split(b"\r\n")[-2].startswith(b"501 5.5.4")


def test_smtputf8_addresses_need_the_parameter() -> None:
    d = tls_driver()
    out = d.feed("EHLO c\r\nMAIL FROM:<é@b.fr> SMTPUTF8\r\nRCPT TO:<ü@d.fr>\r\n".encode())
    assert codes(out)[-2:] == [250, 250]


def test_recipient_count_is_bounded() -> None:
    d = tls_driver(limits=Limits(max_recipients=2))
    out = d.feed(b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\n" + b"RCPT TO:<c@d.fr>\r\n" * 3)
    assert codes(out)[-3:] == [250, 250, 452]


def test_refused_recipient_does_not_count() -> None:
    def decide(event: Event) -> Reply | None:
        if isinstance(event, RcptTo) and event.address.startswith("no"):
            return Reply(550, "5.1.1", "No such mailbox here")
        return Driver.default(d, event)

    d = tls_driver()
    d.decide = decide
    out = d.feed(b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\nRCPT TO:<no@d.fr>\r\nDATA\r\n")
    assert codes(out)[-2:] == [550, 554]


def test_errors_are_bounded_then_421() -> None:
    d = tls_driver(limits=Limits(max_errors=3))
    out = d.feed(b"FROB\r\n" * 5)
    assert codes(out) == [500, 500, 500, 421]
    assert d.conn.closing


def test_commands_are_bounded() -> None:
    d = tls_driver(limits=Limits(max_commands=3))
    out = d.feed(b"NOOP\r\n" * 5)
    assert codes(out) == [250, 250, 250, 421]


def test_overlong_command_line_refused_once_then_in_sync() -> None:
    d = tls_driver(limits=Limits(max_command_line=100))
    out = d.feed(b"NOOP " + b"x" * 300)
    assert codes(out) == [500]
    out = d.feed(b"y" * 300 + b"\r\nNOOP\r\n")
    assert codes(out) == [250]


def test_rset_and_ehlo_reset_the_transaction() -> None:
    d = tls_driver()
    d.feed(b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\nRSET\r\nMAIL FROM:<a@b.fr>\r\nEHLO c\r\n")
    assert sum(isinstance(e, Reset) for e in d.events) == 2
    assert not d.conn.in_transaction


def test_auth_exchange_with_challenge_and_cancel() -> None:
    def decide(event: Event) -> Reply | None:
        if isinstance(event, Auth):
            d.conn.challenge(b"Username:")
            return None
        if isinstance(event, AuthResponse):
            if event.data is None:
                return Reply(501, "5.0.0", "Authentication cancelled")
            return Reply(535, "5.7.8", "Authentication credentials invalid")
        return Driver.default(d, event)

    conn = ServerConnection("sub.test", tls=True)
    conn.auth_mechanisms = ("LOGIN",)
    d = Driver(conn)
    d.decide = decide
    d.conn.data_to_send()
    out = d.feed(b"EHLO c\r\nAUTH LOGIN\r\n")
    assert out.endswith(b"334 VXNlcm5hbWU6\r\n")
    out = d.feed(b"*\r\n")
    assert out == b"501 5.0.0 Authentication cancelled\r\n"
    out = d.feed(b"AUTH LOGIN\r\nnot base64!\r\nNOOP\r\n")
    assert codes(out)[-2:] == [501, 250]
    out = d.feed(b"AUTH CRAM-MD5\r\n")
    assert out.startswith(b"504 5.5.4")


def test_unanswered_event_is_a_caller_bug() -> None:
    conn = ServerConnection("mx.test", tls=True)
    conn.receive(b"EHLO c\r\nMAIL FROM:<a@b.fr>\r\nNOOP\r\n")
    assert isinstance(conn.next_event(), MailFrom)
    with pytest.raises(Exception, match="has not been answered"):
        conn.next_event()


def test_reply_never_carries_injected_line_breaks() -> None:
    assert Reply(550, "5.1.1", "a\r\n250 ok").encode() == b"550 5.1.1 a  250 ok\r\n"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=20))
def test_arbitrary_bytes_never_crash_the_core(chunks: list[bytes]) -> None:
    d = tls_driver(limits=Limits(max_command_line=64, max_message_size=500))
    for chunk in chunks:
        d.feed(chunk)
    for event in d.events:
        assert not isinstance(event, ProtocolError) or event.reply.code >= 500


def test_submission_reads_a_lone_lf_as_crlf_but_never_ends_data_on_it() -> None:
    d = tls_driver(normalise_bare_lf=True)
    d.feed(transaction(b"Subject: x\n\nline\n.\nMAIL FROM:<s@x.fr>\r\n.\r\n"))
    assert d.messages == [b"Subject: x\r\n\r\nline\r\n.\r\nMAIL FROM:<s@x.fr>\r\n"]
    end = next(e for e in d.events if isinstance(e, DataEnd))
    assert not end.bare_newline
    assert sum(isinstance(e, MailFrom) for e in d.events) == 1


def test_submission_still_refuses_a_bare_cr() -> None:
    d = tls_driver(normalise_bare_lf=True)
    d.feed(transaction(b"Subject: x\r\n\r\nline\r.\r\r\n.\r\n"))
    assert next(e for e in d.events if isinstance(e, DataEnd)).bare_newline


_LINE = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(_LINE, _LINE.map(lambda b: b"." + b)), min_size=1, max_size=30),
    st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_dot_stuffed_lines_come_back_exactly_however_the_bytes_are_cut(
    lines: list[bytes], cuts: list[int]
) -> None:
    body = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." + line if line[:1] == b"." else line) + b"\r\n" for line in lines)
    whole = transaction(stuffed + b".\r\n")
    d = tls_driver(limits=Limits(data_flush=64))
    start = 0
    for cut in sorted(c % (len(whole) + 1) for c in cuts):
        d.feed(whole[start:cut])
        start = max(start, cut)
    d.feed(whole[start:])
    assert d.messages == [body]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b".\r\n", b"zz"]), max_size=40),
    st.integers(min_value=1, max_value=200),
    st.booleans(),
)
def test_any_body_cut_anywhere_reads_as_when_whole(
    parts: list[bytes], cut: int, bare_lf: bool
) -> None:
    whole = transaction(b"".join(parts) + b"\r\n.\r\n")
    reference = tls_driver(normalise_bare_lf=bare_lf)
    reference.feed(whole)
    d = tls_driver(normalise_bare_lf=bare_lf)
    for at in range(0, len(whole), cut):
        d.feed(whole[at : at + cut])
    assert d.messages == reference.messages
    ends = [(e.size, e.bare_newline) for e in d.events if isinstance(e, DataEnd)]
    assert ends == [(e.size, e.bare_newline) for e in reference.events if isinstance(e, DataEnd)]
