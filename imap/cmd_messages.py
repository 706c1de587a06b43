"""The commands on the messages of the selected mailbox."""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

from sqlalchemy import Connection, null, select, type_coerce
from sqlalchemy.types import NullType

from imap import backend
from imap import cache as index_cache
from imap import fetch as fetching
from imap import search as searching
from imap import sort as sorting
from imap.backend import Change, MessageRow
from imap.grammar import (
    Command,
    ListValue,
    Number,
    SequenceSet,
    as_sequence_set,
    encode_value,
)
from imap.messages import ContentCache, LazyMessage
from imap.mime import (
    MimeError,
    Part,
)
from imap.selected import flag_list, uid_set_text
from imap.state import (
    Bad,
    No,
    SessionState,
    word_of,
)
from mssante import index
from mssante.schema import mailbox_messages

__all__ = ["MessageCommands"]


#: FETCH responses rendered (then sent) at a time: flags-only, and with message bodies.
_BATCH = 5000
_BATCH_WITH_BODIES = 200
#: What the fast FETCH path answers from the session's view and the ENVELOPE column.
_FAST_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ", "ENVELOPE"})
_FAST_BATCH = 10000
#: Background cache writes, kept referenced until done (asyncio holds tasks weakly).
_BACKGROUND: set[asyncio.Task[None]] = set()


class MessageCommands(SessionState):
    """Selected state: FETCH, STORE, COPY, MOVE, EXPUNGE, SEARCH, SORT, THREAD, CLOSE."""

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
        return await self._expunge(self._resolve(cmd.args[0], uid=True))

    async def _expunge(self, uids: list[int] | None) -> tuple[str | None, str]:
        view = self._view()
        if view.readonly:
            raise No("The mailbox is read-only", "READ-ONLY")
        mailbox_id = view.mailbox_id
        gone = await self.db_write(lambda conn: backend.expunge(conn, mailbox_id, uids))
        if gone:
            self.context.events.publish(mailbox_id)
        return None, "EXPUNGE completed"

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
        if all(i.name in _FAST_ITEMS and i.section is None for i in request.items):
            await self._fetch_fast(request, live)
            return None, "FETCH completed"
        seen_now: set[int] = set()
        if request.sets_seen and not view.readonly:
            seen_now = await self._mark_seen(live)
        rows: dict[int, MessageRow] = {}
        if request.needs_row and live:
            rows = await self._rows(live, request.needs_structure or request.needs_bytes)
        with_flags = fetching.add_flags(request)
        needs_row = request.needs_row
        store = self.context.store

        def render(batch: list[int]) -> tuple[bytes, bool]:
            """FETCH lines of a batch, in a worker thread (sections read the store)."""
            out, failed = bytearray(), False
            for uid in batch:
                row = rows.get(uid)
                if needs_row and row is None:
                    continue  # expunged between the sync and now: nothing to show
                msg = fetching.MessageData(
                    uid=uid,
                    flags=flag_list(view.flags_of(uid)),
                    modseq=view.modseqs.get(uid, 0),
                    size=row.blob.size if row is not None else 0,
                    internal_date=row.internal_date if row is not None else _EPOCH,
                    root=_structure(row) if row is not None else None,
                    data=cache(partial(store.read, row.blob.sha256)) if row else _no_data,
                )
                try:
                    items = fetching.message_items(with_flags if uid in seen_now else request, msg)
                except MimeError:
                    failed = True
                    continue
                out += f"* {view.seq_of(uid)} FETCH ".encode()
                out += encode_value(ListValue(items)) + b"\r\n"
            return bytes(out), failed

        # Batches: the first responses leave early, many lines share a TLS record,
        # and memory holds one batch of bodies at most.
        size = _BATCH_WITH_BODIES if request.needs_bytes else _BATCH
        failed = False
        for start in range(0, len(live), size):
            chunk, bad = await asyncio.to_thread(render, live[start : start + size])
            failed = failed or bad
            self.io.write(chunk)
            await self.io.drain()
        if failed:
            raise No("A part has an unknown content transfer encoding", "UNKNOWN-CTE")
        return None, "FETCH completed"

    async def _fetch_fast(self, request: fetching.FetchRequest, live: list[int]) -> None:
        """FETCH of UID, FLAGS, MODSEQ and ENVELOPE only: lines written straight as bytes.

        No message is opened when the ENVELOPE cache is there, no value tree is
        built per message, and each distinct flag set is encoded once: ``UID
        FETCH 1:* (FLAGS)`` on 100,000 messages is one formatted line each.
        """
        view = self._view()
        envelopes: dict[int, bytes] = {}
        if request.wants("ENVELOPE") and live:
            envelopes = await self._envelopes(live)
        names = [i.name for i in request.items]
        with_envelope = "ENVELOPE" in names
        flag_text: dict[frozenset[str], bytes] = {}
        uids = view.uids

        def flags_item(uid: int) -> bytes:
            flags = view.flags_of(uid)
            text = flag_text.get(flags)
            if text is None:
                text = flag_text[flags] = b"FLAGS " + encode_value(flag_list(flags))
            return text

        def render_flags(batch: Sequence[int]) -> bytes:
            """``(UID FLAGS)`` or ``(FLAGS)`` alone: one formatting per line."""
            line = b"* %d FETCH (UID %d %b)\r\n" if names[0] == "UID" else b"* %d FETCH (%b)\r\n"
            with_uid = names[0] == "UID"
            if with_uid:
                return b"".join(line % (s, u, flags_item(u)) for s, u in _numbered(uids, batch))
            return b"".join(line % (s, flags_item(u)) for s, u in _numbered(uids, batch))

        def render(batch: Sequence[int]) -> bytes:
            out: list[bytes] = []
            for seq, uid in _numbered(uids, batch):
                if with_envelope and uid not in envelopes:
                    continue  # expunged between the sync and now: nothing to show
                parts: list[bytes] = []
                for name in names:
                    if name == "UID":
                        parts.append(b"UID %d" % uid)
                    elif name == "FLAGS":
                        parts.append(flags_item(uid))
                    elif name == "MODSEQ":
                        parts.append(b"MODSEQ (%d)" % view.modseqs.get(uid, 0))
                    else:
                        parts.append(b"ENVELOPE " + envelopes[uid])
                out.append(b"* %d FETCH (%b)\r\n" % (seq, b" ".join(parts)))
            return b"".join(out)

        if names in (["UID", "FLAGS"], ["FLAGS"]):
            render = render_flags
        for start in range(0, len(live), _FAST_BATCH):
            self.io.write(await asyncio.to_thread(render, live[start : start + _FAST_BATCH]))
            await self.io.drain()

    async def _envelopes(self, uids: list[int]) -> dict[int, bytes]:
        """The wire ENVELOPE of these UIDs (those still in the index), from the cache column;
        the messages without one are parsed and their cache written in the background."""
        mailbox_id = self._view().mailbox_id
        found: list[tuple[int, int, str, bytes | None]] = await self.db_read(
            lambda conn: backend.envelopes(conn, mailbox_id, uids)
        )
        out = {uid: env for uid, _, _, env in found if env is not None}
        missing = [(row_id, sha) for uid, row_id, sha, env in found if env is None]
        if missing:
            parsed = await asyncio.to_thread(self._cache_columns, missing)
            self._save_cache(parsed)
            for uid, row_id, _, env in found:
                if env is None:
                    out[uid] = parsed[row_id]["envelope"]
        return out

    def _cache_columns(self, rows: list[tuple[int, str]]) -> dict[int, dict[str, Any]]:
        """Parse messages (row id, blob) for the index cache: the columns by row id."""
        read = self.context.store.read
        return {row_id: index_cache.columns(read(sha)) for row_id, sha in rows}

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
        missing = [(r.id, r.blob.sha256) for r in found if r.structure is None]
        if structure and missing:
            parsed = await asyncio.to_thread(self._cache_columns, missing)
            self._save_cache(parsed)
            found = [
                replace(r, structure=str(parsed[r.id]["structure"])) if r.id in parsed else r
                for r in found
            ]
        return {r.uid: r for r in found}

    def _save_cache(self, parsed: dict[int, dict[str, Any]]) -> None:
        """Write the index cache of parsed messages in the background.

        The index is a cache (the message is the truth): the client need not wait
        for this commit, and a lost write only means parsing again next time.
        """

        async def save() -> None:
            try:
                await self.db_write(lambda conn: backend.save_cache(conn, parsed))
            except Exception:
                self.log("structure cache not written", logging.WARNING)

        task = asyncio.create_task(save())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

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
        return await self._flags_stored(changed)

    async def _flags_stored(self, changed: list[Change]) -> set[int]:
        """After our own flag changes commit: record them, wake the others, run the
        \\Seen hooks; the UIDs that became \\Seen."""
        view = self._view()
        seen = {
            c.uid
            for c in changed
            if "\\Seen" in c.flags and "\\Seen" not in view.flags.get(c.uid, frozenset())
        }
        view.record(changed)
        if changed:
            self.context.events.publish(view.mailbox_id)
        if seen:
            await self._seen(view.owner, view.mailbox_id, sorted(seen))
        return seen

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
                or word_of(modifiers[0]) != "UNCHANGEDSINCE"
                or not isinstance(modifiers[1], Number)
            ):
                raise Bad("Unknown STORE modifier")
            unchanged_since = modifiers[1].value
            self._enable_condstore()
        if len(args) < 3:
            raise Bad("STORE takes a message set, an action and flags")
        action = word_of(args[1])
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
        await self._flags_stored(changed)
        # .SILENT still reports what a conditional STORE changed (RFC 7162 §3.2).
        shown = {c.uid for c in changed} if unchanged_since is not None else set()
        for message_uid in live:
            if message_uid not in refused and (not silent or message_uid in shown):
                self.send(view.fetch_flags(message_uid, with_uid=uid))
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
        source_id, quota = view.mailbox_id, self.context.quota_bytes
        sums = self.context.sums

        def run(conn: Connection) -> list[tuple[int, int]]:
            current = index.get_mailbox(conn, target.owner, target.name)
            if current is None:
                raise No("Mailbox does not exist", "NONEXISTENT")
            found = backend.rows(conn, source_id, uids)
            if not move:  # a MOVE within one owner adds nothing to the quota
                used, _ = backend.quota_usage(conn, target.owner, sums)
                if used + sum(r.blob.size for r in found) > quota:
                    raise No("Mailbox storage quota exceeded", "OVERQUOTA")
            pairs = backend.copy_messages(conn, current, found)
            if move:
                backend.remove(conn, source_id, [s for s, _ in pairs])
            return pairs

        pairs = await self.db_write(run)
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

    async def _views(
        self, subject_has: Sequence[str] = (), *, bodies: bool = False
    ) -> list[LazyMessage]:
        """The selected messages for SEARCH/SORT/THREAD, built off the event loop.

        ``subject_has``: casemapped strings every message searched for must have
        in its Subject (:func:`imap.search.required_texts`). Messages whose cached
        Subject lacks one are left out before any object is built for them: a
        SUBJECT search over 100,000 messages tests 100,000 strings, then runs
        the whole program on the few that may match. (Without a cached Subject
        a message is kept, and the program reads it.)

        ``bodies``: the program reads message bodies; each view then carries the
        cached MIME structure, so the message is decrypted but not parsed again.
        """
        view = self._view()
        mailbox_id = view.mailbox_id
        uids = list(view.uids)
        flags_of = view.flags_of
        modseqs = view.modseqs
        content = ContentCache(self.context.store)
        terms = [t for t in subject_has if "\n" not in t]  # "\n" separates cached values

        def build(conn: Connection) -> list[LazyMessage]:
            date_column = mailbox_messages.c.internal_date
            date_type = date_column.type.dialect_impl(conn.dialect)
            convert: Callable[[Any], Any] = date_type.result_processor(conn.dialect, None) or _same
            columns = (
                mailbox_messages.c.uid,
                mailbox_messages.c.size,
                type_coerce(date_column, NullType()),  # converted on use
                mailbox_messages.c.blob_sha256,
                mailbox_messages.c.subject,
                mailbox_messages.c.structure if bodies else null(),
            )
            mine = mailbox_messages.c.mailbox_id == mailbox_id
            wanted: set[int] | None = None
            if terms:
                # Subjects alone first (a light scan); then the rest for those kept.
                subjects = backend.raw_rows(
                    conn, select(mailbox_messages.c.uid, columns[4]).where(mine)
                )
                casemap, first, more = searching.casemap, terms[0], terms[1:]
                wanted = {
                    uid
                    for uid, subject in subjects
                    if subject is None
                    or (first in (f := casemap(subject)) and all(t in f for t in more))
                }
            if wanted is not None and len(wanted) <= len(uids) // 4:
                found: list[tuple[Any, ...]] = []
                ordered = sorted(wanted)
                for start in range(0, len(ordered), 500):
                    chunk = mailbox_messages.c.uid.in_(ordered[start : start + 500])
                    found += backend.raw_rows(conn, select(*columns).where(mine, chunk))
            else:
                found = backend.raw_rows(conn, select(*columns).where(mine))
            facts = {row[0]: row for row in found}
            missing = (0, 0, None, "", None, None)
            out = []
            for seq, uid in enumerate(uids, start=1):
                if wanted is not None and uid not in wanted:
                    continue
                _, size, date, sha, subject, structure = facts.get(uid, missing)
                out.append(
                    LazyMessage(
                        seq=seq,
                        uid=uid,
                        flags=flags_of(uid),
                        size=size,
                        modseq=modseqs.get(uid, 0),
                        sha256=sha,
                        cache=content,
                        internal_date=_EPOCH if date is None else None,
                        date_raw=date,
                        convert=convert,
                        subject=subject,
                        structure=structure,
                    )
                )
            return out

        return await self.db_read(build)  # type: ignore[no-any-return]

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
        views = await self._views(
            searching.required_texts(program.key, "subject"), bodies="body" in program.needs
        )
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
        views = await self._views()
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
        views = await self._views()
        threads = await asyncio.to_thread(
            sorting.thread_messages, program, views, self._search_context()
        )
        text = sorting.format_threads(threads, use_uid=uid)
        self.untagged("THREAD" + (f" {text}" if text else ""))
        return None, "THREAD completed"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _structure(row: MessageRow) -> Part | None:
    if row.structure is None:
        return None
    return Part.from_json(json.loads(row.structure))


def _same(value: Any) -> Any:
    return value


def _no_data() -> bytes:
    raise AssertionError("the request did not need the message bytes")


def _numbered(uids: list[int], batch: Sequence[int]) -> Iterator[tuple[int, int]]:
    """(sequence number, UID) of each UID of ``batch`` still in ``uids`` (both ascending)."""
    pos = bisect.bisect_left(uids, batch[0]) if batch else 0
    for uid in batch:
        if pos >= len(uids) or uids[pos] != uid:
            pos = bisect.bisect_left(uids, uid, pos)
            if pos >= len(uids) or uids[pos] != uid:
                continue
        pos += 1
        yield pos, uid
