"""The commands on the messages of the selected mailbox."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache, partial

from sqlalchemy import Connection, select

from imap import backend
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
    parse_message,
)
from imap.selected import flag_list, uid_set_text
from imap.state import (
    Bad,
    No,
    SessionState,
    structure_json,
    word_of,
)
from mssante import index
from mssante.schema import mailbox_messages

__all__ = ["MessageCommands"]


#: FETCH responses rendered (then sent) at a time: flags-only, and with message bodies.
_BATCH = 5000
_BATCH_WITH_BODIES = 200
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
            self._cache_structures(parsed)
            found = [replace(r, structure=parsed[r.id]) if r.id in parsed else r for r in found]
        return {r.uid: r for r in found}

    def _cache_structures(self, parsed: dict[int, str]) -> None:
        """Write parsed structures to the index in the background.

        The index is a cache (the message is the truth): the client need not wait
        for this commit, and a lost write only means parsing again next time.
        """

        async def save() -> None:
            try:
                await self.db_write(lambda conn: backend.save_structure(conn, parsed))
            except Exception:
                self.log("structure cache not written", logging.WARNING)

        task = asyncio.create_task(save())
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    def _parse_rows(self, rows: list[MessageRow]) -> dict[int, str]:
        return {
            r.id: structure_json(parse_message(self.context.store.read(r.blob.sha256)))
            for r in rows
        }

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

        def run(conn: Connection) -> list[tuple[int, int]]:
            current = index.get_mailbox(conn, target.owner, target.name)
            if current is None:
                raise No("Mailbox does not exist", "NONEXISTENT")
            found = backend.rows(conn, source_id, uids)
            if not move:  # a MOVE within one owner adds nothing to the quota
                used, _ = backend.quota_usage(conn, target.owner)
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

    async def _views(self) -> list[LazyMessage]:
        """The selected messages for SEARCH/SORT/THREAD, built off the event loop."""
        view = self._view()
        mailbox_id = view.mailbox_id
        uids = list(view.uids)
        flags = {u: view.flags_of(u) for u in uids}
        modseqs = dict(view.modseqs)
        cache = ContentCache(self.context.store)

        def build(conn: Connection) -> list[LazyMessage]:
            facts = {
                u: (size, date, sha)
                for u, size, date, sha in conn.execute(
                    select(
                        mailbox_messages.c.uid,
                        mailbox_messages.c.size,
                        mailbox_messages.c.internal_date,
                        mailbox_messages.c.blob_sha256,
                    ).where(mailbox_messages.c.mailbox_id == mailbox_id)
                )
            }
            out = []
            for seq, uid in enumerate(uids, start=1):
                size, date, sha = facts.get(uid, (0, _EPOCH, ""))
                out.append(
                    LazyMessage(
                        seq=seq,
                        uid=uid,
                        flags=flags[uid],
                        internal_date=date,
                        size=size,
                        modseq=modseqs.get(uid, 0),
                        sha256=sha,
                        cache=cache,
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
        views = await self._views()
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


def _no_data() -> bytes:
    raise AssertionError("the request did not need the message bytes")
