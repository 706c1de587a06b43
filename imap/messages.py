"""One message as SEARCH, SORT and THREAD see it: index facts now, content on demand.

The index answers flags, UID, size and dates; the first question about a
header or the body reads the blob. A search over 100,000 messages by flag or
UID therefore never opens a message, and one by header reads only the header
block of each (the store decrypts segment by segment, so a header search never
decrypts attachments).

A :class:`ContentCache` shared by the views of one search keeps only the
message being examined: memory stays that of one message, whatever the size of
the mailbox.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from imap.cache import split_subject
from imap.mime import (
    Part,
    header_values,
    parse_message,
    parse_section,
    section_bytes,
    text_content,
)
from mssante.store import BlobStore

__all__ = ["ContentCache", "LazyMessage"]

#: Stop looking for the end of a header block after this much (then read it all).
_HEADER_LIMIT = 1024 * 1024


class ContentCache:
    """The header block or the whole of one message at a time, parsed once."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self._key: tuple[str, bool] | None = None
        self._value: tuple[bytes, Part] | None = None

    def get(self, sha256: str, *, whole: bool, structure: str | None = None) -> tuple[bytes, Part]:
        """The message's bytes (``whole``) or its header block, and their parse.

        ``structure``: the index's cached parse of the whole message (JSON of
        :class:`imap.mime.Part`), used instead of parsing it again when given.
        """
        if self._value is not None and self._key in ((sha256, True), (sha256, whole)):
            return self._value
        data = self._store.read(sha256) if whole else self._head(sha256)
        root = None
        if whole and structure is not None:
            try:
                root = Part.from_json(json.loads(structure))
            except ValueError:  # a damaged cache entry: the message is the truth
                root = None
        if root is None or root.body_end != len(data):
            root = parse_message(data)
        self._key, self._value = (sha256, whole), (data, root)
        return self._value

    def _head(self, sha256: str) -> bytes:
        """Read segments until the blank line that ends the header block.

        Each segment of an encrypted blob is authenticated as it is read; the
        whole-blob digest is only checked by full reads (FETCH), which is fine
        for a search that returns no content.
        """
        data = bytearray()
        for chunk in self._store.open(sha256):
            data += chunk
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                return bytes(data[: end + 4])
            if len(data) > _HEADER_LIMIT:
                break
        return self._store.read(sha256) if len(data) > _HEADER_LIMIT else bytes(data)


class LazyMessage:
    """One message for SEARCH, SORT and THREAD: index facts, content read on demand.

    A plain class with slots rather than a frozen dataclass: a search builds
    one per message of the mailbox, 100,000 of them. The internal date is
    kept as the database gave it (``date_raw``) and converted by ``convert``
    on first use, since most searches never look at it.
    """

    __slots__ = (
        "_date",
        "cache",
        "convert",
        "date_raw",
        "flags",
        "modseq",
        "seq",
        "sha256",
        "size",
        "structure",
        "subject",
        "uid",
    )

    def __init__(
        self,
        *,
        seq: int,
        uid: int,
        flags: frozenset[str],
        size: int,
        modseq: int,
        sha256: str,
        cache: ContentCache,
        internal_date: datetime | None = None,
        date_raw: Any = None,
        convert: Callable[[Any], datetime] | None = None,
        subject: str | None = None,
        structure: str | None = None,
    ) -> None:
        self.seq = seq
        self.uid = uid
        self.flags = flags
        self.size = size
        self.modseq = modseq
        self.sha256 = sha256
        self.cache = cache
        self._date = internal_date
        self.date_raw = date_raw
        self.convert = convert
        #: The index's cache of the decoded Subject values (:mod:`imap.cache`), None if absent.
        self.subject = subject
        #: The index's cached MIME structure (JSON), when the search reads bodies.
        self.structure = structure

    @property
    def internal_date(self) -> datetime:
        if self._date is None:
            assert self.convert is not None
            self._date = self.convert(self.date_raw)
        return self._date

    def header(self, name: str) -> list[str]:
        if self.subject is not None and name.lower() == "subject":
            return split_subject(self.subject)
        data, root = self.cache.get(self.sha256, whole=False)
        return header_values(data, root, name)

    def headers_text(self) -> str:
        data, root = self.cache.get(self.sha256, whole=False)
        return section_bytes(data, root, parse_section("HEADER")).decode("utf-8", "replace")

    def body_text(self) -> str:
        data, root = self.cache.get(self.sha256, whole=True, structure=self.structure)
        return text_content(data, root)

    def sent_date(self) -> datetime | None:
        values = self.header("Date")
        if not values:
            return None
        try:
            return parsedate_to_datetime(values[0])
        except (TypeError, ValueError, IndexError):
            return None
