"""The citizen-messaging rules (MSS-C) as pure decisions: facts in, effects out.

Every rule about mail to and from ``<INS>@<patient domain>`` lives here and
nowhere else: who may write to whom (MSSC-INIT-1/2/3), what closes an
exchange (MSSC-FIN-1), when an automatic return goes out and to whom
(MSSC-RET-1, never in answer to automatic mail: RFC 3834), the test responder
(MSSC-TEST-1), read receipts (MSSC-MDN-1), names shown in ``From:``
(MSSC-FROM-1) and the notification rate limit (MSSC-NOTIF-1).

The queue runner gathers the facts (registry, conversation state, the
message's headers), calls one of the ``decide_*`` functions and executes the
effects it gets back, in one transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from annuaire import Patient, PatientStatus
from policies.texts import ReturnKind

__all__ = [
    "REPLY_MARKER",
    "AttachmentsCheck",
    "Deliver",
    "Drop",
    "Effect",
    "MessageFacts",
    "Notify",
    "SendAck",
    "SendReturn",
    "SetConversation",
    "closes_exchange",
    "decide_from_patient",
    "decide_test_responder",
    "decide_to_patient",
    "mdn_recipient",
    "notification_due",
    "patient_copy",
    "patient_display_name",
    "professional_display_name",
]

#: Header added to every message delivered to a patient: whether the patient
#: may answer its sender (a patient UI shows the closing banner on "closed").
REPLY_MARKER = "X-MSSante-Patient-Reply"

_COMMENT = re.compile(r"\([^()]*\)")  # RFC 5322 comments (CFWS), as RFC 3834 allows
_FIN = re.compile(r"(?<!\w)fin(?!\w)", re.IGNORECASE)
_TEST = re.compile(r"(?<!\w)test(?!\w)", re.IGNORECASE)
#: RFC 3834 §2 / RFC 2076: mail that announces itself as bulk or list traffic.
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})


def _decoded(value: object) -> str:
    """A header value as text: raw UTF-8 (RFC 6532) and RFC 2047 words both decoded.

    The lenient parser keeps raw 8-bit bytes as surrogates; they are read as
    UTF-8 first, so ``testé`` never becomes ``test`` plus a replacement
    character that a whole-word match would take for a word boundary.
    """
    if value is None:
        return ""
    if isinstance(value, Header):  # what compat32 makes of raw 8-bit: chunks of bytes
        return "".join(_chunk_text(chunk, charset) for chunk, charset in decode_header(value))
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (LookupError, UnicodeError, ValueError):
        return text


def _chunk_text(chunk: bytes | str, charset: str | None) -> str:
    if isinstance(chunk, str):
        return chunk
    try:
        return chunk.decode("utf-8" if charset in (None, "unknown-8bit") else charset, "replace")
    except LookupError:
        return chunk.decode("utf-8", "replace")


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class MessageFacts:
    """What the rules need to know about one message (from its envelope and headers)."""

    envelope_sender: str  # "" for the null reverse-path
    subject: str = ""  # decoded
    x_mss_mes: str = ""
    auto_submitted: str = ""
    precedence: str = ""
    content_type: str = ""
    size: int = 0
    from_addresses: tuple[str, ...] = ()
    from_name: str = ""  # display name of the first From: address, decoded
    reply_to: tuple[str, ...] = ()
    disposition_notification_to: tuple[str, ...] = ()

    @classmethod
    def from_headers(cls, envelope_sender: str, headers: Message, size: int) -> MessageFacts:
        def addresses(name: str) -> tuple[str, ...]:
            return tuple(a for _, a in getaddresses(headers.get_all(name, [])) if "@" in a)

        senders = getaddresses(headers.get_all("From", []))
        return cls(
            envelope_sender=envelope_sender,
            subject=_decoded(headers.get("Subject")),
            x_mss_mes=str(headers.get("X-MSS-MES", "")).strip(),
            auto_submitted=str(headers.get("Auto-Submitted", "")).strip(),
            precedence=str(headers.get("Precedence", "")).strip(),
            content_type=str(headers.get("Content-Type", "")).strip(),
            size=size,
            from_addresses=addresses("From"),
            from_name=_decoded(senders[0][0]).strip() if senders else "",
            reply_to=addresses("Reply-To"),
            disposition_notification_to=addresses("Disposition-Notification-To"),
        )

    @property
    def automatic(self) -> bool:
        """Mail no automatic message may answer (RFC 3834 §2, RFC 3464, RFC 8098)."""
        if not self.envelope_sender:
            return True
        auto = _COMMENT.sub(" ", self.auto_submitted).split(";", 1)[0].strip().lower()
        if auto and auto != "no":
            return True
        if self.precedence.lower() in _BULK_PRECEDENCE:
            return True
        return self.content_type.split(";", 1)[0].strip().lower() == "multipart/report"

    @property
    def professional_addresses(self) -> tuple[str, ...]:
        """The addresses a patient answers: ``From:`` and ``Reply-To:`` (else the sender)."""
        found = self.from_addresses + self.reply_to
        return found or ((self.envelope_sender,) if self.envelope_sender else ())


def closes_exchange(facts: MessageFacts) -> bool:
    """MSSC-FIN-1: the word FIN in the subject (whole word, any case) or ``X-MSS-MES: FIN``."""
    return facts.x_mss_mes.upper() == "FIN" or _FIN.search(facts.subject) is not None


# --------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class Deliver:
    """Deliver to the recipient; for a patient, with the reply marker and a ``From:`` name."""

    reply_marker: str | None = None  # "allowed" / "closed"
    display_name: str | None = None  # set on From: when it has none (MSSC-FROM-1)


@dataclass(frozen=True)
class SendReturn:
    """An automatic return (MSSC-RET-1) to ``to``, instead of delivering."""

    kind: ReturnKind
    to: str


@dataclass(frozen=True)
class SendAck:
    """The MSSC-TEST-1 acknowledgement to ``to``."""

    to: str


@dataclass(frozen=True)
class Drop:
    """Consume the message without delivering or answering (automatic mail, no loops)."""

    reason: str


@dataclass(frozen=True)
class SetConversation:
    professional: str
    ins: str
    open: bool


@dataclass(frozen=True)
class Notify:
    """A generic notification to the patient's personal address (MSSC-NOTIF-1)."""

    ins: str
    email: str


Effect = Deliver | SendReturn | SendAck | Drop | SetConversation | Notify


def _return_or_drop(facts: MessageFacts, kind: ReturnKind, to: str) -> tuple[Effect, ...]:
    """A return, unless the original is automatic mail (a return to it could loop)."""
    if facts.automatic or not to:
        return (Drop(f"{kind.value}; no automatic return to automatic mail"),)
    return (SendReturn(kind, to),)


# --------------------------------------------------------------------------- decisions


def decide_to_patient(
    facts: MessageFacts,
    patient: Patient,
    *,
    size_cap: int,
    notify: bool,
) -> tuple[Effect, ...]:
    """Mail from a professional (or automatic mail) for a patient space.

    ``notify`` says the patient may be notified now (an address is known, the
    channel is configured and the rate-limit window has passed).
    """
    sender = facts.envelope_sender
    if facts.size > size_cap:
        return _return_or_drop(facts, ReturnKind.TOO_BIG, sender)
    if patient.status is PatientStatus.CLOSED:
        return _return_or_drop(facts, ReturnKind.CLOSED, sender)
    if not patient.status.receives_mail():  # not created, opposed: one indistinguishable text
        return _return_or_drop(facts, ReturnKind.NOT_FOUND, sender)
    effects: list[Effect] = []
    if not facts.automatic:
        effects.extend(
            SetConversation(address, patient.ins, open=not closes_exchange(facts))
            for address in _unique(facts.professional_addresses)
        )
    effects.append(patient_copy(facts))
    if notify and patient.notification_email:
        effects.append(Notify(patient.ins, patient.notification_email))
    return tuple(effects)


def patient_copy(facts: MessageFacts) -> Deliver:
    """How a message looks in the patient's mailbox: the reply marker (MSSC-FIN-1) and
    a name on a professional's bare ``From:`` address (MSSC-FROM-1).

    It depends on the message alone, so the copy can be written before the
    delivery's transaction.
    """
    name = None
    if facts.from_addresses and not facts.from_name:
        name = professional_display_name(None, facts.from_addresses[0])
    return Deliver(
        reply_marker="closed" if closes_exchange(facts) else "allowed", display_name=name
    )


@dataclass(frozen=True)
class AttachmentsCheck:
    """The outcome of :func:`policies.attachments.check_patient_attachments`."""

    acceptable: bool


def decide_from_patient(
    facts: MessageFacts,
    *,
    recipient_is_patient: bool,
    conversation: bool | None,
    pharmacy_accepts_patients: bool,
    attachments: AttachmentsCheck,
) -> tuple[Effect, ...]:
    """Mail a patient sends to one recipient (MSSC-INIT-1/2/3, MSSC-ATT-1).

    ``conversation`` is the state of the exchange with that recipient: True
    open, False closed by a FIN, None never opened. Refusals go back to the
    patient as automatic returns.
    """
    sender = facts.envelope_sender
    if recipient_is_patient:
        return _return_or_drop(facts, ReturnKind.PATIENT_TO_PATIENT, sender)
    if not attachments.acceptable:
        return _return_or_drop(facts, ReturnKind.ATTACHMENT_REFUSED, sender)
    if conversation or pharmacy_accepts_patients:
        return (Deliver(),)
    if conversation is False:
        return _return_or_drop(facts, ReturnKind.CONVERSATION_CLOSED, sender)
    return _return_or_drop(facts, ReturnKind.NOT_INITIATED, sender)


def decide_test_responder(facts: MessageFacts, body_text: str) -> tuple[Effect, ...]:
    """MSSC-TEST-1: subject and body both say TEST → the acknowledgement, else nothing."""
    if facts.automatic:
        return (Drop("automatic mail to the test responder"),)
    if _TEST.search(facts.subject) and _TEST.search(body_text):
        return (SendAck(facts.envelope_sender),)
    return (Drop("not a test message (TEST missing from the subject or the body)"),)


def mdn_recipient(facts: MessageFacts, *, delivered: bool, already_sent: bool) -> str | None:
    """MSSC-MDN-1: where the read receipt goes on the first display, or None.

    The patient cannot decline. Only mail delivered to the patient counts (not
    a copy the patient's client appended); a message that is itself automatic,
    or that already had its receipt (``$MDNSent``), gets none.
    """
    if not delivered or already_sent or facts.automatic:
        return None
    if not facts.disposition_notification_to:
        return None
    return facts.disposition_notification_to[0]


def notification_due(last_sent: datetime | None, now: datetime, window: timedelta) -> bool:
    """At most one notification per patient per window (MSSC-NOTIF-1)."""
    return last_sent is None or now - last_sent >= window


def patient_display_name(patient: Patient) -> str | None:
    """MSSC-FROM-1: the name shown for mail a patient sends, from the registry."""
    name = " ".join(p.strip() for p in (patient.first_name, patient.last_name) if p and p.strip())
    return name or None


def professional_display_name(display: str | None, address: str) -> str:
    """MSSC-FROM-1: a professional is shown by name, else by the start of the address."""
    if display and display.strip():
        return display.strip()
    return address.rsplit("@", 1)[0]


def _unique(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value.lower(), None)
    return list(seen)
