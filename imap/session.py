"""One IMAP connection's state machine and its commands (RFC 3501, RFC 9051).

The bytes never reach this module: :mod:`imap.server` feeds the
:class:`~imap.grammar.CommandParser` and hands each :class:`~imap.grammar.Command`
to :meth:`Session.execute`, which writes responses through the :class:`Io` it
was given. Here: dispatch, state checks, the commands of any state,
authentication and IDLE; the other commands are mixins (:mod:`imap.cmd_mailboxes`,
:mod:`imap.cmd_append`, :mod:`imap.cmd_messages`) over :class:`imap.state.SessionState`.
The pure parts live next door: :mod:`imap.selected` (what the
client was told), :mod:`imap.fetch`, :mod:`imap.search`, :mod:`imap.sort`,
:mod:`imap.listing`, :mod:`imap.mime`. Database work runs in worker threads,
one transaction per command.

States: not authenticated → authenticated ⇄ selected → logout. A command in
the wrong state is ``BAD``; an unknown mailbox ``NO [NONEXISTENT]``. Members
reach an ORG or APP mailbox by logging in as ``member*mailbox`` (or with
AUTHENTICATE PLAIN's authorization identity); each such login is audited.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy import Connection

from annuaire import address_key
from imap.cmd_append import AppendCommands
from imap.cmd_mailboxes import MailboxCommands
from imap.cmd_messages import MessageCommands
from imap.grammar import (
    NIL,
    Atom,
    Command,
    ListValue,
    LiteralFile,
    ParseError,
    Tagged,
    as_astring,
)
from imap.state import (
    Answered,
    Bad,
    Io,
    No,
    SeenHook,
    SessionContext,
)
from mssante import audit, index, sasl
from mssante.authn import Attempt, Refusal

__all__ = ["Io", "SeenHook", "Session", "SessionContext"]

#: Capabilities once authenticated (APPENDLIMIT is added with its value).
_SELECTED_CAPS = (
    "LITERAL+",
    "ID",
    "ENABLE",
    "IDLE",
    "NAMESPACE",
    "UIDPLUS",
    "MOVE",
    "UNSELECT",
    "CHILDREN",
    "SPECIAL-USE",
    "LIST-EXTENDED",
    "LIST-STATUS",
    "CONDSTORE",
    "QRESYNC",
    "ESEARCH",
    "SEARCHRES",
    "SORT",
    "SORT=DISPLAY",
    "ESORT",
    "THREAD=ORDEREDSUBJECT",
    "THREAD=REFERENCES",
    "BINARY",
    "QUOTA",
    "QUOTA=RES-STORAGE",
    "STATUS=SIZE",
    "UTF8=ACCEPT",
    "MULTIAPPEND",
    "CATENATE",
)

_ANY = {"CAPABILITY", "NOOP", "LOGOUT", "ID"}

_NOT_AUTH = {"STARTTLS", "AUTHENTICATE", "LOGIN"}

_AUTH = {
    "SELECT",
    "EXAMINE",
    "CREATE",
    "DELETE",
    "RENAME",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "LIST",
    "LSUB",
    "NAMESPACE",
    "STATUS",
    "APPEND",
    "IDLE",
    "ENABLE",
    "GETQUOTA",
    "GETQUOTAROOT",
    "SETQUOTA",
}

_SELECTED = {
    "CHECK",
    "CLOSE",
    "UNSELECT",
    "EXPUNGE",
    "SEARCH",
    "FETCH",
    "STORE",
    "COPY",
    "MOVE",
    "SORT",
    "THREAD",
    "UID FETCH",
    "UID SEARCH",
    "UID STORE",
    "UID COPY",
    "UID MOVE",
    "UID EXPUNGE",
    "UID SORT",
    "UID THREAD",
}

#: Commands during which EXPUNGE must not be sent (RFC 3501 §7.4.1).
_NO_EXPUNGE_ANNOUNCE = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}


def _login_of(creds: sasl.Credentials) -> str | None:
    if isinstance(creds, sasl.PasswordCredentials):
        try:
            return address_key(creds.authcid)
        except ValueError:
            return None
    return None


@dataclass
class Session(MailboxCommands, AppendCommands, MessageCommands):
    """One connection: the state machine, dispatch, and the commands of any state."""

    def capabilities(self) -> list[str]:
        caps = ["IMAP4rev1", "IMAP4rev2"]
        if not self.io.tls:
            return [*caps, "STARTTLS", "LOGINDISABLED", "LITERAL+", "ID", "ENABLE"]
        if self.state == "not-authenticated":
            caps += ["SASL-IR", "LITERAL+", "ID", "ENABLE"]
            mechanisms = ["PLAIN"] if self.context.auth.password_auth else []
            if self.io.peer_cert is not None:
                mechanisms.insert(0, "EXTERNAL")
            if self.context.auth.tokens is not None:
                mechanisms += ["OAUTHBEARER", "XOAUTH2"]
            return caps + [f"AUTH={m}" for m in mechanisms]
        return [*caps, *_SELECTED_CAPS, f"APPENDLIMIT={self.context.append_limit}"]

    def greeting(self) -> bytes:
        if self.context.stopping.is_set():
            self.closing = True
            return b"* BYE Server shutting down\r\n"
        caps = " ".join(self.capabilities())
        return f"* OK [CAPABILITY {caps}] {self.context.hostname} IMAP ready\r\n".encode()

    async def execute(self, cmd: Command) -> None:
        """Run one command and write all its responses, the tagged one last."""
        name = cmd.name
        try:
            self._check_state(name)
            handler = getattr(self, "cmd_" + name.lower().replace(" ", "_"))
            code, text = await handler(cmd)
            if self.selected is not None and name not in {"LOGOUT"}:
                await self._sync(announce_expunges=name not in _NO_EXPUNGE_ANNOUNCE)
            self.send(Tagged(cmd.tag, "OK", code, text or f"{name} completed"))
        except Answered:
            pass
        except Bad as exc:
            self.send(Tagged(cmd.tag, "BAD", exc.code, str(exc)))
        except ParseError as exc:
            self.send(Tagged(cmd.tag, "BAD", exc.code, exc.text))
        except No as exc:
            if self.selected is not None:
                await self._sync(announce_expunges=name not in _NO_EXPUNGE_ANNOUNCE)
            self.send(Tagged(cmd.tag, "NO", exc.code, str(exc)))
        finally:
            for arg in cmd.args:
                if isinstance(arg, LiteralFile):
                    arg.file.close()

    def _check_state(self, name: str) -> None:
        if name in _ANY:
            return
        if self.state == "not-authenticated":
            if name in _NOT_AUTH:
                return
            if name in _AUTH or name in _SELECTED:
                raise Bad("Log in first")
        elif name in _NOT_AUTH:
            raise Bad("Already authenticated")
        elif name in _AUTH:
            return
        elif name in _SELECTED:
            if self.selected is None:
                raise Bad("No mailbox selected")
            return
        if not hasattr(self, "cmd_" + name.lower().replace(" ", "_")):
            raise Bad(f"Unknown command {name[:32]}")

    async def cmd_capability(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        self.untagged("CAPABILITY " + " ".join(self.capabilities()))
        return None, "CAPABILITY completed"

    async def cmd_noop(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        return None, "NOOP completed"

    async def cmd_check(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        return None, "CHECK completed"

    async def cmd_logout(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        self.untagged("BYE Logging out")
        self.closing = True
        self.state = "logout"
        return None, "LOGOUT completed"

    async def cmd_id(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1 or not isinstance(cmd.args[0], ListValue | type(NIL)):
            raise Bad("ID takes a parameter list or NIL")
        self.untagged('ID ("name" "mssante-operator")')
        return None, "ID completed"

    async def cmd_enable(self, cmd: Command) -> tuple[str | None, str]:
        if not cmd.args:
            raise Bad("ENABLE needs at least one capability")
        enabled = []
        for arg in cmd.args:
            word = as_astring(arg).decode("ascii", "replace").upper()
            if word == "IMAP4REV2" and not self.rev2:
                self.rev2 = True
                enabled.append("IMAP4rev2")
            elif word == "CONDSTORE" and not self.condstore:
                self._enable_condstore()
                enabled.append("CONDSTORE")
            elif word == "QRESYNC" and not self.qresync:
                self._enable_condstore()
                self.qresync = True
                if self.selected is not None:
                    self.selected.qresync = True
                enabled.append("QRESYNC")
            elif word == "UTF8=ACCEPT" and not self.utf8:
                self.utf8 = True
                enabled.append("UTF8=ACCEPT")
        self.untagged("ENABLED" + "".join(" " + e for e in enabled))
        return None, "ENABLE completed"

    async def cmd_starttls(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        if self.io.tls:
            raise Bad("TLS is already active")
        self.send(Tagged(cmd.tag, "OK", None, "Begin TLS negotiation now"))
        await self.io.drain()
        if not await self.io.start_tls():
            self.closing = True
        raise Answered()

    async def cmd_login(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 2:
            raise Bad("LOGIN takes a user name and a password")
        if not self.io.tls:
            raise No("Plaintext authentication is disabled; use STARTTLS", "PRIVACYREQUIRED")
        user = as_astring(cmd.args[0]).decode("utf-8", "replace")
        password = as_astring(cmd.args[1]).decode("utf-8", "replace")
        authcid, _, authzid = user.partition("*")
        creds = sasl.PasswordCredentials(authcid, authzid or None, password)
        return await self._authenticate(creds, "LOGIN")

    async def cmd_authenticate(self, cmd: Command) -> tuple[str | None, str]:
        if not 1 <= len(cmd.args) <= 2 or not isinstance(cmd.args[0], Atom):
            raise Bad("AUTHENTICATE takes a mechanism and an optional initial response")
        if not self.io.tls:
            raise No("Authentication needs TLS; use STARTTLS", "PRIVACYREQUIRED")
        mechanism = cmd.args[0].value.upper()
        offered = [c[5:] for c in self.capabilities() if c.startswith("AUTH=")]
        if mechanism not in offered:
            raise No("Unsupported authentication mechanism", "CANNOT")
        initial = None
        if len(cmd.args) == 2:
            raw = as_astring(cmd.args[1])
            try:
                initial = b"" if raw == b"=" else sasl.decode_wire(raw)
            except sasl.SaslError as exc:
                raise Bad(f"Invalid initial response: {exc}") from None
        try:
            exchange = sasl.start(mechanism, initial)
            result = exchange.step(None)
            while isinstance(result, sasl.Challenge):
                self.io.write(b"+ " + sasl.encode_wire(result.data) + b"\r\n")
                await self.io.drain()
                line = await self.io.read_line()
                if line is None:
                    self.closing = True
                    raise Answered()
                if line == b"*":
                    raise Bad("Authentication cancelled")
                result = exchange.step(sasl.decode_wire(line))
        except sasl.SaslError as exc:
            if "authentication failed" in str(exc):
                raise No("Authentication failed", "AUTHENTICATIONFAILED") from None
            raise Bad(f"Authentication exchange refused: {exc}") from None
        return await self._authenticate(result, mechanism)

    async def _authenticate(self, creds: sasl.Credentials, mechanism: str) -> tuple[str, str]:
        external = False
        if isinstance(creds, sasl.ExternalCredentials) and self.io.peer_cert is not None:
            check = self.context.external_allowed
            external = check is not None and await check(self.io.peer_cert)
        attempt = Attempt(creds, self.io.peer_ip, self.io.peer_cert, external_allowed=external)
        outcome = await self.context.auth.authenticate(attempt, self.log)
        if outcome is Refusal.LOCKED:
            raise No("Too many failed authentications; try again later", "UNAVAILABLE")
        if outcome is Refusal.FAILED:
            raise No("Authentication failed", "AUTHENTICATIONFAILED")
        assert isinstance(outcome, str)
        login = _login_of(creds) or outcome
        await self._open_account(outcome, login, mechanism)
        caps = " ".join(self.capabilities())
        return f"CAPABILITY {caps}", "Logged in"

    async def _open_account(self, owner: str, login: str, mechanism: str) -> None:
        now = self.context.clock.now()
        delegated = owner != login

        def open_(conn: Connection) -> None:
            index.ensure_default_mailboxes(conn, owner, now=now)
            if delegated:
                audit.record(
                    conn,
                    at=now,
                    actor=login,
                    action="imap.login",
                    target_kind="bal",
                    target=owner,
                    details={"mechanism": mechanism, "delegated": True},
                )

        await self.db_write(open_)
        self.user, self.login, self.state = owner, login, "authenticated"
        self.log("authenticated", mechanism=mechanism, delegated=delegated)

    async def cmd_idle(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        self.io.write(b"+ idling\r\n")
        await self.io.drain()
        events = self.context.events
        mailbox_id = self.selected.mailbox_id if self.selected is not None else None
        wake = events.watch(mailbox_id) if mailbox_id is not None else asyncio.Event()
        started = self.context.clock.monotonic()
        try:
            while True:
                if self.context.stopping.is_set():
                    self.untagged("BYE Server shutting down")
                    self.closing = True
                    raise Answered()
                got = await self.io.wait_line_or(wake, self.context.idle_poll_seconds)
                if got is None:
                    self.closing = True
                    raise Answered()
                if isinstance(got, bytes):
                    if got.upper() == b"DONE":
                        return None, "IDLE terminated"
                    raise Bad("Expected DONE")
                wake.clear()
                if self.selected is not None:
                    await self._sync(announce_expunges=True)
                    await self.io.drain()
                if self.context.clock.monotonic() - started > self.context.idle_timeout:
                    self.untagged("BYE Idle for too long")
                    self.closing = True
                    raise Answered()
        finally:
            if mailbox_id is not None:
                events.unwatch(mailbox_id, wake)
