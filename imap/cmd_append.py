"""APPEND: new messages from the client, all or nothing, durable before OK."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime

from sqlalchemy import Connection

from imap import backend, cache
from imap.fetch import apply_partial
from imap.grammar import (
    Atom,
    Command,
    ListValue,
    LiteralFile,
    ParseError,
    String,
    Value,
    as_astring,
)
from imap.mime import (
    encode_binary_parts,
    parse_message,
    parse_section,
    section_bytes,
)
from imap.selected import uid_set_text
from imap.state import (
    Bad,
    No,
    SessionState,
    word_of,
)
from imap.urls import MessageUrl, parse_message_url
from mssante import index
from mssante.index import MailboxNotFound

__all__ = ["AppendCommands"]


class AppendCommands(SessionState):
    """APPEND, MULTIAPPEND (RFC 3502) and CATENATE (RFC 4469)."""

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
                (flags, date, self.context.store.put(data), cache.columns(data))
                for flags, date, data in messages
            ]
        )

        def add(conn: Connection) -> list[int]:
            current = index.get_mailbox(conn, mailbox.owner, mailbox.name)
            if current is None:
                raise MailboxNotFound(name)
            uids = []
            for flags, date, blob, cached in stored:
                entry = index.append(conn, current, blob, internal_date=date, flags=flags)
                backend.save_cache(conn, {entry.id: cached})
                uids.append(entry.uid)
            return uids

        try:
            uids = await self.db_write(add)
        except MailboxNotFound:
            raise No("Mailbox does not exist", "NONEXISTENT") from None
        self.context.events.publish(mailbox.id)
        seen = [uid for uid, (flags, _, _) in zip(uids, messages, strict=True) if "\\Seen" in flags]
        if seen:
            await self._seen(mailbox.owner, mailbox.id, seen)
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
        return apply_partial(section_bytes(data, parse_message(data), spec), piece.partial)


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
        kind = word_of(word)
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
