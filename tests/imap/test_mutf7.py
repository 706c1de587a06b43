"""Modified UTF-7 mailbox names: vectors from RFC 3501, Dovecot and isync, and rejections.

imaptest's ``mutf7`` script only creates ``p&AOQA5A-`` and expects LIST and
STATUS to echo it back unchanged; the names Dovecot refuses at CREATE are the
ones its own codec refuses (lib-imap/test-imap-utf7.c), tested here at the
codec level along with the other non-canonical spellings.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imap.mutf7 import decode, encode


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("", ""),
        ("INBOX", "INBOX"),
        ("&", "&-"),
        ("&&x&&", "&-&-x&-&-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # RFC 3501 §5.1.3
        ("tietäjä", "tiet&AOQ-j&AOQ-"),
        ("tietä&jä&", "tiet&AOQ-&-j&AOQ-&-"),
        ("imaptest/pää", "imaptest/p&AOQA5A-"),  # imaptest's mutf7 script
        ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
        ("\t", "&AAk-"),  # control characters cannot stand for themselves
        ("m\x7fll", "m&AH8-ll"),
        ("\t&\t", "&AAk-&-&AAk-"),
        ("😀", "&2D3eAA-"),  # outside the BMP: a surrogate pair
        ("a\x00b", "a&AAA-b"),
    ],
)
def test_known_vectors(name: str, wire: str) -> None:
    assert encode(name) == wire
    assert decode(wire) == name


@pytest.mark.parametrize(
    "wire",
    [
        "&",  # Dovecot: & not closed
        "&Jjo",  # Dovecot: base64 not closed
        "&Jjo!",  # Dovecot: not a base64 character
        "&U,BTFw-&ZeVnLIqe-",  # Dovecot: adjacent runs, should be one
        "&AOQ-&AOU-",
        "&&-",
        "&*Ak-",
        "&AOQ/-",  # plain base64 "/" instead of ","
        "&AOQA5A=-",  # padding
        "&AGE-",  # "a" encoded
        "&ACY-",  # "&" encoded instead of "&-"
        "&ACA-",  # space encoded
        "x&AH4-",  # "~" encoded
        "&AOR-",  # non-zero padding bits
        "&A-",  # impossible base64 length
        "&AOQAA-",
        "&AA-",  # odd number of UTF-16 bytes
        "&AOQA-",
        "&2D0-",  # lone high surrogate
        "&3gA-",  # lone low surrogate
        "&2D0AYQ-",  # high surrogate then a BMP character
        "&2D0-&3gA-",  # a pair split across two runs
        "pää",  # raw 8-bit: the name must be 7-bit
        "a\tb",  # raw control character
        "a\x7fb",
    ],
)
def test_invalid_names_are_refused(wire: str) -> None:
    with pytest.raises(ValueError):
        decode(wire)


def test_lone_surrogate_cannot_be_encoded() -> None:
    with pytest.raises(ValueError):
        encode("a\ud800b")


@settings(max_examples=500)
@given(st.text(st.characters(codec="utf-8")))
def test_round_trip(name: str) -> None:
    wire = encode(name)
    assert wire.isascii() and wire.isprintable()
    assert decode(wire) == name


@settings(max_examples=500)
@given(st.text(alphabet="&-AOQa5+,/=Z2D3e!x", max_size=12))
def test_decode_accepts_exactly_the_canonical_forms(wire: str) -> None:
    """Anything ``decode`` accepts is what ``encode`` writes, so one name has one spelling."""
    try:
        name = decode(wire)
    except ValueError:
        return
    assert encode(name) == wire
