"""IMAP URLs as CATENATE reads them (RFC 5092)."""

from __future__ import annotations

import pytest

from imap.urls import MessageUrl, parse_message_url


def test_server_relative_and_absolute_forms() -> None:
    assert parse_message_url("/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.HEADER") == MessageUrl(
        "INBOX", 7, 3, "1.HEADER", None
    )
    assert parse_message_url("imap://u@host/Dossiers%2F%C3%89t%C3%A9/;uid=9/;partial=10.5") == (
        MessageUrl("Dossiers/Été", None, 9, "", (10, 5))
    )


@pytest.mark.parametrize(
    "url",
    [
        "INBOX/;uid=1",  # relative without a base
        "/INBOX",  # no message
        "/INBOX/;uid=0",
        "/INBOX/;uid=x",
        "/INBOX/;uid=1/;partial=a.b",
        "/INBOX/;uid=1/;urlauth=anonymous:internal:abc",
        "/INBOX?SUBJECT%20x",
        "/INBOX/;uid=1/;nonsense=2",
    ],
)
def test_urls_we_do_not_serve_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        parse_message_url(url)
