"""MSSC-ATT-1: which attachments a patient (Mon espace santé) may send.

Patients may attach PDF, JPEG, PNG, TIFF and RTF files only. A declared
Content-Type or a file name proves nothing (an executable renamed ``.pdf`` and
sent as application/pdf is still an executable), so every attachment is judged
on its first decoded bytes (magic numbers) and its declared type must agree
with them. Embedded messages are refused outright: they could hide anything.

Pure: bytes in, a list of problems out (empty when acceptable); no I/O, no
logging. Reasons are fixed English texts and never quote a file name (file
names can be health data). The work is bounded: the stdlib parser recurses per
nesting level and checks every line against every enclosing boundary, so
messages declaring more than ``max_parts`` containers are refused before
parsing, and only a short prefix of each attachment is decoded.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from typing import Final

__all__ = [
    "ALLOWED_KINDS",
    "AttachmentKind",
    "AttachmentProblem",
    "check_patient_attachments",
    "too_many_containers",
]


@dataclass(frozen=True)
class AttachmentKind:
    """A file type patients may send: its magic numbers and its accepted declared types."""

    name: str
    label: str
    magics: tuple[bytes, ...]
    content_types: frozenset[str]


ALLOWED_KINDS: Final[tuple[AttachmentKind, ...]] = (
    AttachmentKind("pdf", "PDF", (b"%PDF-",), frozenset({"application/pdf"})),
    AttachmentKind(
        "jpeg", "JPEG", (b"\xff\xd8\xff",), frozenset({"image/jpeg", "image/jpg", "image/pjpeg"})
    ),
    AttachmentKind("png", "PNG", (b"\x89PNG\r\n\x1a\n",), frozenset({"image/png"})),
    AttachmentKind("tiff", "TIFF", (b"II*\x00", b"MM\x00*"), frozenset({"image/tiff"})),
    AttachmentKind("rtf", "RTF", (b"{\\rtf",), frozenset({"application/rtf", "text/rtf"})),
)


@dataclass(frozen=True)
class AttachmentProblem:
    """Why one part is refused.

    ``index`` is the 1-based number of the leaf part in document order (body
    text leaves count), or 0 when the problem is about a container or the whole
    structure; ``declared_type`` is the Content-Type as parsed ('' for the
    structure bounds); ``detected`` is the kind name the bytes show, if any.
    """

    index: int
    declared_type: str
    detected: str | None
    reason: str


TOO_MANY_PARTS: Final = "too many MIME parts"
TOO_DEEP: Final = "MIME nesting too deep"
ATTACHED_MESSAGE: Final = "attached messages are not allowed"
MALFORMED_MULTIPART: Final = "malformed multipart"
DUPLICATE_HEADERS: Final = "duplicate MIME headers"
BAD_ENCODING: Final = "unsupported transfer encoding"
EMPTY: Final = "empty attachment"
NOT_ALLOWED: Final = "file type not allowed (" + ", ".join(k.label for k in ALLOWED_KINDS) + ")"
MISMATCH: Final = "content does not match declared type"

_OCTET_STREAM: Final = "application/octet-stream"
_BODY_TEXT_TYPES: Final = frozenset({"text/plain", "text/html"})
_DECLARED_ALLOWED: Final = frozenset().union(*(k.content_types for k in ALLOWED_KINDS))
_IDENTITY: Final = frozenset({"7bit", "8bit", "binary"})
_ENCODINGS: Final = _IDENTITY | {"base64", "quoted-printable"}
_SINGLE_HEADERS: Final = ("content-type", "content-transfer-encoding", "content-disposition")
_SCAN: Final = 4096  # raw payload bytes looked at to find the first decoded ones
_B64_CHARS: Final = 64
_HEAD: Final = 16
_NOT_B64: Final = bytes(
    b for b in range(256) if not (chr(b).isascii() and (chr(b).isalnum() or chr(b) in "+/="))
)
# A header that makes the stdlib parser recurse, as it reads one: the name at
# the start of a line (\r, \n or \r\n), the value's leading whitespace stripped.
_CONTAINER_HEADER: Final = re.compile(
    rb"(?:^|[\r\n])content-type:[\s\x1c-\x1f]*(?:multipart|message)/", re.IGNORECASE
)


def too_many_containers(message: bytes, max_parts: int) -> bool:
    """More than ``max_parts`` multipart/message headers: too costly to hand to the parser."""
    return any(count > max_parts for count, _ in enumerate(_CONTAINER_HEADER.finditer(message), 1))


def check_patient_attachments(
    message: bytes, *, max_parts: int = 200, max_depth: int = 20
) -> list[AttachmentProblem]:
    """The problems that make ``message`` unacceptable from a patient; empty when acceptable."""
    if too_many_containers(message, max_parts):
        return [AttachmentProblem(0, "", None, TOO_MANY_PARTS)]
    try:
        root = BytesParser(policy=compat32).parsebytes(message)
    except RecursionError:
        return [AttachmentProblem(0, "", None, TOO_DEEP)]

    problems: list[AttachmentProblem] = []
    stack: list[tuple[Message, int]] = [(root, 0)]
    seen = leaves = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > max_parts:
            return [AttachmentProblem(0, "", None, TOO_MANY_PARTS)]
        if depth > max_depth:
            return [AttachmentProblem(0, "", None, TOO_DEEP)]
        declared = part.get_content_type()
        children = _children(part)
        if children is not None:
            reason = _container_problem(part)
            if reason is not None:
                problems.append(AttachmentProblem(0, declared, None, reason))
            stack.extend((child, depth + 1) for child in reversed(children))
            continue
        leaves += 1
        reason, detected = _leaf_problem(part, declared)
        if reason is not None:
            problems.append(AttachmentProblem(leaves, declared, detected, reason))
    return problems


def _children(part: Message) -> list[Message] | None:
    """The parts of a multipart the parser could split; None for a leaf."""
    if part.get_content_maintype() != "multipart" or not part.is_multipart():
        return None
    payload = part.get_payload()  # the list itself: no decoding on this path
    children = [child for child in payload if isinstance(child, Message)]
    return children if len(children) == len(payload) else None


def _container_problem(part: Message) -> str | None:
    if any(len(part.get_all(name, ())) > 1 for name in _SINGLE_HEADERS):
        return DUPLICATE_HEADERS
    if _transfer_encoding(part) not in _IDENTITY:
        return BAD_ENCODING
    return None


def _leaf_problem(part: Message, declared: str) -> tuple[str | None, str | None]:
    """(reason, detected kind) for one leaf; reason None when acceptable."""
    if any(len(part.get_all(name, ())) > 1 for name in _SINGLE_HEADERS):
        return DUPLICATE_HEADERS, None
    maintype = part.get_content_maintype()
    if maintype == "message":
        return ATTACHED_MESSAGE, None
    if maintype == "multipart":  # no boundary, or none found: its parts are unknowable
        return MALFORMED_MULTIPART, None
    encoding = _transfer_encoding(part)
    if encoding not in _ENCODINGS:
        return BAD_ENCODING, None
    if _is_body_text(part, declared):
        return None, None
    # The body as parsed (ASCII, other bytes surrogate-escaped): get_payload() would
    # re-decode 8-bit bytes with the part's charset, or raise on an RFC 2231 one.
    payload = vars(part).get("_payload")
    if not isinstance(payload, str):
        return MALFORMED_MULTIPART, None
    head = _decoded_head(payload[:_SCAN].encode("ascii", "surrogateescape"), encoding)
    if not head:
        return EMPTY, None
    kind = next((k for k in ALLOWED_KINDS if head.startswith(k.magics)), None)
    if kind is None:
        return (MISMATCH if declared in _DECLARED_ALLOWED else NOT_ALLOWED), None
    if declared in kind.content_types or declared == _OCTET_STREAM:
        return None, kind.name
    return MISMATCH, kind.name


def _is_body_text(part: Message, declared: str) -> bool:
    """A text/plain or text/html leaf that is the message text, not a file."""
    if declared not in _BODY_TEXT_TYPES:
        return False
    # compat32 reads an unparsable Content-Type as text/plain; that is not body text
    raw = part.get("content-type")
    if raw is not None and str(raw).partition(";")[0].strip().lower() != declared:
        return False
    return part.get_content_disposition() != "attachment" and part.get_filename() is None


def _transfer_encoding(part: Message) -> str:
    return str(part.get("content-transfer-encoding", "7bit")).strip().lower()


def _decoded_head(raw: bytes, encoding: str) -> bytes:
    """The first decoded bytes of a payload, from its first raw bytes only."""
    if encoding == "base64":
        chars = raw.translate(None, _NOT_B64).partition(b"=")[0][:_B64_CHARS]
        chars = chars[: len(chars) - 1] if len(chars) % 4 == 1 else chars
        chars += b"=" * (-len(chars) % 4)
        return binascii.a2b_base64(chars)[:_HEAD]
    if encoding == "quoted-printable":
        return binascii.a2b_qp(raw)[:_HEAD]
    return raw[:_HEAD]
