"""MSSC-MDN-1: the read receipt a patient's mailbox sends on the first display of a message.

IMAP calls :meth:`ReadReceipts.on_seen` after a transaction set ``\\Seen``.
For each message of a patient mailbox, one transaction locks the row, asks
:func:`policies.mdn_recipient` whether a receipt is due, and if so sets
``$MDNSent`` *and* enqueues the MDN: two sessions on two nodes racing on the
same message produce exactly one receipt, since the second finds the
keyword under the row lock.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import timedelta
from email.message import Message
from email.utils import getaddresses, parseaddr

from sqlalchemy import Connection, select

from annuaire import InsError, get_patient, parse_patient_address
from mssante import index
from mssante.clock import Clock
from mssante.db import Database
from mssante.schema import mailbox_messages
from mssante.store import BlobStore
from policies import MessageFacts, mdn_recipient, patient_display_name
from smtp.accept import parse_headers, read_header_block
from smtp.autoreply import build_mdn
from smtp.queue import enqueue_generated

__all__ = ["MDN_SENT", "ReadReceipts"]

log = logging.getLogger("mssante.mdn")

#: RFC 3503 keyword: the receipt for this message went out.
MDN_SENT = "$MDNSent"


class ReadReceipts:
    def __init__(
        self,
        *,
        db: Database,
        store: BlobStore,
        clock: Clock,
        patient_domain: str,
        hostname: str,
        max_age: timedelta,
        wake_queue: Callable[[], None],
        on_changed: Callable[[int], None] | None = None,
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.patient_domain = patient_domain
        self.hostname = hostname
        self.max_age = max_age
        self.wake_queue = wake_queue
        self.on_changed = on_changed

    async def on_seen(self, owner: str, mailbox_id: int, uids: Sequence[int]) -> None:
        """The IMAP ``\\Seen`` hook: only patient mailboxes send receipts."""
        try:
            ins = parse_patient_address(owner, self.patient_domain)
        except (InsError, ValueError):
            return
        if ins is None:
            return
        try:
            sent = await asyncio.to_thread(self._send, owner, ins, mailbox_id, list(uids))
        except Exception:
            log.exception("read receipts failed", extra={"fields": {"mailbox": mailbox_id}})
            return
        if sent:
            self.wake_queue()
            if self.on_changed is not None:
                self.on_changed(mailbox_id)

    def _send(self, owner: str, ins: str, mailbox_id: int, uids: list[int]) -> int:
        sent = 0
        for uid in uids:
            sent += self.db.run_transaction(
                lambda conn, uid=uid: self._one(conn, owner, ins, mailbox_id, uid)  # type: ignore[misc]
            )
        return sent

    def _one(self, conn: Connection, owner: str, ins: str, mailbox_id: int, uid: int) -> int:
        index.lock_mailbox(conn, mailbox_id)  # as IMAP's flag changes do: no lost $MDNSent
        row = conn.execute(
            select(mailbox_messages).where(
                mailbox_messages.c.mailbox_id == mailbox_id, mailbox_messages.c.uid == uid
            )
        ).first()
        if row is None:
            return 0
        flags = set(row.flags.split())
        head = read_header_block(self.store, row.blob_sha256)
        headers = parse_headers(head)
        facts = MessageFacts.from_headers(_sender(headers), headers, row.size)
        to = mdn_recipient(
            facts, delivered=row.delivery_key is not None, already_sent=MDN_SENT in flags
        )
        if to is None:
            return 0
        now = self.clock.now()
        mailbox = index.mailbox_by_id(conn, mailbox_id)
        assert mailbox is not None
        index.set_flags(conn, mailbox, uid, flags | {MDN_SENT})
        queue_id = f"{secrets.token_hex(6).upper()}R"
        data = build_mdn(
            original_headers=head,
            patient_address=owner,
            patient_display=patient_display_name(get_patient(conn, ins)),
            to=to,
            reporting_ua=self.hostname,
            now=now,
            message_id=f"{queue_id}.mdn@{self.hostname}",
        )
        enqueue_generated(
            conn,
            self.store,
            data,
            to=to,
            origin="mdn",
            client=owner,
            now=now,
            max_age=self.max_age,
            queue_id=queue_id,
        )
        log.info(
            "read receipt queued", extra={"fields": {"queue_id": queue_id, "mailbox": mailbox_id}}
        )
        return 1


def _sender(headers: Message) -> str:
    """The mailbox copy keeps no envelope: ``Return-Path``, else the first ``From:``."""
    _, path = parseaddr(str(headers.get("Return-Path", "")))
    if path:
        return path
    found = [a for _, a in getaddresses(headers.get_all("From", [])) if "@" in a]
    return found[0] if found else ""
