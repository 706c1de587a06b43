"""IMAP URLs (RFC 5092) as CATENATE uses them: which message, which part, which bytes.

Only what names a message of the logged-in user is accepted: the absolute
form ``imap://user@host/mailbox;uidvalidity=N/;uid=N/;section=S/;partial=o.l``
and the server-relative form starting at ``/mailbox``. The mailbox name is
URL-encoded UTF-8. Anything else (a search URL, a missing UID, a second host)
is refused: the caller answers ``NO [BADURL …]``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

__all__ = ["MessageUrl", "parse_message_url"]

_ABSOLUTE = re.compile(r"imap://[^/]*(/.*)\Z", re.IGNORECASE | re.DOTALL)
_MAILBOX = re.compile(r"/([^;]+?)(?:;uidvalidity=([1-9][0-9]*))?\Z", re.IGNORECASE)
_PARAM = re.compile(r";(uid|section|partial|urlauth|expire)=(.*)\Z", re.IGNORECASE | re.DOTALL)
_PARTIAL = re.compile(r"([0-9]+)(?:\.([1-9][0-9]*))?\Z")


@dataclass(frozen=True)
class MessageUrl:
    mailbox: str
    uidvalidity: int | None
    uid: int
    section: str  # "" is the whole message
    partial: tuple[int, int | None] | None


def parse_message_url(text: str) -> MessageUrl:
    """Read a message URL; ValueError with a reason when it is not one we serve."""
    absolute = _ABSOLUTE.match(text)
    path = absolute.group(1) if absolute else text
    if not path.startswith("/"):
        raise ValueError("relative URLs need a base: give /mailbox/;uid=N")
    head, sep, rest = path.partition("/;")
    if not sep:
        raise ValueError("the URL names no message (;uid= missing)")
    box = _MAILBOX.match(head)
    if box is None:
        raise ValueError("the URL names no mailbox")
    mailbox = urllib.parse.unquote(box.group(1), errors="strict")
    uidvalidity = int(box.group(2)) if box.group(2) else None
    params: dict[str, str] = {}
    for piece in ("/;" + rest).split("/;")[1:]:
        m = _PARAM.match(";" + piece)
        if m is None:
            raise ValueError("unknown URL parameter")
        params[m.group(1).lower()] = urllib.parse.unquote(m.group(2))
    if "urlauth" in params or "expire" in params:
        raise ValueError("URLAUTH URLs are not supported")
    uid_text = params.get("uid", "")
    if not uid_text.isdigit() or int(uid_text) == 0:
        raise ValueError("the URL has no valid ;uid=")
    partial = None
    if "partial" in params:
        p = _PARTIAL.match(params["partial"])
        if p is None:
            raise ValueError("bad ;partial=")
        partial = (int(p.group(1)), int(p.group(2)) if p.group(2) else None)
    return MessageUrl(mailbox, uidvalidity, int(uid_text), params.get("section", ""), partial)
