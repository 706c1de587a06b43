"""One IMAP connection's state machine and its commands (RFC 3501, RFC 9051).

The bytes never reach this module: :mod:`imap.server` feeds the
:class:`~imap.grammar.CommandParser` and hands each :class:`~imap.grammar.Command`
to :meth:`Session.execute`, which writes responses through the :class:`Io` it
was given. The pure parts live next door: :mod:`imap.selected` (what the
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
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy import Connection, select

from annuaire import address_key
from imap import backend, listing, mutf7
from imap import fetch as fetching
from imap import search as searching
from imap import sort as sorting
from imap.backend import SEPARATOR, Change, MessageRow
from imap.grammar import (
    NIL,
    Atom,
    Command,
    ListValue,
    LiteralFile,
    Number,
    ParseError,
    SequenceSet,
    String,
    Tagged,
    Untagged,
    Value,
    as_astring,
    as_sequence_set,
    encode_value,
    serialize,
)
from imap.messages import LazyMessage
from imap.mime import (
    MimeError,
    Part,
    encode_binary_parts,
    parse_message,
    parse_section,
    section_bytes,
)
from imap.selected import OutOfRange, SelectedView, flag_list, uid_set_text
from imap.urls import MessageUrl, parse_message_url
from mssante import audit, index, sasl
from mssante.authn import Attempt, Authenticator, Refusal
from mssante.clock import Clock
from mssante.db import Database
from mssante.index import Mailbox, MailboxExists, MailboxNotFound
from mssante.mailbox_events import MailboxEvents
from mssante.schema import mailbox_messages
from mssante.store import BlobStore

__all__ = ["Io", "SeenHook", "Session", "SessionContext"]

log = logging.getLogger("mssante.imap")

#: Called after a commit that set ``\\Seen`` on messages that did not have it:
#: (mailbox owner, mailbox id, UIDs). The MSS-C policies send read receipts from it.
SeenHook = Callable[[str, int, Sequence[int]], Awaitable[None]]


class Io(Protocol):
    """What the connection layer gives the session."""

    tls: bool
    peer_cert: x509.Certificate | None
    peer_ip: str

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    async def read_line(self) -> bytes | None:
        """One raw client line without CRLF (AUTHENTICATE, IDLE's DONE); None at EOF."""
        ...

    async def start_tls(self) -> bool: ...

    async def wait_line_or(self, event: asyncio.Event, timeout: float) -> bytes | bool | None:
        """A line, None at EOF, True if ``event`` was set, False on timeout."""
        ...


@dataclass
class SessionContext:
    db: Database
    store: BlobStore
    clock: Clock
    hostname: str
    auth: Authenticator
    events: MailboxEvents
    stopping: asyncio.Event
    append_limit: int = 50 * 1024 * 1024
    quota_bytes: int = 5 * 1024**3
    #: How often an IDLE session looks at the index even without a wake-up
    #: (catches writers the hub cannot hear, e.g. another process on SQLite).
    idle_poll_seconds: float = 30.0
    idle_timeout: float = 30 * 60.0
    external_allowed: Callable[[x509.Certificate], Awaitable[bool]] | None = None
    on_seen: list[SeenHook] = field(default_factory=list)
    #: Identify "IMAP4rev1 …" capabilities; tests switch features off to check refusals.
    oauth: bool = False


class Bad(Exception):
    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class No(Exception):
    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


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

_STATUS_ITEMS = {
    "MESSAGES",
    "RECENT",
    "UIDNEXT",
    "UIDVALIDITY",
    "UNSEEN",
    "HIGHESTMODSEQ",
    "SIZE",
    "DELETED",
    "APPENDLIMIT",
}


@dataclass
class Session:
    context: SessionContext
    io: Io
    session_id: str
    state: str = "not-authenticated"
    user: str | None = None  # the address key of the mailbox owner being served
    login: str | None = None  # who logged in (differs for delegated access)
    selected: SelectedView | None = None
    rev2: bool = False
    utf8: bool = False
    condstore: bool = False
    qresync: bool = False
    saved_search: frozenset[int] | None = None
    closing: bool = False
    _authentications: int = 0

    # ------------------------------------------------------------------ plumbing

    def log(self, message: str, level: int = logging.INFO, **fields: object) -> None:
        log.log(level, message, extra={"fields": {"session": self.session_id, **fields}})

    def send(self, response: Untagged | Tagged) -> None:
        self.io.write(serialize(response))

    def untagged(self, text: str) -> None:
        self.io.write(serialize(Untagged(text)))

    async def db_read(self, fn: Callable[[Connection], Any]) -> Any:
        def run() -> Any:
            with self.context.db.read() as conn:
                return fn(conn)

        return await asyncio.to_thread(run)

    async def db_write(self, fn: Callable[[Connection], Any]) -> Any:
        def run() -> Any:
            with self.context.db.transaction() as conn:
                return fn(conn)

        result = await asyncio.to_thread(run)
        return result

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

    # ------------------------------------------------------------------ dispatch

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
        except _Answered:
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

    # ------------------------------------------------------------------ any state

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

    def _enable_condstore(self) -> None:
        """CONDSTORE turned on, by ENABLE or by a command using it (RFC 7162 §3.1)."""
        if self.condstore:
            return
        self.condstore = True
        if self.selected is not None:
            self.selected.condstore = True
            self.untagged(f"OK [HIGHESTMODSEQ {self.selected.highestmodseq}] Highest")

    @staticmethod
    def _no_args(cmd: Command) -> None:
        if cmd.args:
            raise Bad(f"{cmd.name} takes no arguments")

    # ------------------------------------------------------------------ not authenticated

    async def cmd_starttls(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        if self.io.tls:
            raise Bad("TLS is already active")
        self.send(Tagged(cmd.tag, "OK", None, "Begin TLS negotiation now"))
        await self.io.drain()
        if not await self.io.start_tls():
            self.closing = True
        raise _Answered()

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
                    raise _Answered()
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

    # ------------------------------------------------------------------ names

    def _name_in(self, value: Value) -> str:
        raw = as_astring(value)
        if self.utf8 or self.rev2:
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Bad("Mailbox name is not valid UTF-8") from None
        else:
            try:
                name = mutf7.decode(raw.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                raise No("Mailbox name is not valid modified UTF-7", "CANNOT") from None
        if name.upper() == "INBOX" or name.upper().startswith("INBOX" + SEPARATOR):
            name = "INBOX" + name[5:]
        return name

    def _name_out(self, name: str) -> Value:
        text = name if (self.utf8 or self.rev2) else mutf7.encode(name)
        return String(text.encode("utf-8"))

    async def _mailbox(self, name: str, missing: str = "NONEXISTENT") -> Mailbox:
        """The named mailbox; ``NO [TRYCREATE]`` for APPEND/COPY targets (RFC 3501 §6.3.11)."""
        assert self.user is not None
        user = self.user
        found = await self.db_read(lambda conn: index.get_mailbox(conn, user, name))
        if found is None:
            raise No("Mailbox does not exist", missing)
        return found  # type: ignore[no-any-return]

    @staticmethod
    def _valid_new_name(name: str) -> None:
        if not name or len(name) > 512 or any(ord(c) < 0x20 or c == "\x7f" for c in name):
            raise No("Invalid mailbox name", "CANNOT")
        if any(not part for part in name.rstrip(SEPARATOR).split(SEPARATOR)):
            raise No("Invalid mailbox name (empty level)", "CANNOT")
        if "*" in name or "%" in name:
            raise No("Invalid mailbox name (wildcards)", "CANNOT")

    # ------------------------------------------------------------------ authenticated

    async def cmd_select(self, cmd: Command) -> tuple[str | None, str]:
        return await self._select(cmd, readonly=False)

    async def cmd_examine(self, cmd: Command) -> tuple[str | None, str]:
        return await self._select(cmd, readonly=True)

    async def _select(self, cmd: Command, *, readonly: bool) -> tuple[str | None, str]:
        if not 1 <= len(cmd.args) <= 2:
            raise Bad(f"{cmd.name} takes a mailbox name and optional parameters")
        qresync_args = self._select_params(cmd.args[1]) if len(cmd.args) == 2 else None
        name = self._name_in(cmd.args[0])
        if self.selected is not None:
            self.selected = None
            self.untagged("OK [CLOSED] Previous mailbox closed")
        self.state = "authenticated"
        assert self.user is not None
        user = self.user

        def load(conn: Connection) -> tuple[Mailbox, list[Change], tuple[int, int], int] | None:
            mailbox = index.get_mailbox(conn, user, name)
            if mailbox is None:
                return None
            messages = backend.snapshot(conn, mailbox.id)
            # EXAMINE shows \\Recent without taking it from the next read-write session.
            recent = (
                (mailbox.recent_uid, mailbox.uidnext)
                if readonly
                else backend.take_recent(conn, mailbox.id, mailbox.uidnext)
            )
            unseen_uid = next((m.uid for m in messages if "\\Seen" not in m.flags), 0)
            return mailbox, messages, recent, unseen_uid

        loaded = await self.db_write(load)
        if loaded is None:
            raise No("Mailbox does not exist", "NONEXISTENT")
        mailbox, messages, recent, unseen_uid = loaded
        view = SelectedView.load(
            mailbox_id=mailbox.id,
            name=mailbox.name,
            readonly=readonly,
            uidvalidity=mailbox.uidvalidity,
            highestmodseq=mailbox.highestmodseq,
            keywords=mailbox.keywords,
            messages=messages,
        )
        view.condstore = self.condstore
        view.qresync = self.qresync
        view.recent.update(u for u in view.uids if recent[0] <= u < recent[1])
        for response in view.flags_responses():
            self.send(response)
        self.untagged(f"{view.exists} EXISTS")
        self.untagged(f"{len(view.recent)} RECENT")
        if unseen_uid and not self.rev2:
            self.untagged(f"OK [UNSEEN {view.seq_of(unseen_uid)}] First unseen.")
        self.untagged(f"OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid")
        self.untagged(f"OK [UIDNEXT {mailbox.uidnext}] Predicted next UID")
        self.untagged(f"OK [HIGHESTMODSEQ {mailbox.highestmodseq}] Highest")
        if cmd.args and len(cmd.args) == 2 and qresync_args is not None:
            await self._qresync_select(view, qresync_args)
        self.selected = view
        self.state = "selected"
        self.saved_search = None
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        return mode, f"{cmd.name} completed"

    def _select_params(self, value: Value) -> tuple[int, int, list[int] | None] | None:
        """``(CONDSTORE)`` or ``(QRESYNC (uidvalidity modseq [known-uids]))``."""
        if not isinstance(value, ListValue) or not value.items:
            raise Bad("Invalid SELECT parameters")
        word = value.items[0]
        name = word.value.upper() if isinstance(word, Atom) else ""
        if name == "CONDSTORE" and len(value.items) == 1:
            self._enable_condstore()
            return None
        if name != "QRESYNC" or len(value.items) != 2 or not self.qresync:
            raise Bad("Unknown SELECT parameter (QRESYNC needs ENABLE QRESYNC first)")
        spec = value.items[1]
        if not isinstance(spec, ListValue) or len(spec.items) < 2:
            raise Bad("QRESYNC takes (uidvalidity modseq [known-uids])")
        validity, modseq = spec.items[0], spec.items[1]
        if not isinstance(validity, Number) or not isinstance(modseq, Number):
            raise Bad("QRESYNC takes (uidvalidity modseq [known-uids])")
        known = None
        if len(spec.items) >= 3 and not isinstance(spec.items[2], ListValue):
            known_set = as_sequence_set(spec.items[2])
            known = [u for low, high in known_set.ranges for u in _expand(low, high)]
        return validity.value, modseq.value, known

    async def _qresync_select(
        self, view: SelectedView, args: tuple[int, int, list[int] | None]
    ) -> None:
        validity, modseq, known = args
        if validity != view.uidvalidity:
            return
        mailbox_id = view.mailbox_id
        changed, gone = await self.db_read(
            lambda conn: backend.changes_since(conn, mailbox_id, modseq)
        )
        vanished = sorted(uid for uid, _ in gone)
        if known is not None:
            allowed = set(known)
            vanished = [u for u in vanished if u in allowed]
        if vanished:
            self.untagged(f"VANISHED (EARLIER) {uid_set_text(vanished)}")
        for change in changed:
            if view.seq_of(change.uid) is not None:
                self.send(view.fetch_flags(change.uid, with_uid=True))

    async def cmd_create(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) not in (1, 2):
            raise Bad("CREATE takes a mailbox name")
        name = self._name_in(cmd.args[0])
        self._valid_new_name(name)
        if name.rstrip(SEPARATOR) == "INBOX":
            raise No("INBOX already exists", "ALREADYEXISTS")
        assert self.user is not None
        user, now = self.user, self.context.clock.now()
        try:
            await self.db_write(lambda conn: backend.create(conn, user, name, now=now))
        except MailboxExists:
            raise No("Mailbox already exists", "ALREADYEXISTS") from None
        return None, "CREATE completed"

    async def cmd_delete(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("DELETE takes a mailbox name")
        name = self._name_in(cmd.args[0])
        assert self.user is not None
        user = self.user
        if self.selected is not None and self.selected.name == name:
            self.selected = None
            self.state = "authenticated"
        try:
            await self.db_write(lambda conn: backend.delete_mailbox(conn, user, name))
        except MailboxNotFound:
            raise No("Mailbox does not exist", "NONEXISTENT") from None
        except MailboxExists as exc:
            raise No(str(exc), "CANNOT") from None
        return None, "DELETE completed"

    async def cmd_rename(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 2:
            raise Bad("RENAME takes two mailbox names")
        old, new = self._name_in(cmd.args[0]), self._name_in(cmd.args[1])
        self._valid_new_name(new)
        assert self.user is not None
        user, now = self.user, self.context.clock.now()
        try:
            await self.db_write(lambda conn: backend.rename(conn, user, old, new, now=now))
        except MailboxNotFound:
            raise No("Mailbox does not exist", "NONEXISTENT") from None
        except MailboxExists:
            raise No("Target mailbox already exists", "ALREADYEXISTS") from None
        return None, "RENAME completed"

    async def cmd_subscribe(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("SUBSCRIBE takes a mailbox name")
        name = self._name_in(cmd.args[0])
        await self._mailbox(name)
        assert self.user is not None
        user = self.user
        await self.db_write(lambda conn: index.subscribe(conn, user, name))
        return None, "SUBSCRIBE completed"

    async def cmd_unsubscribe(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("UNSUBSCRIBE takes a mailbox name")
        name = self._name_in(cmd.args[0])
        assert self.user is not None
        user = self.user
        await self.db_write(lambda conn: index.unsubscribe(conn, user, name))
        return None, "UNSUBSCRIBE completed"

    async def cmd_namespace(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        self.untagged(f'NAMESPACE (("" "{SEPARATOR}")) NIL NIL')
        return None, "NAMESPACE completed"

    async def cmd_lsub(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 2:
            raise Bad("LSUB takes a reference and a pattern")
        options = listing.ListOptions(subscribed=True, lsub=True, return_children=False)
        await self._list(cmd, "LSUB", [cmd.args[1]], cmd.args[0], options, status=None)
        return None, "LSUB completed"

    async def cmd_list(self, cmd: Command) -> tuple[str | None, str]:
        args = list(cmd.args)
        selection: list[str] = []
        first = args[0] if args else None
        if isinstance(first, ListValue):
            selection = [_word(v) for v in first.items]
            args.pop(0)
        if len(args) < 2:
            raise Bad("LIST takes a reference and a pattern")
        reference, patterns = args[0], args[1]
        returns: list[Value] = []
        if len(args) == 4 and _word(args[2]) == "RETURN" and isinstance(args[3], ListValue):
            returns = list(args[3].items)
        elif len(args) != 2:
            raise Bad("Invalid LIST arguments")
        pattern_values = list(patterns.items) if isinstance(patterns, ListValue) else [patterns]
        return_words = [_word(v) for v in returns if not isinstance(v, ListValue)]
        if any(w not in {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"} for w in return_words):
            raise Bad("Unknown LIST return option")
        status: list[str] | None = None
        for pos, value in enumerate(returns):
            if _word(value) == "STATUS" and pos + 1 < len(returns):
                items = returns[pos + 1]
                if not isinstance(items, ListValue):
                    raise Bad("LIST RETURN STATUS needs a list")
                status = [_word(v) for v in items.items]
        known = {"SUBSCRIBED", "RECURSIVEMATCH", "SPECIAL-USE", "REMOTE"}
        if any(s not in known for s in selection):
            raise Bad("Unknown LIST selection option")
        if "RECURSIVEMATCH" in selection and not ({"SUBSCRIBED", "SPECIAL-USE"} & set(selection)):
            raise Bad("RECURSIVEMATCH needs another selection option")
        options = listing.ListOptions(
            subscribed="SUBSCRIBED" in selection,
            recursive="RECURSIVEMATCH" in selection,
            special_use_only="SPECIAL-USE" in selection,
            return_subscribed="SUBSCRIBED" in return_words,
            return_children=True,
            return_special_use=True,
        )
        if not pattern_values:
            raise Bad("LIST needs a pattern")
        only = as_astring(pattern_values[0]) if len(pattern_values) == 1 else None
        if only == b"" and not selection:
            self.untagged(f'LIST (\\Noselect) "{SEPARATOR}" ""')
            return None, "LIST completed"
        await self._list(cmd, "LIST", pattern_values, reference, options, status)
        return None, "LIST completed"

    async def _list(
        self,
        cmd: Command,
        verb: str,
        patterns: Sequence[Value],
        reference: Value,
        options: listing.ListOptions,
        status: list[str] | None,
    ) -> None:
        assert self.user is not None
        user = self.user
        ref = self._name_in(reference) if as_astring(reference) else ""
        regexes = [listing.pattern_regex(ref, self._pattern_in(p)) for p in patterns]

        def load(conn: Connection) -> tuple[list[Mailbox], set[str]]:
            return index.list_mailboxes(conn, user), index.subscribed_names(conn, user)

        boxes, subs = await self.db_read(load)
        by_name = {m.name: m.special_use for m in boxes}
        for entry in listing.list_entries(regexes, by_name, subs, options):
            attrs = " ".join(entry.attributes)
            name = encode_value(self._name_out(entry.name)).decode("utf-8")
            extra = ' ("CHILDINFO" ("SUBSCRIBED"))' if entry.child_info else ""
            self.untagged(f'{verb} ({attrs}) "{SEPARATOR}" {name}{extra}')
            if status is not None and entry.name in by_name:
                await self._status_line(entry.name, status)

    def _pattern_in(self, value: Value) -> str:
        raw = as_astring(value)
        if self.utf8 or self.rev2:
            return raw.decode("utf-8", "replace")
        try:
            return mutf7.decode(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return raw.decode("utf-8", "replace")

    async def cmd_status(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 2 or not isinstance(cmd.args[1], ListValue):
            raise Bad("STATUS takes a mailbox name and a list of items")
        items = [_word(v) for v in cmd.args[1].items]
        if not items or any(i not in _STATUS_ITEMS for i in items):
            raise Bad("Unknown STATUS item")
        name = self._name_in(cmd.args[0])
        await self._status_line(name, items)
        return None, "STATUS completed"

    async def _status_line(self, name: str, items: list[str]) -> None:
        mailbox = await self._mailbox(name)
        counts = await self.db_read(lambda conn: backend.status_counts(conn, mailbox.id))
        total, unseen, deleted, size = counts
        if "HIGHESTMODSEQ" in items:
            self._enable_condstore()
        values = {
            "MESSAGES": total,
            "RECENT": max(0, mailbox.uidnext - mailbox.recent_uid) if total else 0,
            "UIDNEXT": mailbox.uidnext,
            "UIDVALIDITY": mailbox.uidvalidity,
            "UNSEEN": unseen,
            "HIGHESTMODSEQ": mailbox.highestmodseq,
            "SIZE": size,
            "DELETED": deleted,
            "APPENDLIMIT": self.context.append_limit,
        }
        if self.selected is not None and self.selected.mailbox_id == mailbox.id:
            values["RECENT"] = len(self.selected.recent)
        body = " ".join(f"{i} {values[i]}" for i in items)
        encoded = encode_value(self._name_out(mailbox.name)).decode("utf-8")
        self.untagged(f"STATUS {encoded} ({body})")

    async def cmd_getquotaroot(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("GETQUOTAROOT takes a mailbox name")
        name = self._name_in(cmd.args[0])
        await self._mailbox(name)
        encoded = encode_value(self._name_out(name)).decode("utf-8")
        self.untagged(f'QUOTAROOT {encoded} ""')
        await self._quota_line()
        return None, "GETQUOTAROOT completed"

    async def cmd_getquota(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("GETQUOTA takes a quota root")
        if as_astring(cmd.args[0]) != b"":
            raise No("No such quota root", "NONEXISTENT")
        await self._quota_line()
        return None, "GETQUOTA completed"

    async def cmd_setquota(self, cmd: Command) -> tuple[str | None, str]:
        raise No("Quotas are set by the operator", "NOPERM")

    async def _quota_line(self) -> None:
        assert self.user is not None
        user = self.user
        used, _ = await self.db_read(lambda conn: backend.quota_usage(conn, user))
        # RFC 9208 counts STORAGE in units of 1024 octets.
        self.untagged(
            f'QUOTA "" (STORAGE {(used + 1023) // 1024} {self.context.quota_bytes // 1024})'
        )

    async def _check_quota(self, adding: int) -> None:
        assert self.user is not None
        user = self.user
        used, _ = await self.db_read(lambda conn: backend.quota_usage(conn, user))
        if used + adding > self.context.quota_bytes:
            raise No("Mailbox storage quota exceeded", "OVERQUOTA")

    # ------------------------------------------------------------------ APPEND

    async def cmd_append(self, cmd: Command) -> tuple[str | None, str]:
        """APPEND, with MULTIAPPEND (RFC 3502: all or nothing) and CATENATE (RFC 4469)."""
        args = list(cmd.args)
        if len(args) < 2:
            raise Bad("APPEND takes a mailbox, optional flags and date, and a message")
        name = self._name_in(args.pop(0))
        uploads = self._append_groups(args)
        mailbox = await self._mailbox(name, missing="TRYCREATE")
        messages: list[tuple[frozenset[str], datetime, bytes]] = []
        for flags, date, pieces, binary in uploads:
            data = b"".join([await self._catenate_piece(p) for p in pieces])
            if len(data) > self.context.append_limit:
                raise No("Message too big", "TOOBIG")
            if not data:
                raise No("Empty message", "CANNOT")
            if binary:  # a literal8: keep what every client can read (RFC 3516 §4.4)
                data = encode_binary_parts(data, parse_message(data))
            messages.append((flags, date, data))
        await self._check_quota(sum(len(d) for _, _, d in messages))
        stored = await asyncio.to_thread(
            lambda: [
                (flags, date, self.context.store.put(data), _json(parse_message(data)))
                for flags, date, data in messages
            ]
        )

        def add(conn: Connection) -> list[int]:
            current = index.get_mailbox(conn, mailbox.owner, mailbox.name)
            if current is None:
                raise MailboxNotFound(name)
            uids = []
            for flags, date, blob, structure in stored:
                entry = index.append(conn, current, blob, internal_date=date, flags=flags)
                backend.save_structure(conn, {entry.id: structure})
                uids.append(entry.uid)
            return uids

        try:
            uids = await self.db_write(add)
        except MailboxNotFound:
            raise No("Mailbox does not exist", "NONEXISTENT") from None
        self.context.events.publish(mailbox.id)
        seen = [uid for uid, (flags, _, _) in zip(uids, messages, strict=True) if "\\Seen" in flags]
        if seen:
            await self._seen(mailbox, seen)
        return f"APPENDUID {mailbox.uidvalidity} {uid_set_text(uids)}", "APPEND completed"

    def _append_groups(
        self, args: list[Value]
    ) -> list[tuple[frozenset[str], datetime, list[bytes | MessageUrl], bool]]:
        """(flags, date, pieces, sent as literal8) for each message of the command."""
        groups = []
        flags: frozenset[str] = frozenset()
        date: datetime | None = None
        pending = iter(args)
        for arg in pending:
            if isinstance(arg, ListValue):
                flags = self._flags_arg(arg) - {"\\Recent"}
                continue
            if isinstance(arg, String) and not arg.literal and date is None:
                date = _parse_date_time(arg.value)
                continue
            if isinstance(arg, Atom) and arg.value.upper() == "CATENATE":
                parts = next(pending, None)
                if not isinstance(parts, ListValue) or not parts.items:
                    raise Bad("CATENATE takes a list of TEXT and URL parts")
                pieces, binary = _catenate_pieces(parts.items)
            elif isinstance(arg, String | LiteralFile):
                data = arg.file.read() if isinstance(arg, LiteralFile) else arg.value
                pieces, binary = [data], arg.binary
            else:
                raise Bad("Invalid APPEND arguments")
            groups.append((flags, date or self.context.clock.now(), pieces, binary))
            flags, date = frozenset(), None
        if not groups or flags or date is not None:
            raise Bad("APPEND needs a message after its flags and date")
        return groups

    async def _catenate_piece(self, piece: bytes | MessageUrl) -> bytes:
        """A TEXT part as sent, or the bytes a URL names in one of the user's mailboxes."""
        if isinstance(piece, bytes):
            return piece
        bad = f'BADURL "{piece.mailbox}"'.replace("]", "")
        try:
            mailbox = await self._mailbox(piece.mailbox)
        except No:
            raise No("The URL names no mailbox of yours", bad) from None
        if piece.uidvalidity is not None and piece.uidvalidity != mailbox.uidvalidity:
            raise No("The URL's UIDVALIDITY is not the mailbox's", bad)
        found = await self.db_read(lambda conn: backend.rows(conn, mailbox.id, [piece.uid]))
        if not found:
            raise No("The URL names no message", bad)
        data = await asyncio.to_thread(self.context.store.read, found[0].blob.sha256)
        try:
            spec = parse_section(piece.section.upper())
        except ParseError:
            raise No("The URL's section is not valid", bad) from None
        part = section_bytes(data, parse_message(data), spec)
        if piece.partial is not None:
            origin, length = piece.partial
            part = part[origin:] if length is None else part[origin : origin + length]
        return part

    def _flags_arg(self, value: Value) -> frozenset[str]:
        items = value.items if isinstance(value, ListValue) else (value,)
        flags = set()
        for item in items:
            if item is NIL:
                item = Atom("NIL")  # an atom like any other keyword
            if not isinstance(item, Atom):
                raise Bad("Flags must be atoms")
            flag = item.value
            if flag.startswith("\\"):
                canonical = _SYSTEM.get(flag.lower())
                if canonical is None:
                    raise Bad(f"Unknown system flag {flag[:32]}")
                flag = canonical
            flags.add(flag)
        return frozenset(flags)

    async def _seen(self, mailbox: Mailbox, uids: Sequence[int]) -> None:
        for hook in self.context.on_seen:
            try:
                await hook(mailbox.owner, mailbox.id, uids)
            except Exception:
                log.exception("seen hook failed", extra={"fields": {"session": self.session_id}})

    # ------------------------------------------------------------------ IDLE

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
                    raise _Answered()
                got = await self.io.wait_line_or(wake, self.context.idle_poll_seconds)
                if got is None:
                    self.closing = True
                    raise _Answered()
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
                    raise _Answered()
        finally:
            if mailbox_id is not None:
                events.unwatch(mailbox_id, wake)

    # ------------------------------------------------------------------ selected

    async def _sync(self, *, announce_expunges: bool, with_uid: bool = False) -> None:
        view = self.selected
        if view is None:
            return
        since = view.highestmodseq
        mailbox_id = view.mailbox_id

        def read(conn: Connection) -> Any:
            # One indexed read when nothing changed, the common case after a command.
            highest = backend.highest_modseq(conn, mailbox_id)
            if highest is None or highest <= since:
                return [], [], highest
            changed, gone = backend.changes_since(conn, mailbox_id, since)
            return changed, gone, highest

        changed, gone, highest = await self.db_read(read)
        if highest is None:  # deleted under us
            self.untagged("BYE The selected mailbox was deleted")
            self.closing = True
            return
        responses, new = view.sync(
            changed, gone, announce_expunges=announce_expunges, with_uid=with_uid
        )
        for response in responses:
            self.send(response)
        if new and not view.readonly:
            top = max(new) + 1
            low, high = await self.db_write(lambda conn: backend.take_recent(conn, mailbox_id, top))
            for response in view.claim_recent(low, high):
                self.send(response)

    async def cmd_close(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        view = self.selected
        assert view is not None
        if not view.readonly:
            await self.db_write(lambda conn: backend.expunge(conn, view.mailbox_id))
            self.context.events.publish(view.mailbox_id)
        self.selected = None
        self.state = "authenticated"
        return None, "CLOSE completed"

    async def cmd_unselect(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        self.selected = None
        self.state = "authenticated"
        return None, "UNSELECT completed"

    async def cmd_expunge(self, cmd: Command) -> tuple[str | None, str]:
        self._no_args(cmd)
        return await self._expunge(None)

    async def cmd_uid_expunge(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("UID EXPUNGE takes a UID set")
        view = self._view()
        uids = view.resolve(as_sequence_set(cmd.args[0]), uid=True)
        return await self._expunge(uids)

    async def _expunge(self, uids: list[int] | None) -> tuple[str | None, str]:
        view = self._view()
        if view.readonly:
            raise No("The mailbox is read-only", "READ-ONLY")
        mailbox_id = view.mailbox_id
        gone = await self.db_write(lambda conn: backend.expunge(conn, mailbox_id, uids))
        if gone:
            self.context.events.publish(mailbox_id)
        return None, "EXPUNGE completed"

    def _view(self) -> SelectedView:
        assert self.selected is not None
        return self.selected

    def _resolve(self, value: Value, *, uid: bool) -> list[int]:
        view = self._view()
        seqset = as_sequence_set(value)
        if seqset.saved:
            saved = self.saved_search or frozenset()
            return sorted(u for u in saved if view.seq_of(u) is not None)
        try:
            return view.resolve(seqset, uid=uid)
        except OutOfRange as exc:
            raise Bad(f"Invalid message set: {exc}") from None

    # --- FETCH

    async def cmd_fetch(self, cmd: Command) -> tuple[str | None, str]:
        return await self._fetch(cmd, uid=False)

    async def cmd_uid_fetch(self, cmd: Command) -> tuple[str | None, str]:
        return await self._fetch(cmd, uid=True)

    async def _fetch(self, cmd: Command, *, uid: bool) -> tuple[str | None, str]:
        if len(cmd.args) not in (2, 3):
            raise Bad("FETCH takes a message set, attributes and optional modifiers")
        view = self._view()
        request = fetching.parse_fetch(
            cmd.args[1], cmd.args[2] if len(cmd.args) == 3 else None, uid=uid, qresync=self.qresync
        )
        if request.changed_since is not None or request.wants("MODSEQ"):
            self._enable_condstore()
        uids = self._resolve(cmd.args[0], uid=uid)
        if request.vanished and request.changed_since is not None:
            await self._vanished_earlier(as_sequence_set(cmd.args[0]), request.changed_since)
        live = view.live(uids)
        if request.changed_since is not None:
            since = request.changed_since
            live = [u for u in live if view.modseqs.get(u, 0) > since]
        seen_now: set[int] = set()
        if request.sets_seen and not view.readonly:
            seen_now = await self._mark_seen(live)
        rows: dict[int, MessageRow] = {}
        if request.needs_row and live:
            rows = await self._rows(live, request.needs_structure or request.needs_bytes)
        with_flags = fetching.add_flags(request)
        messages = []
        for message_uid in live:
            row = rows.get(message_uid)
            if request.needs_row and row is None:
                continue  # expunged between the sync and now: nothing to show
            seq = view.seq_of(message_uid)
            assert seq is not None
            msg = fetching.MessageData(
                uid=message_uid,
                flags=flag_list(view.flags_of(message_uid)),
                modseq=view.modseqs.get(message_uid, 0),
                size=row.blob.size if row is not None else 0,
                internal_date=row.internal_date if row is not None else _EPOCH,
                root=_structure(row) if row is not None else None,
                data=_MessageLoader(self.context.store, row).read if row is not None else _no_data,
            )
            messages.append((seq, with_flags if message_uid in seen_now else request, msg))
        lines, failed = await asyncio.to_thread(_fetch_lines, messages)
        for line in lines:
            self.io.write(line)
            if len(line) > 65536:
                await self.io.drain()
        if failed:
            raise No("A part has an unknown content transfer encoding", "UNKNOWN-CTE")
        return None, "FETCH completed"

    async def _vanished_earlier(self, asked: SequenceSet, since: int) -> None:
        """QRESYNC's ``VANISHED (EARLIER)``: UIDs of the asked ranges expunged since ``since``."""
        view = self._view()
        mailbox_id = view.mailbox_id
        _, gone = await self.db_read(lambda conn: backend.changes_since(conn, mailbox_id, since))
        top = max([*view.uids, *(u for u, _ in gone)], default=0)
        ranges = [(min(lo or top, hi or top), max(lo or top, hi or top)) for lo, hi in asked.ranges]
        vanished = sorted(u for u, _ in gone if any(a <= u <= b for a, b in ranges))
        if vanished:
            self.untagged(f"VANISHED (EARLIER) {uid_set_text(vanished)}")

    async def _rows(self, uids: list[int], structure: bool) -> dict[int, MessageRow]:
        view = self._view()
        mailbox_id = view.mailbox_id
        found: list[MessageRow] = await self.db_read(
            lambda conn: backend.rows(conn, mailbox_id, uids)
        )
        missing = {r.id: r for r in found if r.structure is None}
        if structure and missing:
            parsed = await asyncio.to_thread(self._parse_rows, list(missing.values()))
            await self.db_write(lambda conn: backend.save_structure(conn, parsed))
            found = [_with_structure(r, parsed[r.id]) if r.id in parsed else r for r in found]
        return {r.uid: r for r in found}

    def _parse_rows(self, rows: list[MessageRow]) -> dict[int, str]:
        return {r.id: _json(parse_message(self.context.store.read(r.blob.sha256))) for r in rows}

    async def _mark_seen(self, uids: list[int]) -> set[int]:
        """Set \\Seen on the messages a body FETCH reads; those that changed."""
        view = self._view()
        unseen = [u for u in uids if "\\Seen" not in view.flags.get(u, frozenset())]
        if not unseen:
            return set()
        mailbox_id = view.mailbox_id
        changed, _ = await self.db_write(
            lambda conn: backend.store_flags(conn, mailbox_id, unseen, "add", frozenset({"\\Seen"}))
        )
        view.record(changed)
        self.context.events.publish(mailbox_id)
        mailbox = await self._selected_mailbox()
        await self._seen(mailbox, [c.uid for c in changed])
        return {c.uid for c in changed}

    async def _selected_mailbox(self) -> Mailbox:
        view = self._view()
        mailbox_id = view.mailbox_id
        mailbox = await self.db_read(lambda conn: backend.mailbox_by_id(conn, mailbox_id))
        if mailbox is None:
            raise No("The selected mailbox was deleted", "NONEXISTENT")
        return mailbox  # type: ignore[no-any-return]

    # --- STORE

    async def cmd_store(self, cmd: Command) -> tuple[str | None, str]:
        return await self._store(cmd, uid=False)

    async def cmd_uid_store(self, cmd: Command) -> tuple[str | None, str]:
        return await self._store(cmd, uid=True)

    async def _store(self, cmd: Command, *, uid: bool) -> tuple[str | None, str]:
        args = list(cmd.args)
        if len(args) < 3:
            raise Bad("STORE takes a message set, an action and flags")
        view = self._view()
        unchanged_since = None
        given = args[1]
        if isinstance(given, ListValue):
            modifiers = given.items
            args.pop(1)
            if (
                len(modifiers) != 2
                or _word(modifiers[0]) != "UNCHANGEDSINCE"
                or not isinstance(modifiers[1], Number)
            ):
                raise Bad("Unknown STORE modifier")
            unchanged_since = modifiers[1].value
            self._enable_condstore()
        if len(args) < 3:
            raise Bad("STORE takes a message set, an action and flags")
        action = _word(args[1])
        silent = action.endswith(".SILENT")
        base = action.removesuffix(".SILENT")
        modes = {"FLAGS": "set", "+FLAGS": "add", "-FLAGS": "remove"}
        if base not in modes:
            raise Bad("STORE action must be FLAGS, +FLAGS or -FLAGS")
        flags = self._flags_arg(args[2] if len(args) == 3 else ListValue(tuple(args[2:])))
        uids = self._resolve(args[0], uid=uid)
        if view.readonly:
            raise No("The mailbox is read-only", "READ-ONLY")
        live = view.live(uids)
        mailbox_id = view.mailbox_id
        before_seen = {u for u in live if "\\Seen" in view.flags.get(u, frozenset())}
        changed, refused = await self.db_write(
            lambda conn: backend.store_flags(
                conn,
                mailbox_id,
                live,
                modes[base],  # type: ignore[arg-type]
                flags - {"\\Recent"},
                unchanged_since=unchanged_since,
            )
        )
        view.record(changed)
        if changed:
            self.context.events.publish(mailbox_id)
        changed_uids = {c.uid for c in changed}
        for message_uid in live:
            if message_uid in refused:
                continue
            if silent and not (unchanged_since is not None and message_uid in changed_uids):
                continue
            if message_uid in changed_uids or not silent:
                self.send(view.fetch_flags(message_uid, with_uid=uid))
        newly_seen = [c.uid for c in changed if "\\Seen" in c.flags and c.uid not in before_seen]
        if newly_seen:
            await self._seen(await self._selected_mailbox(), newly_seen)
        if refused:
            text = (
                uid_set_text(refused)
                if uid
                else uid_set_text(
                    sorted(s for s in (view.seq_of(u) for u in refused) if s is not None)
                )
            )
            return f"MODIFIED {text}", "Conditional STORE failed for some messages"
        return None, "STORE completed"

    # --- COPY / MOVE

    async def cmd_copy(self, cmd: Command) -> tuple[str | None, str]:
        return await self._copy(cmd, uid=False, move=False)

    async def cmd_uid_copy(self, cmd: Command) -> tuple[str | None, str]:
        return await self._copy(cmd, uid=True, move=False)

    async def cmd_move(self, cmd: Command) -> tuple[str | None, str]:
        return await self._copy(cmd, uid=False, move=True)

    async def cmd_uid_move(self, cmd: Command) -> tuple[str | None, str]:
        return await self._copy(cmd, uid=True, move=True)

    async def _copy(self, cmd: Command, *, uid: bool, move: bool) -> tuple[str | None, str]:
        if len(cmd.args) != 2:
            raise Bad(f"{cmd.name} takes a message set and a mailbox name")
        view = self._view()
        uids = view.live(self._resolve(cmd.args[0], uid=uid))
        target = await self._mailbox(self._name_in(cmd.args[1]), missing="TRYCREATE")
        if move and view.readonly:
            raise No("The mailbox is read-only", "READ-ONLY")
        if not uids:
            return None, f"{cmd.name} completed (no messages)"
        source_id = view.mailbox_id
        size = await self.db_read(
            lambda conn: sum(r.blob.size for r in backend.rows(conn, source_id, uids))
        )
        await self._check_quota(0 if move else size)
        now = self.context.clock.now()

        def run(conn: Connection) -> list[tuple[int, int]]:
            current = index.get_mailbox(conn, target.owner, target.name)
            if current is None:
                raise MailboxNotFound(target.name)
            pairs = backend.copy_messages(conn, source_id, current, uids, now=now)
            if move:
                backend.remove(conn, source_id, [s for s, _ in pairs])
            return pairs

        try:
            pairs = await self.db_write(run)
        except MailboxNotFound:
            raise No("Mailbox does not exist", "NONEXISTENT") from None
        self.context.events.publish(target.id)
        code = None
        if pairs:
            code = (
                f"COPYUID {target.uidvalidity} {uid_set_text([s for s, _ in pairs])} "
                f"{uid_set_text([d for _, d in pairs])}"
            )
        if move:
            self.context.events.publish(source_id)
            if code is not None:
                self.untagged(f"OK [{code}] Moved")
                code = None
            await self._sync(announce_expunges=True)
        return code, f"{cmd.name} completed"

    # --- SEARCH / SORT / THREAD

    async def _views(self, needs_index: bool) -> list[LazyMessage]:
        view = self._view()
        mailbox_id = view.mailbox_id
        facts: dict[int, tuple[int, datetime, str]] = {}
        if needs_index:

            def load(conn: Connection) -> dict[int, tuple[int, datetime, str]]:
                result = conn.execute(
                    select(
                        mailbox_messages.c.uid,
                        mailbox_messages.c.size,
                        mailbox_messages.c.internal_date,
                        mailbox_messages.c.blob_sha256,
                    ).where(mailbox_messages.c.mailbox_id == mailbox_id)
                )
                return {u: (s, d, b) for u, s, d, b in result}

            facts = await self.db_read(load)
        store = self.context.store
        out = []
        for seq, message_uid in enumerate(view.uids, start=1):
            size, date, sha = facts.get(message_uid, (0, _EPOCH, ""))
            out.append(
                LazyMessage(
                    seq=seq,
                    uid=message_uid,
                    flags=view.flags_of(message_uid),
                    internal_date=date,
                    size=size,
                    modseq=view.modseqs.get(message_uid, 0),
                    load=_reader(store, sha),
                )
            )
        return out

    def _search_context(self) -> searching.SearchContext:
        view = self._view()
        return searching.SearchContext(
            max_seq=view.exists,
            max_uid=view.uids[-1] if view.uids else 0,
            saved=self.saved_search,
            recent=frozenset(view.recent),
        )

    async def cmd_search(self, cmd: Command) -> tuple[str | None, str]:
        return await self._search(cmd, uid=False)

    async def cmd_uid_search(self, cmd: Command) -> tuple[str | None, str]:
        return await self._search(cmd, uid=True)

    async def _search(self, cmd: Command, *, uid: bool) -> tuple[str | None, str]:
        program = searching.parse_search(cmd.args, uid_command=uid)
        if program.uses_modseq:
            self._enable_condstore()
        views = await self._views(needs_index=True)
        context = self._search_context()
        found = await asyncio.to_thread(searching.matching, program, views, context)
        options = program.return_options
        if options is not None and "SAVE" in options:
            self.saved_search = searching.saved_uids(program, found)
        if options is None and not self.rev2:
            self.untagged(searching.search_response(program, found))
        else:
            line = searching.esearch_response(program, cmd.tag, found)
            if line is not None:
                self.untagged(line)
        return None, "SEARCH completed"

    async def cmd_sort(self, cmd: Command) -> tuple[str | None, str]:
        return await self._sort(cmd, uid=False)

    async def cmd_uid_sort(self, cmd: Command) -> tuple[str | None, str]:
        return await self._sort(cmd, uid=True)

    async def _sort(self, cmd: Command, *, uid: bool) -> tuple[str | None, str]:
        program = sorting.parse_sort(cmd.args, uid_command=uid)
        views = await self._views(needs_index=True)
        found = await asyncio.to_thread(sorting.sort_views, program, views, self._search_context())
        if program.search.return_options is None:
            self.untagged(searching.search_response(program.search, found, name="SORT"))
        else:  # ESORT (RFC 5267): the ESEARCH form, MIN and MAX in sort order
            line = searching.esearch_response(program.search, cmd.tag, found)
            if line is not None:
                self.untagged(line)
            if "SAVE" in program.search.return_options:
                self.saved_search = searching.saved_uids(program.search, found)
        return None, "SORT completed"

    async def cmd_thread(self, cmd: Command) -> tuple[str | None, str]:
        return await self._thread(cmd, uid=False)

    async def cmd_uid_thread(self, cmd: Command) -> tuple[str | None, str]:
        return await self._thread(cmd, uid=True)

    async def _thread(self, cmd: Command, *, uid: bool) -> tuple[str | None, str]:
        program = sorting.parse_thread(cmd.args, uid_command=uid)
        views = await self._views(needs_index=True)
        threads = await asyncio.to_thread(
            sorting.thread_messages, program, views, self._search_context()
        )
        text = sorting.format_threads(threads, use_uid=uid)
        self.untagged("THREAD" + (f" {text}" if text else ""))
        return None, "THREAD completed"


class _Answered(Exception):
    """The command wrote its own tagged response (STARTTLS) or the connection ended."""


_SYSTEM = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_SYSTEM["\\recent"] = "\\Recent"
_EPOCH = datetime(1970, 1, 1).astimezone()


def _word(value: Value) -> str:
    if isinstance(value, Atom):
        return value.value.upper()
    if isinstance(value, String):
        return value.value.decode("ascii", "replace").upper()
    return ""


def _expand(low: int | None, high: int | None) -> range:
    if low is None or high is None:
        return range(0)
    return range(min(low, high), max(low, high) + 1)


def _login_of(creds: sasl.Credentials) -> str | None:
    if isinstance(creds, sasl.PasswordCredentials):
        try:
            return address_key(creds.authcid)
        except ValueError:
            return None
    return None


def _parse_date_time(raw: bytes) -> datetime:
    """APPEND's ``"dd-Mon-yyyy hh:mm:ss +zzzz"``."""
    text = raw.decode("ascii", "replace").strip()
    try:
        day, month, rest = text.split("-", 2)
        year, clock, zone = rest.split(" ")
        rfc822 = f"{int(day)} {month} {year} {clock} {zone}"
        parsed = parsedate_to_datetime(rfc822)
    except (ValueError, TypeError, IndexError):
        raise Bad("Invalid date-time") from None
    if parsed.tzinfo is None:
        raise Bad("Invalid date-time (no zone)")
    return parsed


def _catenate_pieces(items: Sequence[Value]) -> tuple[list[bytes | MessageUrl], bool]:
    """CATENATE's ``TEXT literal`` and ``URL "imap-url"`` pairs; True if a literal8 came."""
    pieces: list[bytes | MessageUrl] = []
    binary = False
    words = iter(items)
    for word in words:
        value = next(words, None)
        kind = _word(word)
        if kind == "TEXT" and isinstance(value, String | LiteralFile):
            pieces.append(value.file.read() if isinstance(value, LiteralFile) else value.value)
            binary = binary or value.binary
        elif kind == "URL" and isinstance(value, String | Atom):
            try:
                pieces.append(parse_message_url(as_astring(value).decode("utf-8")))
            except (ValueError, UnicodeDecodeError) as exc:
                raise No(f"Unusable URL: {exc}", "BADURL") from None
        else:
            raise Bad("CATENATE parts are TEXT literal or URL string")
    return pieces, binary


def _json(root: Part) -> str:
    return json.dumps(root.to_json(), separators=(",", ":"))


def _structure(row: MessageRow) -> Part | None:
    if row.structure is None:
        return None
    return Part.from_json(json.loads(row.structure))


def _with_structure(row: MessageRow, structure: str) -> MessageRow:
    return replace(row, structure=structure)


def _fetch_lines(
    messages: list[tuple[int, fetching.FetchRequest, fetching.MessageData]],
) -> tuple[list[bytes], bool]:
    """The FETCH response lines (in a worker thread: sections read the store)."""
    lines, failed = [], False
    for seq, request, msg in messages:
        try:
            items = fetching.message_items(request, msg)
        except MimeError:
            failed = True
            continue
        lines.append(b"* %d FETCH " % seq + encode_value(ListValue(items)) + b"\r\n")
    return lines, failed


class _MessageLoader:
    def __init__(self, store: BlobStore, row: MessageRow) -> None:
        self._store = store
        self._row = row
        self._data: bytes | None = None

    def read(self) -> bytes:
        if self._data is None:
            self._data = self._store.read(self._row.blob.sha256)
        return self._data


def _reader(store: BlobStore, sha: str) -> Callable[[], bytes]:
    return lambda: store.read(sha)


def _no_data() -> bytes:
    raise AssertionError("the request did not need the message bytes")
