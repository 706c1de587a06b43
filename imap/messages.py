"""One message as SEARCH, SORT and THREAD see it: index facts now, content on demand.

The index answers flags, UID, size and dates; the first question about a
header or the body reads the blob and parses it once. A search over 100,000
messages by flag or UID therefore never opens a message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import cached_property

from imap.mime import Part, header_values, parse_message, parse_section, section_bytes, text_content

__all__ = ["LazyMessage"]


class LazyMessage:
    def __init__(
        self,
        *,
        seq: int,
        uid: int,
        flags: frozenset[str],
        internal_date: datetime,
        size: int,
        modseq: int,
        load: Callable[[], bytes],
    ) -> None:
        self.seq = seq
        self.uid = uid
        self.flags = flags
        self.internal_date = internal_date
        self.size = size
        self.modseq = modseq
        self._load = load

    @cached_property
    def _parsed(self) -> tuple[bytes, Part]:
        data = self._load()
        return data, parse_message(data)

    def header(self, name: str) -> list[str]:
        data, root = self._parsed
        return header_values(data, root, name)

    def headers_text(self) -> str:
        data, root = self._parsed
        raw = section_bytes(data, root, parse_section("HEADER"))
        return raw.decode("utf-8", "replace")

    def body_text(self) -> str:
        data, root = self._parsed
        return text_content(data, root)

    def sent_date(self) -> datetime | None:
        values = self.header("Date")
        if not values:
            return None
        try:
            return parsedate_to_datetime(values[0])
        except (TypeError, ValueError, IndexError):
            return None
