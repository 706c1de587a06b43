"""The queue runner's hands for MSS-C: gather the facts, ask :mod:`policies`, do what it says.

Three kinds of queue rows go through here instead of plain delivery:

* mail a patient sent (``<INS>@<patient domain>``): screened by
  :func:`policies.decide_from_patient` before it is routed anywhere;
* mail for a patient space: :func:`policies.decide_to_patient` says deliver
  (with the reply marker, the professional's name, conversation state and a
  notification) or send an automatic return instead;
* mail for the MSSC-TEST-1 responder.

Each decision and all its effects (conversation state, automatic messages
enqueued, the append, the row's end) commit in one transaction, so a crash
never leaves a return without its row finished or the reverse. Automatic
messages are keyed in ``auto_replies``: one per original message and kind, even
when a peer delivers the same original twice.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import compat32
from email.utils import formataddr, parseaddr

from sqlalchemy import Connection

from annuaire import (
    TEST_RESPONDER,
    InsError,
    PatientMailbox,
    Responder,
    Route,
    accepts_patient_initiation,
    address_key,
    conversation_state,
    get_patient,
    last_notified,
    parse_patient_address,
    record_notification,
    set_conversation,
)
from mssante.logs import pseudonym
from mssante.store import BlobRef, BlobStore
from policies import (
    REPLY_MARKER,
    AttachmentsCheck,
    Deliver,
    Drop,
    Effect,
    MessageFacts,
    Notify,
    ReturnKind,
    SendAck,
    SendReturn,
    SetConversation,
    check_patient_attachments,
    decide_from_patient,
    decide_test_responder,
    decide_to_patient,
    notification_due,
    patient_copy,
)
from smtp.accept import (
    drop_fields,
    field_name,
    parse_headers,
    read_header_block,
)
from smtp.autoreply import build_auto_return, build_notification, build_test_ack
from smtp.queue import Work, append_delivery, enqueue_generated, first_time

__all__ = [
    "NOTIFICATION_ORIGIN",
    "NotificationSettings",
    "PatientDesk",
    "PatientSettings",
    "Staged",
]

log = logging.getLogger("mssante.mssc")

#: Queue origin of patient notifications: they leave through the smarthost only.
NOTIFICATION_ORIGIN = "notification"
#: Queue origin of the automatic messages enqueued here.
AUTO_ORIGIN = "mssc"
#: The MSSC-TEST-1 check reads at most this much of a message.
MAX_TEST_READ = 1024 * 1024


@dataclass(frozen=True)
class NotificationSettings:
    from_address: str
    url: str
    window: timedelta


@dataclass(frozen=True)
class Staged:
    """What the desk reads, checks and writes before the row's transaction."""

    head: bytes
    facts: MessageFacts
    attachments_ok: bool = True  # MSSC-ATT-1, for mail a patient sent
    text: str = ""  # the text parts, for the test responder
    #: The patient's copy (reply marker, named From:) and its blob, already stored.
    copy: tuple[Deliver, BlobRef] | None = None


@dataclass(frozen=True)
class PatientSettings:
    patient_domain: str
    size_cap: int  # LIM-1
    hostname: str
    #: ``From:`` of automatic returns and acknowledgements (null envelope sender).
    from_address: str
    max_age: timedelta  # queue lifetime of what we enqueue
    notifications: NotificationSettings | None = None


class PatientDesk:
    """Executes MSS-C decisions for the queue runner (one per node)."""

    def __init__(self, settings: PatientSettings, *, store: BlobStore) -> None:
        self.settings = settings
        self.store = store
        #: MSSC-ATT-1 verdicts by blob: a patient's message to several recipients is
        #: parsed once, not once per queue row (bounded: oldest verdicts go first).
        self._attachments: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()  # rows are staged in worker threads

    # ------------------------------------------------------------------ which rows

    def patient_of(self, address: str) -> str | None:
        """The INS when ``address`` is a patient of our patient domain."""
        try:
            return parse_patient_address(address, self.settings.patient_domain)
        except (InsError, ValueError):
            return None

    def sent_by_patient(self, work: Work) -> bool:
        return bool(work.message.sender) and self.patient_of(work.message.sender) is not None

    def concerns(self, address: str) -> bool:
        """Is ``address`` in our patient domain (a patient space or the test responder)?"""
        return address.rpartition("@")[2].lower() == self.settings.patient_domain

    # ------------------------------------------------------------------ before the transaction

    def stage(self, work: Work) -> Staged:
        """Read (and write the patient's copy) before the row's transaction: no lock held
        while a 25 MB message is parsed or copied."""
        blob = work.message.blob
        head = read_header_block(self.store, blob.sha256)
        attachments_ok = self._attachments_ok(blob) if self.sent_by_patient(work) else True
        facts = MessageFacts.from_headers(
            work.message.sender, parse_headers(head), work.message.size
        )
        staged = Staged(head, facts, attachments_ok)
        if not self.concerns(work.recipient) or self.sent_by_patient(work):
            return staged
        if address_key(work.recipient).startswith(f"{TEST_RESPONDER}@"):
            return dataclasses.replace(staged, text=self._text(blob))
        copy = patient_copy(facts)
        return dataclasses.replace(staged, copy=(copy, self._marked(blob, head, copy)))

    def _attachments_ok(self, blob: BlobRef) -> bool:
        """MSSC-ATT-1 on the whole message, read and parsed once per message."""
        with self._lock:
            verdict = self._attachments.get(blob.sha256)
        if verdict is None:
            verdict = not check_patient_attachments(self.store.read(blob.sha256))
            with self._lock:
                self._attachments[blob.sha256] = verdict
                while len(self._attachments) > 64:
                    self._attachments.popitem(last=False)
        return verdict

    def _text(self, blob: BlobRef) -> str:
        """The text parts of a message (bounded), for the TEST check."""
        data = bytearray()
        for chunk in self.store.open(blob.sha256):
            data += chunk
            if len(data) >= MAX_TEST_READ:
                break
        message = message_from_bytes(bytes(data[:MAX_TEST_READ]), policy=compat32)
        texts = []
        for part in message.walk():
            if part.get_content_maintype() != "text":
                continue
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    texts.append(payload.decode(charset, "replace"))
                except LookupError:
                    texts.append(payload.decode("utf-8", "replace"))
        return "\n".join(texts)

    # ------------------------------------------------------------------ in the transaction

    def screen_patient_mail(
        self, conn: Connection, work: Work, found: Route, staged: Staged, now: datetime
    ) -> bool:
        """MSSC-INIT-1/2/3 and MSSC-ATT-1 for mail a patient sent; True when it was consumed."""
        if isinstance(found, Responder):
            return False  # the responder answers anyone who writes TEST
        ins = self.patient_of(work.message.sender)
        assert ins is not None
        effects = decide_from_patient(
            staged.facts,
            recipient_is_patient=isinstance(found, PatientMailbox),
            conversation=conversation_state(conn, work.recipient, ins),
            pharmacy_accepts_patients=accepts_patient_initiation(conn, work.recipient),
            attachments=AttachmentsCheck(staged.attachments_ok),
        )
        if any(isinstance(e, Deliver) for e in effects):
            return False
        self._run(conn, work, effects, staged, now)
        return True

    def deliver_to_patient(
        self, conn: Connection, work: Work, found: PatientMailbox, staged: Staged, now: datetime
    ) -> int | None:
        """Deliver or return; the mailbox id appended to, None when nothing was appended."""
        patient = get_patient(conn, found.ins)
        notes = self.settings.notifications
        notify = notes is not None and notification_due(
            last_notified(conn, patient.ins), now, notes.window
        )
        effects = decide_to_patient(
            staged.facts, patient, size_cap=self.settings.size_cap, notify=notify
        )
        return self._run(conn, work, effects, staged, now, owner=address_key(work.recipient))

    def answer_test(self, conn: Connection, work: Work, staged: Staged, now: datetime) -> None:
        effects = decide_test_responder(staged.facts, staged.text)
        self._run(conn, work, effects, staged, now)

    # ------------------------------------------------------------------ effects

    def _run(
        self,
        conn: Connection,
        work: Work,
        effects: tuple[Effect, ...],
        staged: Staged,
        now: datetime,
        *,
        owner: str | None = None,
    ) -> int | None:
        head = staged.head
        appended: int | None = None
        for effect in effects:
            if isinstance(effect, SetConversation):
                set_conversation(conn, effect.professional, effect.ins, open=effect.open, now=now)
            elif isinstance(effect, Deliver):
                assert owner is not None
                copy = staged.copy
                blob = (
                    copy[1]
                    if copy is not None and copy[0] == effect
                    else self._marked(work.message.blob, head, effect)
                )
                appended = append_delivery(conn, work, owner, blob, now=now)
            elif isinstance(effect, SendReturn):
                self._send_return(conn, work, effect, head, now)
            elif isinstance(effect, SendAck):
                self._send_ack(conn, work, effect, head, now)
            elif isinstance(effect, Notify):
                self._notify(conn, work, effect, now)
            elif isinstance(effect, Drop):
                log.info(
                    "not delivered, no return",
                    extra={"fields": {"queue_id": work.message.queue_id, "reason": effect.reason}},
                )
        return appended

    def _marked(self, blob: BlobRef, head: bytes, deliver: Deliver) -> BlobRef:
        """The message as the patient gets it: our reply marker, a named ``From:``.

        A marker the sender wrote is dropped (only ours may tell the patient
        UI whether replies are allowed).
        """
        marker = REPLY_MARKER.lower().encode()
        rename = deliver.display_name is not None
        prefix = (
            f"{REPLY_MARKER}: {deliver.reply_marker}\r\n".encode() if deliver.reply_marker else b""
        )
        headers = parse_headers(head)
        if rename:
            _, addr = parseaddr(str(headers.get("From", "")))
            named = formataddr((deliver.display_name or "", addr), charset="utf-8")
            prefix += f"From: {named}\r\n".encode()

        def drop(field: bytes) -> bool:
            name = field_name(field)
            return name == marker or (rename and name == b"from")

        kept = drop_fields(head, drop)

        def chunks() -> Iterator[bytes]:
            yield prefix + kept
            skip = len(head)
            for chunk in self.store.open(blob.sha256):
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield chunk[skip:]
                skip = 0

        return self.store.put(chunks())

    def _enqueue_auto(
        self,
        conn: Connection,
        work: Work,
        kind: str,
        to: str,
        build: Callable[[str], bytes],
        now: datetime,
    ) -> None:
        queue_id = f"{work.message.queue_id}M{secrets.token_hex(3).upper()}"
        if not first_time(conn, kind, work, queue_id, now):
            log.info(
                "automatic message already sent",
                extra={"fields": {"queue_id": work.message.queue_id, "kind": kind}},
            )
            return
        enqueue_generated(
            conn,
            self.store,
            build(f"{queue_id}.{kind}@{self.settings.hostname}"),
            to=to,
            origin=AUTO_ORIGIN,
            client=self.settings.hostname,
            now=now,
            max_age=self.settings.max_age,
            queue_id=queue_id,
        )
        log.info(
            "automatic message queued",
            extra={
                "fields": {
                    "queue_id": queue_id,
                    "about": work.message.queue_id,
                    "kind": kind,
                    "to": pseudonym(to),
                }
            },
        )

    def _send_return(
        self, conn: Connection, work: Work, effect: SendReturn, head: bytes, now: datetime
    ) -> None:
        def build(message_id: str) -> bytes:
            return build_auto_return(
                effect.kind,
                original_headers=head,
                recipient=work.recipient,
                to=effect.to,
                reporting_mta=self.settings.hostname,
                from_address=self.settings.from_address,
                arrival_date=work.message.received_at,
                now=now,
                message_id=message_id,
                size_limit=self.settings.size_cap if effect.kind is ReturnKind.TOO_BIG else None,
            )

        self._enqueue_auto(conn, work, f"return.{effect.kind.value}", effect.to, build, now)

    def _send_ack(
        self, conn: Connection, work: Work, effect: SendAck, head: bytes, now: datetime
    ) -> None:
        def build(message_id: str) -> bytes:
            return build_test_ack(
                original_headers=head,
                from_address=address_key(work.recipient),
                to=effect.to,
                now=now,
                message_id=message_id,
            )

        self._enqueue_auto(conn, work, "test-ack", effect.to, build, now)

    def _notify(self, conn: Connection, work: Work, effect: Notify, now: datetime) -> None:
        notes = self.settings.notifications
        assert notes is not None
        queue_id = f"{work.message.queue_id}N{secrets.token_hex(3).upper()}"
        data = build_notification(
            from_address=notes.from_address,
            to=effect.email,
            url=notes.url,
            now=now,
            message_id=f"{queue_id}.notification@{self.settings.hostname}",
        )
        enqueue_generated(
            conn,
            self.store,
            data,
            to=effect.email,
            origin=NOTIFICATION_ORIGIN,
            client=self.settings.hostname,
            now=now,
            max_age=self.settings.max_age,
            queue_id=queue_id,
        )
        record_notification(conn, effect.ins, now=now)
        log.info(
            "notification queued",
            extra={"fields": {"queue_id": queue_id, "about": work.message.queue_id}},
        )
