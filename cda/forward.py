"""The MSSanté message that carries a deposited package on to its recipients (Y-1, Y-XDM-1).

Pure and deterministic: the same arguments give the same bytes (the Date is
the original's arrival, the MIME boundary derives from the Message-ID), so a
bridge pass that is rolled back and run again stores the same blob and
enqueues the same message.

The body is neutral: who sent it and that the documents are in the attached
``IHE_XDM.ZIP``; what they are about is in the package and in the
``XDM/1.0/DDM+…`` subject the ANS convention asks for.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr

__all__ = ["FORWARD_FILENAME", "build_forward"]

FORWARD_FILENAME = "IHE_XDM.ZIP"


def _body(sender: str, documents: int) -> str:
    return "\n".join(
        [
            f"Ce message transmet {documents} document(s) de santé envoyé(s) par {sender}.",
            f"Les documents sont dans la pièce jointe {FORWARD_FILENAME} (IHE XDM), à ouvrir",
            "avec votre logiciel de professionnel de santé ou votre messagerie MSSanté.",
            "",
            f"This message carries {documents} health document(s) sent by {sender}.",
            f"They are in the attached {FORWARD_FILENAME} (IHE XDM) package; open it with your",
            "health professional software or your MSSanté mail client.",
            "",
        ]
    )


def build_forward(
    *,
    sender: str,
    sender_name: str,
    to: Sequence[str],
    subject: str,
    extra_headers: Mapping[str, str],
    package: bytes,
    documents: int,
    date: datetime,
    message_id: str,
) -> bytes:
    """One forward of ``package`` from ``sender`` (the client mailbox) to ``to``.

    ``extra_headers`` are the référentiel #2 ``X-MSS-*`` fields
    (:func:`policies.forwarded_headers`); ``subject`` the XDM subject.
    """
    if not to:
        raise ValueError("a forward needs at least one recipient")
    message = EmailMessage(policy=SMTP)
    message["From"] = formataddr((sender_name, sender)) if sender_name else sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = f"<{message_id}>"
    for name, value in extra_headers.items():
        message[name] = value
    message.set_content(_body(sender, documents), charset="utf-8", cte="quoted-printable")
    message.add_attachment(
        package, maintype="application", subtype="zip", filename=FORWARD_FILENAME
    )
    message.set_boundary("=_mss_y_" + hashlib.sha256(message_id.encode()).hexdigest()[:32])
    return message.as_bytes(policy=SMTP)
