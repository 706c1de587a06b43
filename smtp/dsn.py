"""Delivery status notifications (RFC 3464, RFC 3461, RFC 6522), pure and sans-IO.

Hospital software reads these reports as the MSSanté delivery receipt, so the
machine part must be exact and nothing a remote party controls (addresses,
diagnostics, the original message) may add a header line or a DSN field. The
DSN is assembled by hand, byte by byte, rather than through the ``email``
generator: the generator re-folds and re-encodes, and RET=FULL promises the
original back byte-exact.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy as _policy
from email import quoprimime
from email.parser import BytesHeaderParser
from email.utils import format_datetime, formataddr
from typing import Literal, get_args

__all__ = [
    "MAX_FULL_ORIGINAL",
    "MAX_HEADER_BLOCK",
    "MAX_RECIPIENTS",
    "Action",
    "RecipientStatus",
    "Report",
    "ReturnContent",
    "build_dsn",
    "must_not_send_dsn",
    "notify_wants",
    "parse_notify",
    "parse_ret",
    "xtext_decode",
    "xtext_encode",
]

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
ReturnContent = Literal["headers", "full"]

MAX_FULL_ORIGINAL = 1024 * 1024
"""Above this, RET=FULL falls back to headers: a bounce must not double a big upload."""
MAX_HEADER_BLOCK = 64 * 1024
"""Cap on the returned header block: a hostile original cannot inflate the DSN."""
MAX_RECIPIENTS = 1000
"""One report per transaction; RFC 5321 requires 100 recipients, we accept more."""
MAX_LINE = 998
"""RFC 5322 §2.1.1 line limit, applied to every field line we write."""
MAX_XTEXT = 1000
"""ENVID is limited to 100 and ORCPT to 500 characters (RFC 3461); leave headroom."""

_CRLF = b"\r\n"
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
_CLASSES: dict[str, frozenset[str]] = {
    "delivered": frozenset("2"),
    "relayed": frozenset("2"),
    "expanded": frozenset("2"),
    "delayed": frozenset("4"),
    "failed": frozenset("45"),  # 4.4.7 "delivery time expired" ends as a failure
}
_MSG_ID = re.compile(r"<[!-;=?-~]{1,980}>")
_LINE_BREAKS = "\u0085\u2028\u2029"  # str.splitlines() breaks on these too


# ---------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """One per-recipient block of the report; validated so a bad status never ships."""

    final_recipient: str
    action: Action
    status: str
    original_recipient: str | None = None
    diagnostic_code: str | None = None
    remote_mta: str | None = None
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None

    def __post_init__(self) -> None:
        if self.action not in _CLASSES:
            raise ValueError(f"unknown DSN action {self.action!r}")
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"status {self.status!r} is not an RFC 3463 code like 5.1.1")
        if self.status[0] not in _CLASSES[self.action]:
            raise ValueError(f"status {self.status} does not fit action {self.action!r}")


@dataclass(frozen=True, slots=True)
class Report:
    """Everything one DSN says about one received message."""

    reporting_mta: str
    original_envelope_id: str | None
    arrival_date: datetime
    recipients: tuple[RecipientStatus, ...]
    return_content: ReturnContent = "headers"

    def __post_init__(self) -> None:
        if not 1 <= len(self.recipients) <= MAX_RECIPIENTS:
            raise ValueError(f"a report needs 1 to {MAX_RECIPIENTS} recipients")
        if self.return_content not in get_args(ReturnContent):
            raise ValueError(f"return_content must be headers or full: {self.return_content!r}")


# ---------------------------------------------------------------- ESMTP parameters


_NOTIFY_WORDS = frozenset({"SUCCESS", "FAILURE", "DELAY"})
_ACTION_WORD = {
    "delivered": "SUCCESS",
    "relayed": "SUCCESS",
    "expanded": "SUCCESS",
    "failed": "FAILURE",
    "delayed": "DELAY",
}


def must_not_send_dsn(sender: str) -> bool:
    """True for the null reverse-path: a DSN to it could only bounce again.

    RFC 3461 §6.2 and RFC 5321 §4.5.5 forbid sending a DSN for a message whose
    envelope sender is null, which is what stops bounce loops between MTAs.
    Everything else (even ``postmaster@``) is a real mailbox and gets its DSN.
    """
    value = sender.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1].strip()
    return value == ""


def notify_wants(notify: frozenset[str] | None, action: str) -> bool:
    """Whether RFC 3461 NOTIFY asks for a report on this action.

    ``None`` (no NOTIFY) is the default: failures, and delays at the MTA's option
    (we send them), never success. ``relayed`` maps to SUCCESS: we only report it
    when the next hop does not speak DSN, which is the caller's decision.
    """
    try:
        word = _ACTION_WORD[action]
    except KeyError:
        raise ValueError(f"unknown DSN action {action!r}") from None
    if notify is None:
        return word in {"FAILURE", "DELAY"}
    if "NEVER" in notify:
        return False
    return word in notify


def parse_notify(value: str) -> frozenset[str]:
    """Parse NOTIFY=: ``NEVER`` alone, or a comma list of SUCCESS, FAILURE, DELAY."""
    if not value:
        raise ValueError("NOTIFY needs a value: NEVER or SUCCESS,FAILURE,DELAY")
    words = [w.upper() for w in value.split(",")]
    if "" in words:
        raise ValueError(f"NOTIFY={value!r} has an empty item")
    if "NEVER" in words:
        if len(words) > 1:
            raise ValueError("NOTIFY=NEVER cannot be combined with other keywords")
        return frozenset({"NEVER"})
    unknown = sorted(set(words) - _NOTIFY_WORDS)
    if unknown:
        raise ValueError(f"NOTIFY has unknown keyword(s) {', '.join(unknown)}")
    return frozenset(words)


def parse_ret(value: str) -> ReturnContent:
    """Parse RET=: HDRS or FULL, case-insensitive."""
    word = value.upper()
    if word == "HDRS":
        return "headers"
    if word == "FULL":
        return "full"
    raise ValueError(f"RET must be HDRS or FULL, not {value!r}")


def _is_xchar(byte: int) -> bool:
    return 0x21 <= byte <= 0x7E and byte not in (0x2B, 0x3D)  # not "+" nor "="


def xtext_encode(value: str) -> str:
    """Encode ENVID/ORCPT as RFC 3461 §4 xtext (UTF-8 bytes, ``+XX`` escapes)."""
    return "".join(chr(b) if _is_xchar(b) else f"+{b:02X}" for b in value.encode("utf-8"))


_HEX = frozenset(b"0123456789ABCDEF")


def xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext; refuse anything the grammar does not allow."""
    if len(value) > MAX_XTEXT:
        raise ValueError(f"xtext longer than {MAX_XTEXT} characters")
    try:
        raw = value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("xtext must be ASCII") from None
    out = bytearray()
    i = 0
    while i < len(raw):
        byte = raw[i]
        if byte == 0x2B:  # "+"
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise ValueError(f"malformed xtext escape at offset {i}: needs +XX, uppercase hex")
            out.append(int(pair, 16))
            i += 3
            continue
        if not _is_xchar(byte):
            raise ValueError(f"character {chr(byte)!r} at offset {i} must be +XX-escaped")
        out.append(byte)
        i += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("xtext does not decode to UTF-8") from None


# ---------------------------------------------------------------- sanitising


def _clean(value: str, limit: int = MAX_LINE) -> str:
    """Drop control and line-break characters, cap length: no injected lines or fields."""
    kept = "".join(
        c for c in value if not (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or c in _LINE_BREAKS)
    )
    return kept[: max(limit, 0)].strip()


def _ascii(value: str, limit: int) -> str:
    """7-bit form for the machine part: non-ASCII as RFC 6533 ``\\x{HEX}``, never cut mid-escape."""
    out: list[str] = []
    size = 0
    for c in value:
        piece = c if ord(c) < 0x80 else f"\\x{{{ord(c):X}}}"
        if size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _field(name: str, value: str) -> str:
    """``Name: value`` with the value cleaned, made ASCII and capped to one legal line."""
    return f"{name}: {_ascii(_clean(value), MAX_LINE - len(name) - 2)}"


def _typed(value: str, default_type: str) -> str:
    """``type; value`` fields (RFC 3464) keep the caller's type or get the default."""
    return value if ";" in value else f"{default_type}; {value}"


def _address_field(name: str, address: str) -> str:
    """``Name: rfc822; addr``, or ``utf-8;`` for an SMTPUTF8 address (RFC 6533)."""
    final = _clean(address)
    kind = "rfc822" if final.isascii() else "utf-8"
    return _field(name, f"{kind}; {final}")


def _mailbox(addr: str) -> str:
    """An address fit for ``<…>``: no controls, no angle brackets to close it early."""
    return _clean(addr.replace("<", "").replace(">", ""), 900)


# ---------------------------------------------------------------- the original


def _canonical(data: bytes) -> bytes:
    """Bare LF to CRLF (and a stray CR to CRLF): SMTP only carries CRLF lines."""
    return re.sub(rb"\r?\n|\r", b"\r\n", data)


def _original_headers(original: bytes) -> bytes:
    """The original's header block (to the first blank line), CRLF, capped at 64 KiB.

    Without a blank line the whole input counts as headers. A cut lands on a
    line boundary when one exists, so no half header line is returned.
    """
    head = original[: 2 * MAX_HEADER_BLOCK + 4]  # bound the work before scanning
    match = re.search(rb"\r?\n\r?\n", head)
    block = head[: match.start()] if match else head
    if block.startswith((b"\r\n", b"\n")) or not block.strip(b"\r\n"):
        block = b""  # original starts with a blank line: no headers at all
    block = _canonical(block).rstrip(b"\r\n")
    if len(block) > MAX_HEADER_BLOCK - 2:
        cut = block.rfind(b"\r\n", 0, MAX_HEADER_BLOCK - 2)
        block = block[: cut if cut > 0 else MAX_HEADER_BLOCK - 2]
    return block + _CRLF if block else b""


def _original_message_id(headers: bytes) -> str | None:
    """The original's Message-ID, if it has a well-formed one (for threading)."""
    parsed = BytesHeaderParser(policy=_policy.compat32).parsebytes(headers)
    raw = parsed.get("Message-ID")
    match = _MSG_ID.search(str(raw)) if raw is not None else None
    return match.group(0) if match else None


def _encoding(body: bytes) -> str:
    """The honest Content-Transfer-Encoding for bytes we pass through untouched."""
    if b"\0" in body or any(len(line) > MAX_LINE for line in body.split(_CRLF)):
        return "binary"
    if any(b >= 0x80 for b in body):
        return "8bit"
    return "7bit"


# ---------------------------------------------------------------- human part


_ACTION_TEXT: dict[str, tuple[str, str]] = {
    "failed": ("non remis", "not delivered"),
    "delayed": ("remise retardée", "delayed"),
    "delivered": ("remis", "delivered"),
    "relayed": ("relayé", "relayed"),
    "expanded": ("distribué à une liste", "expanded to a list"),
}
_KNOWN_CODES: dict[str, tuple[str, str]] = {
    "5.1.1": (
        "boîte aux lettres inconnue : cette adresse n'existe pas chez le destinataire",
        "unknown mailbox: this address does not exist at the destination",
    ),
    "5.7.1": (
        "refusé : destinataire hors de l'espace de confiance MSSanté ou envoi non autorisé",
        "refused: recipient outside the MSSanté trust space, or sending not permitted",
    ),
    "5.3.4": ("message trop volumineux", "message too large"),
    "5.2.3": ("message trop volumineux", "message too large"),
    "4.4.1": ("pas de réponse du serveur destinataire", "no answer from the recipient's server"),
    "4.4.2": (
        "connexion perdue avec le serveur destinataire",
        "connection to the recipient's server was lost",
    ),
    "4.4.7": (
        "délai de remise expiré, le message n'a pu être remis à temps",
        "delivery time expired, the message could not be delivered in time",
    ),
}
_SUCCESS_TEXT: dict[str, tuple[str, str]] = {
    "delivered": ("déposé dans la boîte aux lettres", "placed in the mailbox"),
    "relayed": (
        "transmis à un serveur qui ne fournit pas d'accusé de remise",
        "passed to a server that does not send delivery receipts",
    ),
    "expanded": ("transmis aux membres de la liste", "passed on to the list members"),
}
_CLASS_TEXT: dict[str, tuple[str, str]] = {
    "4": ("erreur temporaire", "temporary error"),
    "5": ("erreur permanente", "permanent error"),
}
_HEADLINE: dict[str, tuple[str, str]] = {
    "Failure": (
        "Votre message n'a pas pu être remis à au moins un destinataire.",
        "Your message could not be delivered to at least one recipient.",
    ),
    "Delay": (
        "La remise de votre message est retardée ; de nouvelles tentatives auront lieu.",
        "Delivery of your message is delayed; it will be retried.",
    ),
    "Success": (
        "Votre message a été remis.",
        "Your message has been delivered.",
    ),
}
_SUBJECT: dict[str, str] = {
    "Failure": "Avis de non-remise / Delivery Status Notification (Failure)",
    "Delay": "Avis de retard de remise / Delivery Status Notification (Delay)",
    "Success": "Accusé de remise / Delivery Status Notification (Success)",
}
_FROM_NAME = "Système de messagerie (MAILER-DAEMON)"


def _outcome(report: Report) -> Literal["Failure", "Delay", "Success"]:
    actions = {r.action for r in report.recipients}
    if "failed" in actions:
        return "Failure"
    if "delayed" in actions:
        return "Delay"
    return "Success"


def _explain(rcpt: RecipientStatus) -> tuple[str, str]:
    """One line per language from the action, then the known code or the status class."""
    if rcpt.status in _KNOWN_CODES:
        reason = _KNOWN_CODES[rcpt.status]
    elif rcpt.status[0] == "2":
        reason = _SUCCESS_TEXT[rcpt.action]
    else:
        reason = _CLASS_TEXT[rcpt.status[0]]
    action = _ACTION_TEXT[rcpt.action]
    return f"{action[0]} ({rcpt.status}) : {reason[0]}", f"{action[1]} ({rcpt.status}): {reason[1]}"


def _human(report: Report, truncated: bool, with_body: bool) -> str:
    """French first, then English; names each recipient, never quotes the body."""
    mta = _clean(report.reporting_mta, 255)
    arrival = format_datetime(report.arrival_date)
    outcome = _outcome(report)
    fr = [
        f"Ce message est généré automatiquement par le système de messagerie {mta}.",
        f"Il concerne votre message reçu le {arrival}.",
        "",
        _HEADLINE[outcome][0],
        "",
    ]
    en = [
        f"This is an automatically generated Delivery Status Notification from {mta}.",
        f"It is about your message received on {arrival}.",
        "",
        _HEADLINE[outcome][1],
        "",
    ]
    for rcpt in report.recipients:
        addr = _clean(rcpt.final_recipient)
        line_fr, line_en = _explain(rcpt)
        fr.append(f"- {addr} : {line_fr}")
        en.append(f"- {addr}: {line_en}")
        if rcpt.diagnostic_code:
            diag = _clean(rcpt.diagnostic_code)
            fr.append(f"  Réponse du serveur distant : {diag}")
            en.append(f"  Remote server said: {diag}")
        if rcpt.action == "delayed" and rcpt.will_retry_until is not None:
            until = format_datetime(rcpt.will_retry_until)
            fr.append(f"  Nouvelles tentatives jusqu'au {until}.")
            en.append(f"  Retrying until {until}.")
    fr.append("")
    en.append("")
    if truncated:
        fr.append("Le message d'origine dépasse 1 Mio : seuls ses en-têtes sont joints.")
        en.append("The original message is over 1 MiB: only its headers are attached.")
    elif with_body:
        fr.append("Le message d'origine est joint en entier.")
        en.append("The original message is attached in full.")
    else:
        fr.append("Les en-têtes du message d'origine sont joints.")
        en.append("The headers of the original message are attached.")
    return "\n".join([*fr, "", "-" * 72, "", *en, ""])


def _qp(text: str) -> bytes:
    """Quoted-printable UTF-8, CRLF lines: keeps the human part 7-bit and lines short."""
    octets = text.encode("utf-8").decode("latin-1")  # quoprimime escapes code points < 256
    return quoprimime.body_encode(octets, maxlinelen=76, eol="\r\n").encode("ascii")


# ---------------------------------------------------------------- machine part


def _delivery_status(report: Report) -> bytes:
    """RFC 3464 §2.2/2.3 fields: per-message block, then one block per recipient."""
    blocks: list[list[str]] = []
    head = [_field("Reporting-MTA", "dns; " + _clean(report.reporting_mta, 255))]
    if report.original_envelope_id is not None:
        head.append(_field("Original-Envelope-Id", report.original_envelope_id))
    head.append(_field("Arrival-Date", format_datetime(report.arrival_date)))
    blocks.append(head)
    for rcpt in report.recipients:
        lines: list[str] = []
        if rcpt.original_recipient is not None:
            lines.append(_field("Original-Recipient", _typed(rcpt.original_recipient, "rfc822")))
        lines.append(_address_field("Final-Recipient", rcpt.final_recipient))
        lines.append(_field("Action", rcpt.action))
        lines.append(_field("Status", rcpt.status))
        if rcpt.remote_mta is not None:
            lines.append(_field("Remote-MTA", "dns; " + _clean(rcpt.remote_mta, 255)))
        if rcpt.diagnostic_code is not None:
            lines.append(_field("Diagnostic-Code", _typed(rcpt.diagnostic_code, "smtp")))
        if rcpt.last_attempt is not None:
            lines.append(_field("Last-Attempt-Date", format_datetime(rcpt.last_attempt)))
        if rcpt.action == "delayed" and rcpt.will_retry_until is not None:
            lines.append(_field("Will-Retry-Until", format_datetime(rcpt.will_retry_until)))
        blocks.append(lines)
    text = "\r\n\r\n".join("\r\n".join(block) for block in blocks) + "\r\n"
    return text.encode("ascii")


# ---------------------------------------------------------------- assembly


def _boundary(parts: list[bytes], seed: str) -> str:
    """Deterministic boundary that occurs in no part (RFC 2046 §5.1.1)."""
    for counter in range(1000):
        digest = hashlib.sha256(f"{seed}/{counter}".encode("utf-8", "replace")).hexdigest()
        boundary = f"=_mssante-dsn-{digest[:32]}"
        if not any(boundary.encode() in part for part in parts):
            return boundary
    raise AssertionError("no free MIME boundary")  # pragma: no cover - 1000 sha256 collisions


def _header(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode()


def _encoded_header(name: str, value: str) -> bytes:
    """RFC 2047 words where needed, folded with CRLF: the Subject is French."""
    folded: str = _policy.SMTP.header_factory(name, value).fold(policy=_policy.SMTP)
    return folded.encode("ascii")


_TEXT_PART = (
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"
)
"""Part header lines for a human text made by :func:`_qp`."""


def _message_id(message_id: str, builder: str) -> str:
    """The caller's Message-ID without its angle brackets, cleaned; refuse an empty one."""
    mid = _clean(message_id, 900).strip("<>")
    if not mid:
        raise ValueError(f"{builder} needs a message_id")
    return mid


def _from_header(display_name: str, address: str) -> str:
    """``Name <addr>``: the name RFC 2047-encoded when needed, neither part can add a line.

    The name is shortened (dropped at worst) so the whole From line fits 998 octets.
    """
    name, mailbox = _clean(display_name, 200), _mailbox(address)
    value = formataddr((name, mailbox), charset="utf-8")
    while name and len(value) > MAX_LINE - len("From: "):
        name = name[: len(name) * 3 // 4].strip()
        value = formataddr((name, mailbox), charset="utf-8")
    return value


def _top_headers(
    *,
    from_: str,
    to: str,
    subject: str,
    now: datetime,
    message_id: str,
    in_reply_to: str | None,
    auto_submitted: str,
) -> bytes:
    """From to MIME-Version, shared by every message the operator writes itself.

    ``from_`` is a ready header value (see :func:`_from_header`), ``message_id``
    comes from :func:`_message_id` and ``in_reply_to`` from
    :func:`_original_message_id`; ``to`` and ``subject`` are cleaned here.
    """
    out = bytearray()
    out += _header("From", from_)
    out += _header("To", f"<{_mailbox(to)}>")
    out += _encoded_header("Subject", _clean(subject))
    out += _header("Date", format_datetime(now))
    out += _header("Message-ID", f"<{message_id}>")
    if in_reply_to is not None:
        out += _header("In-Reply-To", in_reply_to)
        out += _header("References", in_reply_to)
    out += _header("Auto-Submitted", auto_submitted)
    out += _header("MIME-Version", "1.0")
    return bytes(out)


def _report_body(
    report_type: str, parts: list[tuple[bytes, bytes]], *, seed: str, cte: str, preamble: str
) -> bytes:
    """The ``multipart/report`` Content-Type and CTE lines, blank line, then the parts.

    ``parts`` are (part header lines, part body) pairs; ``cte`` is the widest of
    their encodings, declared on the whole message.
    """
    boundary = _boundary([p[1] for p in parts], seed)
    out = bytearray()
    out += _header(
        "Content-Type", f'multipart/report; report-type={report_type};\r\n\tboundary="{boundary}"'
    )
    out += _header("Content-Transfer-Encoding", cte)
    out += _CRLF
    out += preamble.encode("ascii") + _CRLF
    for part_headers, part_body in parts:
        out += f"\r\n--{boundary}\r\n".encode() + part_headers + _CRLF + part_body
    out += f"\r\n--{boundary}--\r\n".encode()
    return bytes(out)


def build_dsn(
    report: Report,
    *,
    original: bytes,
    sender: str,
    postmaster: str,
    now: datetime,
    message_id: str,
    human_text: str | None = None,
    subject: str | None = None,
    from_name: str | None = None,
) -> bytes:
    """A complete ``multipart/report; report-type=delivery-status`` message, CRLF lines.

    Parts: bilingual text, ``message/delivery-status``, then the original
    (``message/rfc822`` for RET=FULL up to 1 MiB, else ``text/rfc822-headers``).
    A canonical CRLF original comes back byte-exact; bare LFs become CRLF, since
    the DSN itself travels over SMTP.

    ``human_text``, ``subject`` and ``from_name`` replace the generated text, the
    subject and the From display name (MSS-C automatic returns word their own);
    left out, the report is the standard one.
    """
    headers = _original_headers(original)
    with_body = report.return_content == "full" and len(original) <= MAX_FULL_ORIGINAL
    truncated = report.return_content == "full" and not with_body

    text = _human(report, truncated, with_body) if human_text is None else human_text
    human = _qp(text)
    status = _delivery_status(report)
    if with_body:
        body = _canonical(original)
        third_type, third = "message/rfc822", body
    else:
        third_type, third = "text/rfc822-headers", headers
    third_cte = _encoding(third)

    parts = [
        (_TEXT_PART, human),
        (b"Content-Type: message/delivery-status\r\n"
         b"Content-Transfer-Encoding: 7bit\r\n", status),
        (f"Content-Type: {third_type}\r\n"
         f"Content-Transfer-Encoding: {third_cte}\r\n".encode(), third),
    ]  # fmt: skip
    mid = _message_id(message_id, "build_dsn")
    head = _top_headers(
        from_=_from_header(_FROM_NAME if from_name is None else from_name, postmaster),
        to=sender,
        subject=_SUBJECT[_outcome(report)] if subject is None else subject,
        now=now,
        message_id=mid,
        in_reply_to=_original_message_id(headers),
        auto_submitted="auto-replied",
    )
    report_part = _report_body(
        "delivery-status",
        parts,
        seed=f"{mid}|{now.isoformat()}",
        cte=third_cte,
        preamble="This is a MIME-formatted delivery status notification.",
    )
    return head + report_part
