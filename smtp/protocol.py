"""The SMTP server protocol as a sans-IO state machine (RFC 5321 and its extensions).

Bytes go in with :meth:`ServerConnection.receive`, events come out of
:meth:`ServerConnection.next_event`, replies go out through
:meth:`ServerConnection.data_to_send`. Everything a rule or a database has to
decide (who may send, where a recipient lives, whether the message is safely
stored) is an event the caller answers with :meth:`ServerConnection.respond`;
everything that is pure syntax or sequence is answered here, once, for the MX
and for submission alike.

Two attacks are stopped here rather than in the callers:

* **SMTP smuggling.** The end of data is only ``CRLF . CRLF``. A bare LF or CR
  never ends a line; a message containing one is flagged (``DataEnd.bare_newline``)
  so the caller refuses it whole, or (submission only) a lone LF is read as
  the CRLF the client meant. It can never be split into two messages.
* **STARTTLS command injection.** Whatever the client pipelined after
  ``STARTTLS`` is discarded when the 220 is sent: nothing read in plaintext
  survives into the TLS session.

Every length and count is bounded by :class:`Limits`.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from smtp.dsn import ReturnContent, parse_notify, parse_ret, xtext_decode

__all__ = [
    "NEED_DATA",
    "Auth",
    "AuthResponse",
    "DataChunk",
    "DataEnd",
    "Event",
    "Limits",
    "MailFrom",
    "ProtocolError",
    "RcptTo",
    "Reply",
    "Reset",
    "ServerConnection",
    "StartTls",
]


@dataclass(frozen=True)
class Limits:
    """Bounds on one session; defaults suit the MX and submission alike."""

    max_message_size: int = 50 * 1024 * 1024
    max_recipients: int = 100
    max_command_line: int = 2048  # RFC 5321 says 512 + extension parameters
    max_auth_line: int = 16 * 1024  # OAuth tokens are long
    max_commands: int = 2000  # per session; a client that needs more reconnects
    max_errors: int = 10  # syntax or sequence errors before 421
    data_flush: int = 64 * 1024  # a line longer than this is passed on in pieces


@dataclass(frozen=True)
class Reply:
    """One SMTP reply; ``status`` is the RFC 3463 enhanced code (omitted for 220/221 banners)."""

    code: int
    status: str | None
    text: str | tuple[str, ...]

    def lines(self) -> tuple[str, ...]:
        return (self.text,) if isinstance(self.text, str) else self.text

    def encode(self) -> bytes:
        lines = self.lines() or ("",)
        out = bytearray()
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            clean = line.replace("\r", " ").replace("\n", " ")
            prefix = f"{self.status} " if self.status else ""
            out += f"{self.code}{sep}{prefix}{clean}\r\n".encode()
        return bytes(out)

    def __str__(self) -> str:
        return " ".join(filter(None, [str(self.code), self.status, " / ".join(self.lines())]))


_BARE_LF = re.compile(rb"(?<!\r)\n")


class _Need:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`ServerConnection.next_event` when more bytes are needed.
NEED_DATA = _Need()


@dataclass(frozen=True)
class StartTls:
    """The client asked for TLS. Answer 220 then call ``tls_established`` after the handshake."""


@dataclass(frozen=True)
class Auth:
    """``AUTH mechanism [initial-response]`` (the response already base64-decoded)."""

    mechanism: str
    initial: bytes | None


@dataclass(frozen=True)
class AuthResponse:
    """The client's answer to a 334 challenge; ``None`` when it cancelled with ``*``."""

    data: bytes | None


@dataclass(frozen=True)
class MailFrom:
    """``MAIL FROM``; ``address`` is ``""`` for the null reverse-path."""

    address: str
    params: dict[str, str | None]
    size: int | None
    body: str | None  # 7BIT or 8BITMIME
    smtputf8: bool
    ret: ReturnContent | None  # "full" or "headers"
    envid: str | None


@dataclass(frozen=True)
class RcptTo:
    address: str
    params: dict[str, str | None]
    notify: frozenset[str] | None
    orcpt: str | None  # as received: addr-type;xtext


@dataclass(frozen=True)
class DataChunk:
    """Message bytes, dot-unstuffed, CRLF kept, in order; not sent once over the size cap."""

    data: bytes


@dataclass(frozen=True)
class DataEnd:
    """The end of data: answer with the final reply for the whole transaction."""

    size: int
    too_big: bool
    bare_newline: bool


@dataclass(frozen=True)
class Reset:
    """The transaction was abandoned (RSET, EHLO, STARTTLS): forget the envelope."""


@dataclass(frozen=True)
class ProtocolError:
    """Information only: the core refused a command itself (the caller may log it)."""

    reply: Reply


Event = (
    StartTls | Auth | AuthResponse | MailFrom | RcptTo | DataChunk | DataEnd | Reset | ProtocolError
)
_NEEDS_REPLY = (StartTls, Auth, AuthResponse, MailFrom, RcptTo, DataEnd)


class _Mode(enum.Enum):
    COMMAND = "command"
    AUTH = "auth"  # reading the client's response to a 334
    DATA = "data"
    CLOSED = "closed"


class ProtocolViolation(Exception):
    """The caller broke the event/respond contract (a bug, not bad client input)."""


@dataclass
class _Data:
    """Incremental DATA reader: CRLF-only lines, dot-unstuffing, bounded buffering."""

    limit: int
    flush_at: int
    fix_bare_lf: bool = False
    size: int = 0
    too_big: bool = False
    bare_newline: bool = False
    at_line_start: bool = True
    pending: bytearray = field(default_factory=bytearray)

    def feed(self, buffer: bytearray) -> tuple[list[bytes], bool]:
        """Consume from ``buffer``; return (chunks, ended). Leaves unread bytes in ``buffer``.

        Works on whole runs of complete lines at once (bytes methods, not a
        Python loop per line): a 100 KB message is a handful of calls.
        """
        if self.at_line_start:
            head = bytes(buffer[:3])
            if head == b".\r\n":
                del buffer[:3]
                return [], True
            if len(head) < 3 and b".\r\n".startswith(head):
                return [], False  # could still be the end marker: wait
        ended = False
        marker = buffer.find(b"\r\n.\r\n")
        if marker >= 0:
            stop = consumed = marker + 2  # the data keeps the CRLF before the dot
            consumed += 3
            ended = True
        else:
            last = buffer.rfind(b"\r\n")
            stop = last + 2 if last >= 0 else 0  # complete lines only
            tail = len(buffer) - stop
            if buffer[-1:] == b"\r":
                tail -= 1  # keep half a CRLF back
            if tail >= self.flush_at:  # a very long line: pass it on in pieces
                stop += tail
            consumed = stop
        if stop == 0:
            return [], ended
        data = bytes(buffer[:stop])
        del buffer[:consumed]
        if self.at_line_start and data[:1] == b".":
            data = data[1:]  # dot-unstuffing (RFC 5321 4.5.2), first line
        data = data.replace(b"\r\n.", b"\r\n")  # and every other line
        self.at_line_start = ended or data.endswith(b"\r\n")
        if self.fix_bare_lf and b"\n" in data:
            data = _BARE_LF.sub(b"\r\n", data)
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            self.bare_newline = True
        self.size += len(data)
        if self.size > self.limit:
            self.too_big = True
        return ([] if self.too_big or not data else [data]), ended


class ServerConnection:
    """One SMTP session, server side, without I/O."""

    def __init__(
        self,
        hostname: str,
        limits: Limits | None = None,
        *,
        tls: bool = False,
        starttls_available: bool = True,
        require_tls_for_mail: bool = True,
        dsn: bool = True,
        normalise_bare_lf: bool = False,
        smtputf8: bool = True,
    ) -> None:
        self.hostname = hostname
        self.limits = limits or Limits()
        #: True once the session is encrypted (implicit TLS or after STARTTLS).
        self.tls = tls
        self.starttls_available = starttls_available
        self.require_tls_for_mail = require_tls_for_mail
        self.dsn = dsn
        #: Submission clients (smtplib with bytes, some DPIs) send lone LFs and
        #: mean CRLF: turn them into CRLF. Peers (the MX) must speak SMTP.
        self.normalise_bare_lf = normalise_bare_lf
        self.smtputf8 = smtputf8
        #: SASL mechanisms to advertise (after TLS only); set by the caller.
        self.auth_mechanisms: tuple[str, ...] = ()
        #: Who authenticated (set by the caller with its 235); ``None`` before.
        self.authenticated: str | None = None
        self.helo_name: str | None = None
        self.esmtp = False
        self.closing = False
        self._buffer = bytearray()
        self._out = bytearray()
        self._mode = _Mode.COMMAND
        self._pending: Event | None = None
        self._mail: MailFrom | None = None
        self._recipients = 0
        self._commands = 0
        self._errors = 0
        self._data: _Data | None = None
        self._eof = False
        self._skipping = False  # inside an over-long line already refused

    # ------------------------------------------------------------------ I/O side

    def greeting(self, reply: Reply | None = None) -> None:
        """Queue the 220 banner (or a 421/554 refusal given by the caller)."""
        self._send(reply or Reply(220, None, f"{self.hostname} ESMTP MSSanté"))
        if reply is not None and reply.code >= 400:
            self.closing = True

    def receive(self, data: bytes) -> None:
        """Bytes from the client; ``b""`` means the client closed its side."""
        if not data:
            self._eof = True
            return
        if self._mode is not _Mode.CLOSED and not self.closing:
            self._buffer += data

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def in_transaction(self) -> bool:
        return self._mail is not None

    @property
    def buffered(self) -> int:
        """Bytes received and not yet parsed (so the I/O layer can stop reading)."""
        return len(self._buffer)

    # ------------------------------------------------------------------ events

    def next_event(self) -> Event | _Need:
        """The next event, or ``NEED_DATA``. Raises if a previous event awaits its reply."""
        if self._pending is not None:
            raise ProtocolViolation(f"{self._pending!r} has not been answered")
        while not self.closing:
            if self._mode is _Mode.DATA:
                return self._next_data_event()
            line = self._take_line()
            if line is None:
                return NEED_DATA
            event = self._handle_line(line)
            if event is None:
                continue
            if isinstance(event, _NEEDS_REPLY):
                self._pending = event
            return event
        return NEED_DATA

    def respond(self, reply: Reply) -> None:
        """Answer the pending event; a 2xx/3xx advances the state the event asked for."""
        event = self._pending
        if event is None:
            raise ProtocolViolation("no event is waiting for a reply")
        self._pending = None
        ok = reply.code < 400
        if isinstance(event, StartTls):
            if reply.code == 220:
                self._buffer.clear()  # nothing pipelined in plaintext survives
        elif isinstance(event, Auth | AuthResponse):
            self._mode = _Mode.AUTH if reply.code == 334 else _Mode.COMMAND
        elif isinstance(event, MailFrom):
            if ok:
                self._mail = event
                self._recipients = 0
        elif isinstance(event, RcptTo):
            if ok:
                self._recipients += 1
        elif isinstance(event, DataEnd):
            self._end_transaction()
        if reply.code == 421:
            self.closing = True
        self._send(reply)

    def challenge(self, data: bytes) -> None:
        """Answer a pending ``Auth``/``AuthResponse`` with a 334 carrying ``data``."""
        self.respond(Reply(334, None, base64.b64encode(data).decode("ascii")))

    def tls_established(self) -> None:
        """The handshake after our 220 completed: the session starts over (RFC 3207)."""
        self.tls = True
        self._buffer.clear()
        self._reset_session()

    def shutdown(self, text: str = "Service shutting down, try again later") -> None:
        """Say 421 and close (node stopping, idle timeout)."""
        self._send(Reply(421, "4.3.2", f"{self.hostname} {text}"))
        self.closing = True

    # ------------------------------------------------------------------ internals

    def _send(self, reply: Reply) -> None:
        self._out += reply.encode()

    def _reset_session(self) -> None:
        self.helo_name = None
        self.esmtp = False
        self._end_transaction()

    def _end_transaction(self) -> None:
        self._mail = None
        self._recipients = 0
        self._data = None

    def _take_line(self) -> bytes | None:
        limit = (
            self.limits.max_auth_line if self._mode is _Mode.AUTH else self.limits.max_command_line
        )
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > limit:
                # Refuse once now; the rest of that line is skipped when it arrives.
                self._buffer.clear()
                if not self._skipping:
                    self._skipping = True
                    self._error(Reply(500, "5.5.2", "Line too long"))
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if self._skipping:
            self._skipping = False
            return self._take_line()
        if len(line) > limit:
            self._error(Reply(500, "5.5.2", "Line too long"))
            return None if self.closing else self._take_line()
        return line[:-1] if line.endswith(b"\r") else line

    def _error(self, reply: Reply) -> ProtocolError:
        self._errors += 1
        if self._errors >= self.limits.max_errors:
            self._send(reply)
            self._send(Reply(421, "4.7.0", f"{self.hostname} Too many errors, closing"))
            self.closing = True
        else:
            self._send(reply)
        return ProtocolError(reply)

    def _handle_line(self, raw: bytes) -> Event | None:
        if self._mode is _Mode.AUTH:
            return self._auth_line(raw)
        self._commands += 1
        if self._commands > self.limits.max_commands:
            self._send(Reply(421, "4.7.0", f"{self.hostname} Too many commands, closing"))
            self.closing = True
            return None
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            return self._error(Reply(500, "5.5.2", "Command is not valid UTF-8"))
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        handler = _COMMANDS.get(verb)
        if handler is None:
            return self._error(Reply(500, "5.5.2", "Command not recognized"))
        return handler(self, arg.strip())

    # --- commands

    def _ehlo(self, arg: str) -> Event | None:
        return self._hello(arg, esmtp=True)

    def _helo(self, arg: str) -> Event | None:
        return self._hello(arg, esmtp=False)

    def _hello(self, arg: str, *, esmtp: bool) -> Event | None:
        if not arg or " " in arg:
            return self._error(Reply(501, "5.5.4", "Syntax: EHLO hostname"))
        had_transaction = self._mail is not None
        self._end_transaction()
        self.helo_name = arg
        self.esmtp = esmtp
        if not esmtp:
            self._send(Reply(250, None, self.hostname))
        else:
            self._send(Reply(250, None, (self.hostname, *self._extensions())))
        return Reset() if had_transaction else None

    def _extensions(self) -> list[str]:
        ext = ["PIPELINING", f"SIZE {self.limits.max_message_size}", "8BITMIME"]
        if self.smtputf8:
            ext.append("SMTPUTF8")
        ext.append("ENHANCEDSTATUSCODES")
        if self.dsn:
            ext.append("DSN")
        if not self.tls and self.starttls_available:
            ext.append("STARTTLS")
        if self.tls and self.auth_mechanisms and self.authenticated is None:
            ext.append("AUTH " + " ".join(self.auth_mechanisms))
        return ext

    def _starttls(self, arg: str) -> Event | None:
        if arg:
            return self._error(Reply(501, "5.5.4", "STARTTLS takes no parameters"))
        if self.tls:
            return self._error(Reply(503, "5.5.1", "TLS already active"))
        if not self.starttls_available:
            return self._error(Reply(502, "5.5.1", "STARTTLS not available"))
        if self.helo_name is None:
            return self._error(Reply(503, "5.5.1", "Send EHLO first"))
        return StartTls()

    def _auth(self, arg: str) -> Event | None:
        if self.helo_name is None or not self.esmtp:
            return self._error(Reply(503, "5.5.1", "Send EHLO first"))
        if not self.tls:
            return self._error(
                Reply(538, "5.7.11", "Encryption required: use STARTTLS before AUTH")
            )
        if self.authenticated is not None:
            return self._error(Reply(503, "5.5.1", "Already authenticated"))
        if self._mail is not None:
            return self._error(Reply(503, "5.5.1", "AUTH not allowed during a mail transaction"))
        parts = arg.split()
        if not parts or len(parts) > 2:
            return self._error(Reply(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"))
        mechanism = parts[0].upper()
        if mechanism not in self.auth_mechanisms:
            return self._error(Reply(504, "5.5.4", "Unrecognized authentication mechanism"))
        initial: bytes | None = None
        if len(parts) == 2:
            try:
                initial = _b64(parts[1])
            except ValueError:
                return self._error(Reply(501, "5.5.2", "Cannot decode the initial response"))
        return Auth(mechanism, initial)

    def _auth_line(self, raw: bytes) -> Event | None:
        text = raw.strip()
        if text == b"*":
            return AuthResponse(None)
        try:
            return AuthResponse(_b64(text.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            self._mode = _Mode.COMMAND
            return self._error(Reply(501, "5.5.2", "Cannot decode the response"))

    def _mail_cmd(self, arg: str) -> Event | None:
        if self.helo_name is None:
            return self._error(Reply(503, "5.5.1", "Send EHLO first"))
        if self.require_tls_for_mail and not self.tls:
            return self._error(Reply(530, "5.7.0", "Must issue a STARTTLS command first"))
        if self._mail is not None:
            return self._error(Reply(503, "5.5.1", "Nested MAIL command"))
        parsed = _path_and_params(arg, "FROM:")
        if isinstance(parsed, Reply):
            return self._error(parsed)
        address, params = parsed
        if params and not self.esmtp:
            return self._error(Reply(555, "5.5.4", "Parameters need EHLO"))
        size: int | None = None
        body: str | None = None
        ret: ReturnContent | None = None
        envid: str | None = None
        smtputf8 = False
        for key, value in params.items():
            if key == "SIZE":
                if value is None or not value.isdigit() or len(value) > 15:
                    return self._error(Reply(501, "5.5.4", "SIZE needs a number"))
                size = int(value)
                if size > self.limits.max_message_size:
                    return self._error(
                        Reply(
                            552,
                            "5.3.4",
                            f"Message size exceeds the limit of {self.limits.max_message_size}"
                            " bytes",
                        )
                    )
            elif key == "BODY":
                body = (value or "").upper()
                if body not in ("7BIT", "8BITMIME"):
                    return self._error(Reply(555, "5.5.4", "BODY must be 7BIT or 8BITMIME"))
            elif key == "SMTPUTF8" and self.smtputf8:
                if value is not None:
                    return self._error(Reply(555, "5.5.4", "SMTPUTF8 takes no value"))
                smtputf8 = True
            elif key == "RET" and self.dsn:
                try:
                    ret = parse_ret(value or "")
                except ValueError as exc:
                    return self._error(Reply(501, "5.5.4", str(exc)))
            elif key == "ENVID" and self.dsn:
                if not value or len(value) > 100:
                    return self._error(Reply(501, "5.5.4", "ENVID must be 1 to 100 characters"))
                try:
                    envid = xtext_decode(value)
                except ValueError as exc:
                    return self._error(Reply(501, "5.5.4", f"ENVID: {exc}"))
            else:
                return self._error(Reply(555, "5.5.4", f"Unsupported MAIL parameter {key}"))
        if not address.isascii() and not smtputf8:
            return self._error(Reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"))
        return MailFrom(address, params, size, body, smtputf8, ret, envid)

    def _rcpt(self, arg: str) -> Event | None:
        if self._mail is None:
            return self._error(Reply(503, "5.5.1", "Need MAIL before RCPT"))
        if self._recipients >= self.limits.max_recipients:
            self._send(Reply(452, "4.5.3", "Too many recipients"))
            return None
        parsed = _path_and_params(arg, "TO:")
        if isinstance(parsed, Reply):
            return self._error(parsed)
        address, params = parsed
        if not address:
            return self._error(Reply(501, "5.1.3", "A recipient address is required"))
        if not address.isascii() and not self._mail.smtputf8:
            return self._error(Reply(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"))
        notify: frozenset[str] | None = None
        orcpt: str | None = None
        for key, value in params.items():
            if key == "NOTIFY" and self.dsn:
                try:
                    notify = parse_notify(value or "")
                except ValueError as exc:
                    return self._error(Reply(501, "5.5.4", str(exc)))
            elif key == "ORCPT" and self.dsn:
                kind, sep, rest = (value or "").partition(";")
                if not sep or not kind or not rest or len(value or "") > 500:
                    return self._error(Reply(501, "5.5.4", "ORCPT must be addr-type;xtext"))
                try:
                    xtext_decode(rest)
                except ValueError as exc:
                    return self._error(Reply(501, "5.5.4", f"ORCPT: {exc}"))
                orcpt = value
            else:
                return self._error(Reply(555, "5.5.4", f"Unsupported RCPT parameter {key}"))
        return RcptTo(address, params, notify, orcpt)

    def _data_cmd(self, arg: str) -> Event | None:
        if arg:
            return self._error(Reply(501, "5.5.4", "DATA takes no parameters"))
        if self._mail is None:
            return self._error(Reply(503, "5.5.1", "Need MAIL before DATA"))
        if self._recipients == 0:
            return self._error(Reply(554, "5.5.1", "No valid recipients"))
        self._data = _Data(
            self.limits.max_message_size, self.limits.data_flush, self.normalise_bare_lf
        )
        self._mode = _Mode.DATA
        self._send(Reply(354, None, "End data with <CR><LF>.<CR><LF>"))
        return None

    def _next_data_event(self) -> Event | _Need:
        assert self._data is not None
        chunks, ended = self._data.feed(self._buffer)
        if chunks:
            if ended:
                # Put the end marker back: the chunk goes out first, the end next call.
                self._buffer[:0] = b".\r\n"
                self._data.at_line_start = True
            return DataChunk(b"".join(chunks))
        if ended:
            self._mode = _Mode.COMMAND
            data = self._data
            event = DataEnd(data.size, data.too_big, data.bare_newline)
            self._pending = event
            return event
        return NEED_DATA

    def _rset(self, arg: str) -> Event | None:
        had = self._mail is not None
        self._end_transaction()
        self._send(Reply(250, "2.0.0", "Reset"))
        return Reset() if had else None

    def _noop(self, arg: str) -> Event | None:
        self._send(Reply(250, "2.0.0", "OK"))
        return None

    def _quit(self, arg: str) -> Event | None:
        self._send(Reply(221, "2.0.0", f"{self.hostname} closing connection"))
        self.closing = True
        return Reset() if self._mail is not None else None

    def _vrfy(self, arg: str) -> Event | None:
        self._send(Reply(252, "2.5.0", "Cannot VRFY user; try RCPT to attempt delivery"))
        return None

    def _help(self, arg: str) -> Event | None:
        self._send(Reply(214, "2.0.0", "See RFC 5321; this is an MSSanté operator"))
        return None

    def _refused(self, arg: str) -> Event | None:
        return self._error(Reply(502, "5.5.1", "Command not implemented"))


_COMMANDS = {
    "EHLO": ServerConnection._ehlo,
    "HELO": ServerConnection._helo,
    "STARTTLS": ServerConnection._starttls,
    "AUTH": ServerConnection._auth,
    "MAIL": ServerConnection._mail_cmd,
    "RCPT": ServerConnection._rcpt,
    "DATA": ServerConnection._data_cmd,
    "RSET": ServerConnection._rset,
    "NOOP": ServerConnection._noop,
    "QUIT": ServerConnection._quit,
    "VRFY": ServerConnection._vrfy,
    "HELP": ServerConnection._help,
    "EXPN": ServerConnection._refused,
    "BDAT": ServerConnection._refused,
    "ETRN": ServerConnection._refused,
    "TURN": ServerConnection._refused,
}


def _b64(text: str) -> bytes:
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64") from exc


def _path_and_params(arg: str, keyword: str) -> tuple[str, dict[str, str | None]] | Reply:
    """``FROM:<path> K=V …`` → (address, params); a Reply on bad syntax."""
    if arg[: len(keyword)].upper() != keyword:
        return Reply(501, "5.5.4", f"Syntax: {keyword}<address> [parameters]")
    rest = arg[len(keyword) :].lstrip(" ")
    if not rest.startswith("<"):
        return Reply(501, "5.5.4", "The address must be in angle brackets")
    end = _path_end(rest)
    if end < 0:
        return Reply(501, "5.5.4", "Unterminated address")
    address = rest[1:end]
    if address.startswith("@"):  # obsolete source route: keep the mailbox part
        _, colon, mailbox = address.partition(":")
        if not colon:
            return Reply(501, "5.1.7", "Bad source route")
        address = mailbox
    if any(ord(c) < 32 or c == "\x7f" for c in address) or len(address) > 320:
        return Reply(501, "5.1.7", "Bad address syntax")
    params: dict[str, str | None] = {}
    for token in _split_params(rest[end + 1 :]):
        key, eq, value = token.partition("=")
        key = key.upper()
        if not key or not all(c.isalnum() or c == "-" for c in key) or not key.isascii():
            return Reply(501, "5.5.4", "Bad parameter syntax")
        if key in params:
            return Reply(501, "5.5.4", f"Duplicate parameter {key}")
        if eq and (not value or any(ord(c) < 33 or c == "=" for c in value)):
            return Reply(501, "5.5.4", f"Bad value for {key}")
        params[key] = value if eq else None
    return address, params


def _path_end(rest: str) -> int:
    """Index of the ``>`` closing the path, honouring a quoted local part."""
    quoted = False
    escaped = False
    for i, ch in enumerate(rest[1:], start=1):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == ">" and not quoted:
            return i
    return -1


def _split_params(text: str) -> Iterable[str]:
    if text and not text.startswith(" "):
        yield "\x00"  # garbage right after '>': rejected as a bad parameter
        return
    yield from text.split()
