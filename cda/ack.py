"""The bridge's integration acknowledgement to the sender (Y-ACK-1, Y-2), as bytes.

Pure and deterministic given its arguments, CRLF lines, 7-bit as long as the
original's header block is: the assembly and sanitising are
:mod:`smtp.dsn`'s and :mod:`smtp.autoreply`'s, so there is one way to write a
report. Following the ANS convention for an XDM integrated from a mail:

* the sender asked with ``Disposition-Notification-To`` → an RFC 8098
  ``multipart/report; report-type=disposition-notification``: the human text,
  the ``message/disposition-notification`` fields (``processed`` on full
  success, ``processed/Error: <code>^<label>`` with the first failing code
  otherwise), the original's header block;
* else → one ``text/plain`` message with the same human text.

One line per document in each language: unique id, title, outcome, the code
and label of a refusal, its findings (path, expected, found), and the
Message-IDs of the copies fanned out. Titles and the original's subject are
health data, but they go back to the professional who wrote them. The
original's body and ``IHE_XDM.ZIP`` are not returned: the sender has them.
Every value from outside is cleaned before it reaches a header or a field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.header import decode_header, make_header
from email.utils import format_datetime
from typing import Final, Literal, get_args

from cda.findings import Finding
from smtp.autoreply import _header_value, _text_message, mdn_body
from smtp.dsn import (
    _clean,
    _from_header,
    _message_id,
    _original_headers,
    _original_message_id,
    _qp,
    _top_headers,
)

__all__ = [
    "ACK_CODES",
    "ACK_DISPOSITION_OK",
    "ACK_FROM_NAME",
    "ACK_SUBJECT",
    "KO_SUBJECT_PREFIX",
    "DocumentOutcome",
    "OutcomeKind",
    "ack_disposition",
    "ack_subject",
    "build_ack",
    "failure_code",
]

OutcomeKind = Literal["deposited", "replaced", "duplicate", "refused"]

#: Y-ACK-1 codes (ANS table of integration errors, "indicative, extensible"):
#: machine label (ASCII, for the ``Disposition`` field), then French and
#: English wording for the human part. Paraphrased, not the ANS wording.
ACK_CODES: Final[dict[int, tuple[str, str, str]]] = {
    900: (
        "Version non la plus recente",
        "la version remplacée n'est pas la plus récente",
        "the version replaced is not the latest one",
    ),
    901: (
        "Demandeur ni auteur ni de sa structure",
        "l'expéditeur n'est ni l'auteur ni de la structure de l'auteur",
        "the sender is neither the author nor from the author's organisation",
    ),
    902: ("Patient inconnu", "patient inconnu", "unknown patient"),
    903: (
        "Identifiants patient sans INS",
        "identifiants du patient présents mais pas d'INS",
        "patient identifiers present but no INS",
    ),
    904: (
        "INS ou traits differents de l identite connue",
        "INS présent mais matricule ou traits différents de l'identité connue",
        "INS present but its number or traits differ from the known identity",
    ),
    905: (
        "Traits INS incomplets",
        "INS présent mais traits d'identité incomplets",
        "INS present but identity traits incomplete",
    ),
    906: ("Autre erreur", "autre erreur", "other error"),
}
_OTHER = 906

ACK_DISPOSITION_OK: Final = "automatic-action/MDN-sent-automatically; processed"
KO_SUBJECT_PREFIX: Final = "[KO Intégration système !]"
ACK_SUBJECT: Final = "Accusé d'intégration / Integration acknowledgement"
ACK_FROM_NAME: Final = "Intégration de documents MSSanté"
_XDM_MARKER = "XDM/1.0/DDM"

_KIND_TEXT: Final[dict[str, tuple[str, str]]] = {
    "deposited": ("intégré (nouveau document)", "integrated (new document)"),
    "replaced": ("intégré (remplace la version précédente)",
                 "integrated (replaces the previous version)"),
    "duplicate": ("déjà intégré, rien n'a changé", "already integrated, nothing changed"),
    "refused": ("refusé", "refused"),
}  # fmt: skip
_HEADLINE: Final[dict[bool, tuple[str, str]]] = {
    True: (
        "Tous les documents de votre message ont été intégrés.",
        "Every document of your message has been integrated.",
    ),
    False: (
        "Au moins un document de votre message n'a pas été intégré.",
        "At least one document of your message has not been integrated.",
    ),
}
#: Bounds on what one document contributes to the text (a hostile package
#: cannot inflate the acknowledgement).
_MAX_FINDINGS = 20
_MAX_VALUE = 300
_MAX_IDS = 50


@dataclass(frozen=True)
class DocumentOutcome:
    """What became of one document, as the acknowledgement tells it.

    ``kind`` and ``ack_code`` mirror :class:`cda.store.DepositResult` (or a
    refusal before the store, e.g. patient resolution: 902, 904, 905); a
    refusal without a code is reported as 906. A problem with the whole
    package is one refused outcome (``unique_id`` may be empty).
    """

    unique_id: str
    title: str
    kind: OutcomeKind
    ack_code: int | None = None
    findings: tuple[Finding, ...] = ()
    fanout_message_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in get_args(OutcomeKind):
            raise ValueError(f"unknown outcome kind {self.kind!r}")
        if self.ack_code is not None:
            if self.kind != "refused":
                raise ValueError("an ack_code belongs to a refused document only")
            if self.ack_code not in ACK_CODES:
                raise ValueError(f"ack_code must be one of {sorted(ACK_CODES)}: {self.ack_code}")

    @property
    def ok(self) -> bool:
        return self.kind != "refused"

    @property
    def code(self) -> int | None:
        """The Y-ACK-1 code of a refusal (906 when none was given), None on success."""
        if self.ok:
            return None
        return _OTHER if self.ack_code is None else self.ack_code


def failure_code(outcomes: Sequence[DocumentOutcome]) -> int | None:
    """The code of the first refused document, None when every document went in."""
    for outcome in outcomes:
        if outcome.code is not None:
            return outcome.code
    return None


def ack_disposition(code: int | None) -> str:
    """The ``Disposition`` value: ``processed``, or ``processed/Error: <code>^<label>``."""
    if code is None:
        return ACK_DISPOSITION_OK
    return f"{ACK_DISPOSITION_OK}/Error: {code}^{ACK_CODES[code][0]}"


def _decoded_subject(headers: bytes) -> str:
    value = _header_value(headers, "Subject")
    if value is None:
        return ""
    try:
        return _clean(str(make_header(decode_header(value))))
    except (LookupError, UnicodeError, ValueError):
        return value


def ack_subject(original_subject: str, code: int | None) -> str:
    """Y-ACK-1 subject: the original's ``XDM/1.0/DDM…`` part when it had one, else neutral.

    A failure starts with ``[KO Intégration système !][<code>]``.
    """
    subject = _clean(original_subject)
    at = subject.find(_XDM_MARKER)
    base = subject[at:] if at >= 0 else ACK_SUBJECT
    return base if code is None else f"{KO_SUBJECT_PREFIX}[{code}] {base}"


def _short(value: str) -> str:
    return _clean(value, _MAX_VALUE)


def _document_lines(outcome: DocumentOutcome) -> tuple[str, str]:
    """The French line and the English line of one document (no line break in either)."""
    uid = _short(outcome.unique_id)
    title = _short(outcome.title)
    kind_fr, kind_en = _KIND_TEXT[outcome.kind]
    fr = f"- {uid or '(sans identifiant)'} « {title} » : {kind_fr}"
    en = f"- {uid or '(no identifier)'} “{title}”: {kind_en}"
    code = outcome.code
    if code is not None:
        label = ACK_CODES[code]
        fr += f", erreur {code}^{label[0]} ({label[1]})"
        en += f", error {code}^{label[0]} ({label[2]})"
    shown = outcome.findings[:_MAX_FINDINGS]
    for finding in shown:
        path, expected, found = (
            _short(finding.path),
            _short(finding.expected),
            _short(finding.found),
        )
        fr += f" ; {path} : attendu {expected}, trouvé {found}"
        en += f"; {path}: expected {expected}, found {found}"
    hidden = len(outcome.findings) - len(shown)
    if hidden > 0:
        fr += f" ; et {hidden} autre(s) constat(s)"
        en += f"; and {hidden} more finding(s)"
    ids = [i for i in (_clean(m, 255) for m in outcome.fanout_message_ids[:_MAX_IDS]) if i]
    if ids:
        fr += " ; transmis par MSSanté : " + ", ".join(ids)
        en += "; forwarded by MSSanté: " + ", ".join(ids)
    return fr, en


def _human(
    outcomes: Sequence[DocumentOutcome], *, original_id: str | None, bridge: str, now: datetime
) -> str:
    """French first, then English; every document line starts with ``- ``."""
    ok = failure_code(outcomes) is None
    when = format_datetime(now)
    about_fr = f"votre message {original_id}" if original_id else "votre message"
    about_en = f"your message {original_id}" if original_id else "your message"
    fr = [
        f"Ce message est l'accusé d'intégration automatique de {bridge}.",
        f"Il concerne {about_fr}, traité le {when}.",
        "",
        _HEADLINE[ok][0],
        "",
    ]
    en = [
        f"This is the automatic integration acknowledgement from {bridge}.",
        f"It is about {about_en}, processed on {when}.",
        "",
        _HEADLINE[ok][1],
        "",
    ]
    for outcome in outcomes:
        line_fr, line_en = _document_lines(outcome)
        fr.append(line_fr)
        en.append(line_en)
    return "\n".join([*fr, "", "-" * 72, "", *en, ""])


def build_ack(
    *,
    outcomes: Sequence[DocumentOutcome],
    original_headers: bytes,
    bridge_address: str,
    to: str,
    as_mdn: bool,
    reporting_ua: str,
    now: datetime,
    message_id: str,
) -> bytes:
    """The Y-ACK-1 acknowledgement of one received XDM message, a complete message.

    ``outcomes`` in package order (at least one); ``original_headers`` the
    received message's header block (a whole message is cut to its headers);
    ``bridge_address`` is both the From and the MDN's Final-Recipient; ``to``
    the sender (the Disposition-Notification-To address when ``as_mdn``).
    """
    if not outcomes:
        raise ValueError("an acknowledgement needs at least one document outcome")
    headers = _original_headers(original_headers)
    original_id = _original_message_id(headers)
    code = failure_code(outcomes)
    bridge = _clean(bridge_address, 255)
    text = _human(outcomes, original_id=original_id, bridge=bridge, now=now)
    mid = _message_id(message_id, "build_ack")
    head = _top_headers(
        from_=_from_header(ACK_FROM_NAME, bridge_address),
        to=to,
        subject=ack_subject(_decoded_subject(headers), code),
        now=now,
        message_id=mid,
        in_reply_to=original_id,
        auto_submitted="auto-replied",
    )
    if not as_mdn:
        return _text_message(head, text)

    return head + mdn_body(
        headers,
        human=_qp(text),
        reporting_ua=reporting_ua,
        final_recipient=bridge,
        disposition=ack_disposition(code),
        seed=f"{mid}|{now.isoformat()}",
    )
