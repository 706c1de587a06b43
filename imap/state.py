"""An IMAP session's state and the helpers every command group shares.

The commands live in :mod:`imap.session` (connection, authentication, IDLE),
:mod:`imap.cmd_mailboxes`, :mod:`imap.cmd_append` and :mod:`imap.cmd_messages`,
each a mixin over :class:`SessionState`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography import x509
from sqlalchemy import Connection

from imap import backend, mutf7
from imap.backend import SEPARATOR
from imap.grammar import (
    NIL,
    Atom,
    Command,
    ListValue,
    String,
    Tagged,
    Untagged,
    Value,
    as_astring,
    as_sequence_set,
    encode_value,
    serialize,
)
from imap.mime import (
    Part,
)
from imap.selected import OutOfRange, SelectedView
from imap.states import MailboxStates
from mssante import index
from mssante.authn import Authenticator
from mssante.clock import Clock
from mssante.db import Database
from mssante.index import Mailbox
from mssante.mailbox_events import MailboxEvents
from mssante.store import BlobStore

__all__ = [
    "CANONICAL_FLAGS",
    "STATUS_ITEMS",
    "Answered",
    "Bad",
    "Io",
    "No",
    "SeenHook",
    "SessionContext",
    "SessionState",
    "structure_json",
    "word_of",
]

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
    #: The mailboxes' last loaded states, shared by this process's sessions (SELECT).
    states: MailboxStates = field(default_factory=MailboxStates)
    #: Per-mailbox sizes for the quota checks, shared by this process's sessions.
    sums: backend.MailboxSums = field(default_factory=backend.MailboxSums)


class Refused(Exception):
    """A command's failure: the tagged reply's text and optional response code."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class Bad(Refused):
    """``tag BAD``: the command is malformed or not allowed in this state."""


class No(Refused):
    """``tag NO``: a well-formed command that cannot be done."""


class Answered(Exception):
    """The command wrote its own tagged response (STARTTLS) or the connection ended."""


#: The spelling we store for each system flag, by its lower-case form (flags are
#: case-insensitive on the wire, RFC 9051 §2.3.2).
CANONICAL_FLAGS = {f.lower(): f for f in (*index.SYSTEM_FLAGS, "\\Recent")}


def word_of(value: Value) -> str:
    if isinstance(value, Atom):
        return value.value.upper()
    if isinstance(value, String):
        return value.value.decode("ascii", "replace").upper()
    return ""


def structure_json(root: Part) -> str:
    return json.dumps(root.to_json(), separators=(",", ":"))


STATUS_ITEMS = {
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
class SessionState:
    """What every command reads and changes: the login, the selected view, enabled extensions."""

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
        """``fn`` in a write transaction (run again if PostgreSQL picks it as a deadlock victim)."""
        return await asyncio.to_thread(self.context.db.run_transaction, fn)

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

    def _decode_name(self, value: Value) -> str:
        """A name as the client wrote it: UTF-8 once enabled, else modified UTF-7."""
        raw = as_astring(value)
        if self.utf8 or self.rev2:
            return raw.decode("utf-8")
        return mutf7.decode(raw.decode("ascii"))

    def _name_in(self, value: Value) -> str:
        try:
            name = self._decode_name(value)
        except (UnicodeDecodeError, ValueError):
            raise No("Mailbox name is not valid for this session's encoding", "CANNOT") from None
        if name.upper() == "INBOX" or name.upper().startswith("INBOX" + SEPARATOR):
            name = "INBOX" + name[5:]
        return name

    def _pattern_in(self, value: Value) -> str:
        """A LIST pattern: like a name, but an undecodable one is taken as it is."""
        try:
            return self._decode_name(value)
        except (UnicodeDecodeError, ValueError):
            return as_astring(value).decode("utf-8", "replace")

    def _name_out(self, name: str) -> str:
        """A mailbox name as it goes on the wire (quoted or a literal)."""
        text = name if (self.utf8 or self.rev2) else mutf7.encode(name)
        return encode_value(String(text.encode("utf-8"))).decode("utf-8")

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

    async def _check_quota(self, adding: int) -> None:
        assert self.user is not None
        user = self.user
        sums = self.context.sums
        used, _ = await self.db_read(lambda conn: backend.quota_usage(conn, user, sums))
        if used + adding > self.context.quota_bytes:
            raise No("Mailbox storage quota exceeded", "OVERQUOTA")

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
                canonical = CANONICAL_FLAGS.get(flag.lower())
                if canonical is None:
                    raise Bad(f"Unknown system flag {flag[:32]}")
                flag = canonical
            flags.add(flag)
        return frozenset(flags)

    async def _seen(self, owner: str, mailbox_id: int, uids: Sequence[int]) -> None:
        for hook in self.context.on_seen:
            try:
                await hook(owner, mailbox_id, uids)
            except Exception:
                log.exception("seen hook failed", extra={"fields": {"session": self.session_id}})

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
        if new and not view.readonly and not self.rev2:
            top = max(new) + 1
            low, high = await self.db_write(lambda conn: backend.take_recent(conn, mailbox_id, top))
            for response in view.claim_recent(low, high):
                self.send(response)

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
