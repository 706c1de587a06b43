"""What the MSS-C automatic messages say to people: French first, then English.

Pure data and small formatting functions, no I/O. The message builders in
:mod:`smtp.autoreply` wrap these texts in MIME; the policies that decide when
to send them live elsewhere.

Rules for every text here:

* plain language: a patient reads most of them;
* never health data: no subject, body or attachment name of any message ever
  reaches a text, so no function below takes one as a parameter;
* *patient non trouvé* is a single text for a space not created, a patient's
  opposition and an unknown INS: the sender must not learn which (MSSC-RET-1).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

__all__ = [
    "DMP_NOTICE_SUBJECT",
    "FROM_NAME",
    "MDN_SUBJECT",
    "NOTIFICATION_SUBJECT",
    "RETURN_STATUS",
    "RETURN_SUBJECT_EN",
    "RETURN_SUBJECT_FR",
    "TEST_ACK_SUBJECT",
    "ReturnKind",
    "acknowledgement_text",
    "bilingual",
    "date_en",
    "date_fr",
    "dmp_notice_text",
    "mdn_text",
    "notification_text",
    "return_subject",
    "return_text",
]


class ReturnKind(StrEnum):
    """Why an automatic return is sent (MSSC-RET-1, MSSC-INIT-*, MSSC-FIN-1, MSSC-ATT-1)."""

    CLOSED = "closed"
    """To the professional: the patient closed their space (*messagerie fermée*)."""
    NOT_FOUND = "not_found"
    """To the professional: no space, opposition or unknown INS, never saying which."""
    TOO_BIG = "too_big"
    """To the professional: the message is over the patient domain's size cap."""
    CONVERSATION_CLOSED = "conversation_closed"
    """To the patient: the professional closed the exchange with FIN."""
    NOT_INITIATED = "not_initiated"
    """To the patient: they may only reply to a professional who wrote first."""
    PATIENT_TO_PATIENT = "patient_to_patient"
    """To the patient: patients cannot write to each other."""
    ATTACHMENT_REFUSED = "attachment_refused"
    """To the patient: an attachment is not PDF, JPEG, PNG, TIFF or RTF."""


FROM_NAME: Final = "Messagerie Mon espace santé"
"""Display name on every automatic message."""

RETURN_STATUS: Final[dict[ReturnKind, str]] = {
    ReturnKind.CLOSED: "5.2.1",
    ReturnKind.NOT_FOUND: "5.1.1",
    ReturnKind.TOO_BIG: "5.3.4",
    ReturnKind.CONVERSATION_CLOSED: "5.7.1",
    ReturnKind.NOT_INITIATED: "5.7.1",
    ReturnKind.PATIENT_TO_PATIENT: "5.7.1",
    ReturnKind.ATTACHMENT_REFUSED: "5.6.1",
}
"""RFC 3463 enhanced status code of each return."""

RETURN_SUBJECT_FR: Final[dict[ReturnKind, str]] = {
    ReturnKind.CLOSED: "Message non remis : messagerie fermée",
    ReturnKind.NOT_FOUND: "Message non remis : patient non trouvé",
    ReturnKind.TOO_BIG: "Message non remis : taille maximale dépassée",
    ReturnKind.CONVERSATION_CLOSED: "Message non envoyé : échange clos par le professionnel",
    ReturnKind.NOT_INITIATED: "Message non envoyé : aucun échange en cours",
    ReturnKind.PATIENT_TO_PATIENT: "Message non envoyé : pas de messages entre patients",
    ReturnKind.ATTACHMENT_REFUSED: "Message non envoyé : pièce jointe refusée",
}
RETURN_SUBJECT_EN: Final[dict[ReturnKind, str]] = {
    ReturnKind.CLOSED: "Undelivered message: messaging closed",
    ReturnKind.NOT_FOUND: "Undelivered message: patient not found",
    ReturnKind.TOO_BIG: "Undelivered message: maximum size exceeded",
    ReturnKind.CONVERSATION_CLOSED: "Message not sent: exchange closed by the professional",
    ReturnKind.NOT_INITIATED: "Message not sent: no open exchange",
    ReturnKind.PATIENT_TO_PATIENT: "Message not sent: no messages between patients",
    ReturnKind.ATTACHMENT_REFUSED: "Message not sent: attachment refused",
}

MDN_SUBJECT: Final = "Accusé de lecture / Read receipt"
TEST_ACK_SUBJECT: Final = "Accusé de réception de votre message de test / Test message received"
NOTIFICATION_SUBJECT: Final = (
    "Nouveau message dans votre messagerie Mon espace santé"
    " / New message in your Mon espace santé messaging"
)
DMP_NOTICE_SUBJECT: Final = (
    "Nouveau document dans votre dossier médical Mon espace santé"
    " / New document in your Mon espace santé health record"
)

# Return bodies: {date} is when we received the message, {recipient} whom it
# was for, {limit_mb} the size cap. Nothing else can be substituted.
_TO_PS_FR = "Votre message du {date} adressé à {recipient} n'a pas pu être remis."
_TO_PS_EN = "Your message of {date} to {recipient} could not be delivered."
_TO_PATIENT_FR = "Votre message du {date} adressé à {recipient} n'a pas pu être envoyé."
_TO_PATIENT_EN = "Your message of {date} to {recipient} could not be sent."

_RETURN_FR: Final[dict[ReturnKind, tuple[str, ...]]] = {
    ReturnKind.CLOSED: (
        _TO_PS_FR,
        "Le patient a fermé sa messagerie Mon espace santé : il ne peut plus y recevoir"
        " de messages.",
        "Contactez-le par un autre moyen.",
    ),
    ReturnKind.NOT_FOUND: (
        _TO_PS_FR,
        "Patient non trouvé : aucune messagerie Mon espace santé ne peut recevoir de"
        " message à cette adresse.",
        "Vérifiez l'adresse (le matricule INS du patient) ou contactez le patient par un"
        " autre moyen.",
    ),
    ReturnKind.TOO_BIG: (
        _TO_PS_FR,
        "Taille maximale dépassée : la messagerie Mon espace santé accepte les messages"
        " de {limit_mb} Mo au plus, pièces jointes comprises.",
        "Réduisez la taille des pièces jointes ou répartissez-les sur plusieurs messages.",
    ),
    ReturnKind.CONVERSATION_CLOSED: (
        _TO_PATIENT_FR,
        "Ce professionnel a mis fin à l'échange : vous ne pouvez plus répondre à ses messages.",
        "Pour le joindre, utilisez un autre moyen (téléphone, courrier, rendez-vous) ou"
        " attendez qu'il vous écrive de nouveau.",
    ),
    ReturnKind.NOT_INITIATED: (
        _TO_PATIENT_FR,
        "Vous pouvez seulement répondre à un professionnel de santé qui vous a écrit en premier.",
        "Seules les pharmacies qui acceptent les ordonnances peuvent recevoir un premier"
        " message de votre part.",
    ),
    ReturnKind.PATIENT_TO_PATIENT: (
        _TO_PATIENT_FR,
        "Les messages entre patients ne sont pas possibles : la messagerie Mon espace"
        " santé sert à échanger avec des professionnels de santé.",
    ),
    ReturnKind.ATTACHMENT_REFUSED: (
        _TO_PATIENT_FR,
        "Une pièce jointe n'est pas dans un format accepté. Seules les pièces jointes"
        " PDF, JPG/JPEG, PNG, TIFF et RTF sont acceptées.",
        "Enregistrez votre document dans l'un de ces formats, puis envoyez de nouveau"
        " votre message.",
    ),
}
_RETURN_EN: Final[dict[ReturnKind, tuple[str, ...]]] = {
    ReturnKind.CLOSED: (
        _TO_PS_EN,
        "The patient has closed their Mon espace santé messaging: they can no longer"
        " receive messages there.",
        "Please contact them by other means.",
    ),
    ReturnKind.NOT_FOUND: (
        _TO_PS_EN,
        "Patient not found: no Mon espace santé messaging can receive mail at this address.",
        "Check the address (the patient's INS number) or contact the patient by other means.",
    ),
    ReturnKind.TOO_BIG: (
        _TO_PS_EN,
        "Maximum size exceeded: Mon espace santé messaging accepts messages of at most"
        " {limit_mb} MB, attachments included.",
        "Make the attachments smaller or spread them over several messages.",
    ),
    ReturnKind.CONVERSATION_CLOSED: (
        _TO_PATIENT_EN,
        "This professional has closed the exchange: you can no longer reply to their messages.",
        "To reach them, use other means (telephone, letter, appointment) or wait until"
        " they write to you again.",
    ),
    ReturnKind.NOT_INITIATED: (
        _TO_PATIENT_EN,
        "You can only reply to a health professional who wrote to you first.",
        "Only pharmacies that accept prescriptions can receive a first message from you.",
    ),
    ReturnKind.PATIENT_TO_PATIENT: (
        _TO_PATIENT_EN,
        "Messages between patients are not possible: Mon espace santé messaging is for"
        " exchanging with health professionals.",
    ),
    ReturnKind.ATTACHMENT_REFUSED: (
        _TO_PATIENT_EN,
        "An attachment is not in an accepted format. Only PDF, JPG/JPEG, PNG, TIFF and"
        " RTF attachments are accepted.",
        "Save your document in one of these formats, then send your message again.",
    ),
}

_AUTOMATIC_FR = "Ce message est envoyé automatiquement ; merci de ne pas y répondre."
_AUTOMATIC_EN = "This message is sent automatically; please do not reply to it."

_MONTHS_FR = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


# ---------------------------------------------------------------- formatting


def _zone(when: datetime) -> str:
    """`` (UTC+2)``-style suffix from the datetime's own offset; nothing if naive."""
    offset = when.utcoffset()
    if offset is None:
        return ""
    if offset == timedelta(0):
        return " (UTC)"
    sign = "+" if offset > timedelta(0) else "-"
    minutes = abs(offset) // timedelta(minutes=1)
    hours, rest = divmod(minutes, 60)
    return f" (UTC{sign}{hours}" + (f":{rest:02d})" if rest else ")")


def date_fr(when: datetime) -> str:
    """``1er mai 2024 à 10 h 05 (UTC+2)``: locale-free, in the datetime's own zone."""
    day = "1er" if when.day == 1 else str(when.day)
    return (
        f"{day} {_MONTHS_FR[when.month - 1]} {when.year}"
        f" à {when.hour} h {when.minute:02d}{_zone(when)}"
    )


def date_en(when: datetime) -> str:
    """``1 May 2024 at 10:05 (UTC+2)``: locale-free, in the datetime's own zone."""
    return (
        f"{when.day} {_MONTHS_EN[when.month - 1]} {when.year}"
        f" at {when.hour:02d}:{when.minute:02d}{_zone(when)}"
    )


def bilingual(fr: list[str], en: list[str]) -> str:
    """French lines, a rule, English lines; LF line ends (the MIME layer makes CRLF)."""
    return "\n".join([*fr, "", "-" * 72, "", *en, ""])


# ---------------------------------------------------------------- the texts


def return_subject(kind: ReturnKind) -> str:
    """``French / English`` subject of an automatic return."""
    return f"{RETURN_SUBJECT_FR[kind]} / {RETURN_SUBJECT_EN[kind]}"


def return_text(
    kind: ReturnKind, *, recipient: str, received: datetime, limit_mb: int | None = None
) -> str:
    """Human part of an automatic return: what happened, and what to do instead.

    ``recipient`` is the address the message was for, ``received`` when it
    reached us; ``limit_mb`` is required for :attr:`ReturnKind.TOO_BIG`.
    """
    if kind is ReturnKind.TOO_BIG and limit_mb is None:
        raise ValueError("the too_big return needs limit_mb")
    fr_args = {"date": date_fr(received), "recipient": recipient, "limit_mb": limit_mb}
    en_args = {**fr_args, "date": date_en(received)}
    fr = [line.format(**fr_args) for line in _RETURN_FR[kind]]
    en = [line.format(**en_args) for line in _RETURN_EN[kind]]
    fr += ["", "Les en-têtes techniques de votre message sont joints, pas son contenu."]
    en += ["", "The technical headers of your message are attached, not its content."]
    fr += [f"Code : {RETURN_STATUS[kind]}", "", _AUTOMATIC_FR, FROM_NAME]
    en += [f"Code: {RETURN_STATUS[kind]}", "", _AUTOMATIC_EN, FROM_NAME]
    return bilingual(fr, en)


def mdn_text(*, patient: str, sent: datetime | None, displayed: datetime) -> str:
    """Human part of a read receipt (RFC 8098): the message was displayed, nothing more.

    ``sent`` is the original's Date, when it has a readable one.
    """
    sent_fr = f" le {date_fr(sent)}" if sent is not None else ""
    sent_en = f" on {date_en(sent)}" if sent is not None else ""
    fr = [
        f"Votre message envoyé{sent_fr} à {patient} a été affiché le {date_fr(displayed)}.",
        "",
        "Cet accusé de lecture est envoyé automatiquement par la messagerie Mon espace"
        " santé dès que le patient affiche le message. Il ne garantit pas que le message"
        " a été lu ou compris.",
    ]
    en = [
        f"Your message sent{sent_en} to {patient} was displayed on {date_en(displayed)}.",
        "",
        "This read receipt is sent automatically by Mon espace santé messaging as soon"
        " as the patient displays the message. It does not guarantee that the message"
        " was read or understood.",
    ]
    return bilingual(fr, en)


def acknowledgement_text(*, received: datetime) -> str:
    """The predefined answer of the test address (MSSC-TEST-1)."""
    fr = [
        f"Nous avons bien reçu votre message de test le {date_fr(received)}.",
        "La messagerie patient Mon espace santé fonctionne.",
        "",
        _AUTOMATIC_FR,
        FROM_NAME,
    ]
    en = [
        f"We received your test message on {date_en(received)}.",
        "The Mon espace santé patient messaging service works.",
        "",
        _AUTOMATIC_EN,
        FROM_NAME,
    ]
    return bilingual(fr, en)


def notification_text(*, url: str) -> str:
    """The generic new-message notification (MSSC-NOTIF-1): only the login address."""
    fr = [
        "Bonjour,",
        "",
        "Vous avez reçu un nouveau message dans votre messagerie Mon espace santé.",
        "Pour le lire, connectez-vous à Mon espace santé :",
        url,
        "",
        _AUTOMATIC_FR,
        FROM_NAME,
    ]
    en = [
        "Hello,",
        "",
        "You have a new message in your Mon espace santé messaging.",
        "To read it, log in to Mon espace santé:",
        url,
        "",
        _AUTOMATIC_EN,
        FROM_NAME,
    ]
    return bilingual(fr, en)


def dmp_notice_text() -> str:
    """The generic Y-5 notice: a document was added to the patient's record, nothing more.

    No parameter at all: never the document's title, type, author or date,
    never the patient's identity. It is sent one month after the deposit of a
    document still invisible to the patient (or together with its automatic
    reveal after three months), so it promises the document for later
    without saying when, and does not say why it was held back.
    """
    fr = [
        "Bonjour,",
        "",
        "Un nouveau document a été ajouté à votre dossier médical Mon espace santé.",
        "Vous pourrez le consulter dans votre dossier en vous connectant à Mon espace santé.",
        "Pour toute question, adressez-vous au professionnel de santé qui vous suit.",
        "",
        _AUTOMATIC_FR,
        FROM_NAME,
    ]
    en = [
        "Hello,",
        "",
        "A new document has been added to your Mon espace santé health record.",
        "You will be able to read it in your record by logging in to Mon espace santé.",
        "For any question, please ask the health professional who follows you.",
        "",
        _AUTOMATIC_EN,
        FROM_NAME,
    ]
    return bilingual(fr, en)
