"""The commands about mailboxes rather than messages (RFC 9051 §6.3, QUOTA, LIST-EXTENDED)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from imap import backend, listing, states
from imap.backend import SEPARATOR
from imap.grammar import (
    Atom,
    Command,
    ListValue,
    Number,
    Value,
    as_astring,
    as_sequence_set,
)
from imap.selected import SelectedView, uid_set_text
from imap.state import (
    STATUS_ITEMS,
    Bad,
    No,
    SessionState,
    word_of,
)
from mssante import index
from mssante.index import Mailbox, MailboxExists, MailboxNotFound

__all__ = ["MailboxCommands"]


def _expand(low: int | None, high: int | None) -> range:
    if low is None or high is None:
        return range(0)
    return range(min(low, high), max(low, high) + 1)


class MailboxCommands(SessionState):
    """SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, NAMESPACE, LIST, STATUS, QUOTA."""

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
        user, rev2 = self.user, self.rev2

        def load(conn: Connection) -> tuple[Mailbox, SelectedView, tuple[int, int], int] | None:
            mailbox = index.get_mailbox(conn, user, name)
            if mailbox is None:
                return None
            state = states.load(conn, mailbox, self.context.states)
            uids, flags = state.uids, state.flags
            view = SelectedView.from_state(mailbox, readonly, uids, flags, state.modseqs)
            # EXAMINE shows \\Recent without taking it from the next read-write
            # session; IMAP4rev2 has no \\Recent at all (RFC 9051 appendix E).
            if rev2:
                recent = (0, 0)
            elif readonly:
                recent = (mailbox.recent_uid, mailbox.uidnext)
            else:
                recent = backend.take_recent(conn, mailbox.id, mailbox.uidnext)
            unseen_uid = next((u for u in uids if "\\Seen" not in flags[u]), 0)
            return mailbox, view, recent, unseen_uid

        loaded = await self.db_write(load)
        if loaded is None:
            raise No("Mailbox does not exist", "NONEXISTENT")
        mailbox, view, recent, unseen_uid = loaded
        view.condstore = self.condstore
        view.qresync = self.qresync
        view.recent.update(u for u in view.uids if recent[0] <= u < recent[1])
        for response in view.flags_responses():
            self.send(response)
        self.untagged(f"{view.exists} EXISTS")
        if not self.rev2:
            self.untagged(f"{len(view.recent)} RECENT")
        if unseen_uid and not self.rev2:
            self.untagged(f"OK [UNSEEN {view.seq_of(unseen_uid)}] First unseen.")
        self.untagged(f"OK [UIDVALIDITY {mailbox.uidvalidity}] UIDs valid")
        self.untagged(f"OK [UIDNEXT {mailbox.uidnext}] Predicted next UID")
        self.untagged(f"OK [HIGHESTMODSEQ {mailbox.highestmodseq}] Highest")
        if qresync_args is not None:
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
            selection = [word_of(v) for v in first.items]
            args.pop(0)
        if len(args) < 2:
            raise Bad("LIST takes a reference and a pattern")
        reference, patterns = args[0], args[1]
        returns: list[Value] = []
        if len(args) == 4 and word_of(args[2]) == "RETURN" and isinstance(args[3], ListValue):
            returns = list(args[3].items)
        elif len(args) != 2:
            raise Bad("Invalid LIST arguments")
        pattern_values = list(patterns.items) if isinstance(patterns, ListValue) else [patterns]
        return_words = [word_of(v) for v in returns if not isinstance(v, ListValue)]
        if any(w not in {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS"} for w in return_words):
            raise Bad("Unknown LIST return option")
        status: list[str] | None = None
        for pos, value in enumerate(returns):
            if word_of(value) == "STATUS" and pos + 1 < len(returns):
                items = returns[pos + 1]
                if not isinstance(items, ListValue):
                    raise Bad("LIST RETURN STATUS needs a list")
                status = [word_of(v) for v in items.items]
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
            name = self._name_out(entry.name)
            extra = ' ("CHILDINFO" ("SUBSCRIBED"))' if entry.child_info else ""
            self.untagged(f'{verb} ({attrs}) "{SEPARATOR}" {name}{extra}')
            if status is not None and entry.name in by_name:
                await self._status_line(entry.name, status)

    async def cmd_status(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 2 or not isinstance(cmd.args[1], ListValue):
            raise Bad("STATUS takes a mailbox name and a list of items")
        items = [word_of(v) for v in cmd.args[1].items]
        if not items or any(i not in STATUS_ITEMS for i in items):
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
        encoded = self._name_out(mailbox.name)
        self.untagged(f"STATUS {encoded} ({body})")

    async def cmd_getquotaroot(self, cmd: Command) -> tuple[str | None, str]:
        if len(cmd.args) != 1:
            raise Bad("GETQUOTAROOT takes a mailbox name")
        name = self._name_in(cmd.args[0])
        await self._mailbox(name)
        encoded = self._name_out(name)
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
        sums = self.context.sums
        used, _ = await self.db_read(lambda conn: backend.quota_usage(conn, user, sums))
        # RFC 9208 counts STORAGE in units of 1024 octets.
        self.untagged(
            f'QUOTA "" (STORAGE {(used + 1023) // 1024} {self.context.quota_bytes // 1024})'
        )
