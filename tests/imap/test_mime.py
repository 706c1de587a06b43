"""imap.mime: MIME structure, ENVELOPE, BODYSTRUCTURE, BODY[]/BINARY[] sections, search text.

The conformance part replays the FETCH expectations of Dovecot's imaptest
scripts (``/work/shared/conformance/imaptest/corpus``) against our functions,
loading each script's mbox the way ``run_imaptest.py`` does and comparing the
way it does (case-insensitively, whitespace between tokens ignored) except
for section bytes, which must be exact.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imap import mime
from imap.grammar import NIL, Adjacent, ListValue, ParseError, String, Value, encode_value
from imap.mime import (
    MAX_ADDRESSES,
    MAX_DEPTH,
    MAX_PARTS,
    MimeError,
    Part,
    SectionSpec,
    binary_section,
    body_structure,
    envelope,
    header_values,
    parse_message,
    parse_section,
    section_bytes,
    text_content,
)

CORPUS = Path(__file__).resolve().parents[2].parent / "shared/conformance/imaptest/corpus"
SCRIPTS = (
    "fetch-envelope",
    "fetch-bodystructure",
    "fetch-body",
    "fetch-body-mime",
    "fetch-body-message-rfc822",
    "fetch-body-message-rfc822-mime",
    "fetch-body-message-rfc822-x2",
    "fetch-binary-mime",
    "fetch-binary-mime-base64",
    "fetch-binary-mime-qp",
)


# --- reading the corpus as run_imaptest.py does --------------------------------------

# a valid mbox "From " separator line (run_imaptest._FROM_RE, without the captures)
_FROM_LINE = re.compile(
    r"^From \S*\s+(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+"
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\s+\d{1,2}:\d{2}(?::\d{2})?"
    r"(?:\s+(?:[A-Z]{1,5}|[+-]\d{4}))?\s+\d{4}(?:\s+[+-]\d{4})?\s*$"
)


def load_mbox(path: Path) -> list[bytes]:
    """The messages as the runner APPENDs them.

    Lines split on LF (a trailing CR dropped) and re-joined with CRLF; a
    message starts at each valid ``From `` line that follows a non-empty one.
    The runner does not un-escape ``>From`` lines, so neither do we.
    """
    lines = path.read_bytes().decode("latin-1").split("\n")[:-1]
    messages: list[list[str]] = []
    for line in lines:
        line = line.removesuffix("\r")
        if line.startswith("From ") and _FROM_LINE.match(line):
            if not messages or messages[-1]:
                messages.append([])
            continue
        messages[-1].append(line)
    return ["".join(f"{line}\r\n" for line in body).encode("latin-1") for body in messages]


def script_lines(path: Path) -> list[tuple[int, str]]:
    """Command and reply lines after the header, ``{{{ }}}`` literals assembled as the runner."""
    out: list[tuple[int, str]] = []
    header = True
    pending: list[str] | None = None
    prefix, binary, start = "", False, 0
    for number, line in enumerate(path.read_bytes().decode("latin-1").split("\n")[:-1], 1):
        if pending is not None:
            if not line.startswith("}}}"):
                pending.append(line)
                continue
            content = ("\n" if binary else "\r\n").join(pending)
            assembled = f"{prefix}{'~' if binary else ''}{{{len(content)}}}\r\n{content}"
            rest = line[3:]
            if rest.endswith("{{{"):
                binary = rest[:-3].endswith("~")
                prefix, pending = assembled + rest[: -4 if binary else -3], []
                continue
            line, pending = assembled + rest, None
        else:
            start = number
            if line == "":
                header = False
                continue
            if line.startswith("#"):
                continue
            if line.endswith("{{{"):
                binary = line[:-3].endswith("~")
                prefix, pending = line[: -4 if binary else -3], []
                continue
        if not header:
            out.append((start, line))
    return out


Token = str | tuple[str, str] | None | list["Token"]
_LITERAL = re.compile(r"~?\{(\d+)\}\r\n")


def tokenize(text: str) -> list[Token]:
    """IMAP tokens: atoms (sections with spaces inside brackets included), strings, lists.

    Atoms come back as ``str``, strings as ``("s", value)``, NIL as None.
    """
    stack: list[list[Token]] = [[]]
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \r\n":
            i += 1
        elif c == "(":
            child: list[Token] = []
            stack[-1].append(child)
            stack.append(child)
            i += 1
        elif c == ")":
            stack.pop()
            i += 1
        elif c == '"':
            j, value = i + 1, []
            while text[j] != '"':
                j += 1 if text[j] == "\\" else 0
                value.append(text[j])
                j += 1
            stack[-1].append(("s", "".join(value)))
            i = j + 1
        elif literal := _LITERAL.match(text, i):
            size = int(literal.group(1))
            stack[-1].append(("s", text[literal.end() : literal.end() + size]))
            i = literal.end() + size
        else:
            j, depth = i, 0
            while j < len(text) and (depth or text[j] not in " \r\n()"):
                depth += {"[": 1, "]": -1}.get(text[j], 0)
                j += 1
            atom = text[i:j]
            stack[-1].append(None if atom.upper() == "NIL" else atom)
            i = j
    return stack[0]


def normalize(token: Token) -> object:
    """Compare as the runner does: strings and atoms alike, case-insensitively."""
    if isinstance(token, list):
        return tuple(normalize(t) for t in token)
    if isinstance(token, tuple):
        return token[1].lower()
    return None if token is None else token.lower()


def wire(value: Value) -> object:
    return normalize(tokenize(encode_value(value).decode("latin-1"))[0])


# --- the FETCH expectations ----------------------------------------------------------


@dataclass(frozen=True)
class Check:
    script: str
    line: int
    command: str
    seq: int
    item: str  # as written in the reply, e.g. body[1.MIME] or binary[5]<0>
    expected: Token
    present: bool  # a "*" line (must match) or a "!" line (must not)
    same_as: tuple[int, str, str] | None  # "$var" seen before: (seq, item, command)


_ITEM = re.compile(
    r"envelope|body|bodystructure|rfc822(?:\.header|\.text)?|(?:body|binary|binary\.size)\[.*",
    re.IGNORECASE | re.DOTALL,
)


def corpus_checks() -> list[object]:
    if not CORPUS.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no corpus at {CORPUS}"))]
    checks: list[object] = []
    for script in SCRIPTS:
        variables: dict[str, tuple[int, str, str]] = {}
        command = ""
        for line_no, line in script_lines(CORPUS / script):
            if line[:2] not in ("* ", "! "):
                command = line
                continue
            seq, name, items = tokenize(line[2:])
            if not isinstance(name, str) or name.lower() != "fetch":
                continue
            assert isinstance(seq, str) and isinstance(items, list)
            for item, expected in zip(items[::2], items[1::2], strict=True):
                assert isinstance(item, str)
                if not _ITEM.fullmatch(item):
                    continue  # FLAGS, UID...: the session's business
                same_as = None
                if isinstance(expected, str) and expected.startswith("$"):
                    same_as = variables.setdefault(expected, (int(seq), item, command))
                check = Check(
                    script, line_no, command, int(seq), item, expected, line[0] == "*", same_as
                )
                checks.append(pytest.param(check, id=f"{script}:{line_no}:{item}"))
    return checks


def ours(messages: list[bytes], seq: int, item: str, command: str) -> Value | bytes | int:
    """What our functions give for one FETCH item."""
    data = messages[seq - 1]
    root = parse_message(data)
    name = item.lower()
    if name == "envelope":
        return envelope(root)
    if name in ("body", "bodystructure"):
        return body_structure(root, extensible=name == "bodystructure")
    plain = {"rfc822": "", "rfc822.header": "HEADER", "rfc822.text": "TEXT"}
    if name in plain:
        return section_bytes(data, root, parse_section(plain[name]))
    match = re.fullmatch(r"(body|binary|binary\.size)\[(.*)\](?:<(\d+)>)?", item, re.I | re.S)
    assert match is not None, item
    kind, section, origin = match.group(1).lower(), match.group(2), match.group(3)
    if kind == "body":
        result = section_bytes(data, root, parse_section(section))
    else:
        path = tuple(int(n) for n in section.split(".")) if section else ()
        result = binary_section(data, root, path)
        if kind == "binary.size":
            return len(result)
    if origin is None:
        return result
    partial = re.search(re.escape(f"[{section}]<{origin}.") + r"(\d+)>", command, re.I)
    assert partial is not None, command
    return result[int(origin) : int(origin) + int(partial.group(1))]


def same(value: Value | bytes | int, expected: Token) -> bool:
    if isinstance(value, bytes):
        return expected == ("s", value.decode("latin-1"))  # section bytes: exactly
    if isinstance(value, int):
        return expected == str(value)
    return wire(value) == normalize(expected)


@pytest.mark.parametrize("check", corpus_checks())
def test_corpus_fetch(check: Check) -> None:
    messages = load_mbox(CORPUS / f"{check.script}.mbox")
    value = ours(messages, check.seq, check.item, check.command)
    if check.same_as is not None:
        assert value == ours(messages, *check.same_as)
        return
    if check.present:
        assert same(value, check.expected), (value, check.expected)
    else:
        assert not same(value, check.expected), value


def test_corpus_nil_search() -> None:
    """``nil``: SUBJECT and BODY searches for "nil" must find the first message."""
    if not CORPUS.is_dir():
        pytest.skip(f"no corpus at {CORPUS}")
    data = load_mbox(CORPUS / "nil.mbox")[0]
    root = parse_message(data)
    assert header_values(data, root, "subject") == ["NiL"]
    assert "nil" in text_content(data, root).lower()


# --- helpers for hand-written messages -----------------------------------------------


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("latin-1")


class Wire(bytes):
    """Encoded values compared with or without a space between adjacent lists.

    RFC 3501 writes address lists and multipart bodies with none; whether the
    grammar's encoder puts one there is not this module's business.
    """

    def __eq__(self, other: object) -> bool:
        return isinstance(other, bytes) and squash(self) == squash(other)

    def __hash__(self) -> int:
        return hash(squash(self))


def squash(data: bytes) -> bytes:
    return bytes(data).replace(b") (", b")(")


def bs(data: bytes, extensible: bool = True) -> Wire:
    return Wire(encode_value(body_structure(parse_message(data), extensible)))


def env(data: bytes) -> Wire:
    return Wire(encode_value(envelope(parse_message(data))))


def section(data: bytes, spec: str) -> bytes:
    return section_bytes(data, parse_message(data), parse_section(spec))


def depth_of(part: Part) -> int:
    inner = [*part.children, *([part.message] if part.message else [])]
    return 1 + max((depth_of(p) for p in inner), default=0)


def count_of(part: Part) -> int:
    inner = [*part.children, *([part.message] if part.message else [])]
    return 1 + sum(count_of(p) for p in inner)


MIXED = crlf(
    "From: a@b.example\n"
    "Subject: mixed\n"
    "MIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="b1"\n'
    "\n"
    "prologue\n"
    "--b1\n"
    "Content-Type: text/plain; charset=iso-8859-1\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "Content-Disposition: inline\n"
    "\n"
    "caf=E9 =\n"
    "au lait\n"
    "--b1\n"
    "Content-Type: application/octet-stream; name=x.bin\n"
    "Content-Transfer-Encoding: base64\n"
    'Content-Disposition: attachment; filename="x.bin"\n'
    "Content-ID: <id@x>\n"
    "Content-Description: some\n"
    " bytes\n"
    "Content-Language: fr, en-GB\n"
    "Content-Location: http://x.example/x.bin\n"
    "Content-MD5: Q2hlY2s=\n"
    "\n"
    "AAEC\n"
    "/w==\n"
    "--b1--\n"
    "epilogue\n"
)


# --- structure and BODYSTRUCTURE -----------------------------------------------------


def test_bodystructure_of_a_mixed_message() -> None:
    assert bs(MIXED) == (
        b'(("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 17 1'
        b' NIL ("inline" NIL) NIL NIL)'
        b' ("application" "octet-stream" ("name" "x.bin") "<id@x>" "some bytes" "base64" 10'
        b' "Q2hlY2s=" ("attachment" ("filename" "x.bin")) ("fr" "en-GB")'
        b' "http://x.example/x.bin")'
        b' "mixed" ("boundary" "b1") NIL NIL NIL)'
    )
    assert bs(MIXED, extensible=False) == (
        b'(("text" "plain" ("charset" "iso-8859-1") NIL NIL "quoted-printable" 17 1)'
        b' ("application" "octet-stream" ("name" "x.bin") "<id@x>" "some bytes" "base64" 10)'
        b' "mixed")'
    )


def test_defaults_without_content_type() -> None:
    data = crlf("Subject: x\n\nhello\nworld\n")
    assert bs(data) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 14 2 NIL NIL NIL NIL)'
    )


def test_content_fields_ignored_without_mime() -> None:
    """Neither MIME-Version nor Content-Type: the Content-* fields do not count."""
    data = crlf("Content-Transfer-Encoding: base64\n\naGk=\n")
    assert bs(data, extensible=False) == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1)'
    )
    assert binary_section(data, parse_message(data), (1,)) == b"aGk=\r\n"


def test_sections_of_a_mixed_message() -> None:
    assert section(MIXED, "1") == b"caf=E9 =\r\nau lait"
    assert section(MIXED, "2.MIME").startswith(b"Content-Type: application/octet-stream")
    assert section(MIXED, "2.MIME").endswith(b"Content-MD5: Q2hlY2s=\r\n\r\n")
    assert section(MIXED, "TEXT").startswith(b"prologue\r\n--b1\r\n")
    assert section(MIXED, "3") == b""
    assert section(MIXED, "1.1") == section(MIXED, "1")  # as Dovecot: "1" of a leaf is itself
    assert section(MIXED, "1.2") == b""
    assert section(MIXED, "1.HEADER") == b""  # HEADER only exists for message/rfc822 parts
    assert section(MIXED, "") == MIXED


def test_missing_close_delimiter() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n")
    root = parse_message(data)
    assert len(root.children) == 2
    assert section(data, "2") == b"two\r\n"


def test_boundary_missing_from_the_body() -> None:
    data = crlf('Content-Type: multipart/mixed; boundary="nowhere"\n\njust text\n')
    root = parse_message(data)
    assert root.children == ()
    assert bs(data) == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'
        b' "mixed" ("boundary" "nowhere") NIL NIL NIL)'
    )
    assert section(data, "1") == b""


def test_multipart_without_boundary_parameter() -> None:
    data = crlf("Content-Type: multipart/alternative\n\n--x\n\nbody\n")
    assert parse_message(data).children == ()
    assert bs(data, extensible=False).endswith(b' "alternative")')


def test_unterminated_quote_drops_the_parameter() -> None:
    data = crlf('Content-Type: multipart/mixed; boundary="b\n\n--b\n\nx\n')
    assert parse_message(data).children == ()


def test_odd_parameter_syntax() -> None:
    data = crlf(
        "MIME-Version: 1.0\n"
        'Content-Type: text/plain ; ; charset = "utf-8" (comment); junk; format=flowed;'
        " name==?utf-8?q?a?=\n\nx\n"
    )
    assert bs(data, extensible=False) == (
        b'("text" "plain" ("charset" "utf-8" "format" "flowed" "name" "=?utf-8?q?a?=")'
        b' NIL NIL "7bit" 3 1)'
    )


def test_invalid_content_type_means_text_plain() -> None:
    for value in ("", "text", "/plain", "text/", "image/ png"):
        data = crlf(f"MIME-Version: 1.0\nContent-Type: {value}\n\nx\n")
        if value == "image/ png":  # blanks after the slash are allowed
            assert bs(data, extensible=False).startswith(b'("image" "png" NIL')
        else:
            assert bs(data, extensible=False).startswith(b'("text" "plain" ("charset" "us-ascii")')


def test_duplicate_headers_first_one_wins() -> None:
    data = crlf(
        "Subject: first\nSubject: second\nContent-Type: text/html\nContent-Type: image/png\n\n<p>\n"
    )
    assert bs(data, extensible=False).startswith(b'("text" "html"')
    assert env(data).startswith(b'(NIL "first"')
    assert header_values(data, parse_message(data), "SUBJECT") == ["first", "second"]


def test_header_without_blank_line() -> None:
    data = crlf("Subject: only a header\nFrom: a@b")
    root = parse_message(data)
    assert root.body_start == root.body_end == len(data)
    assert section(data, "HEADER") == data
    assert section(data, "TEXT") == b""
    assert section(data, "HEADER.FIELDS (FROM)") == b"From: a@b\r\n\r\n"


def test_bare_lf_message() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/x\n\none\n--b--\n"
    root = parse_message(data)
    assert section_bytes(data, root, parse_section("1")) == b"one"
    assert section_bytes(data, root, parse_section("1.MIME")) == b"Content-Type: text/x\n\n"
    assert bs(data, extensible=False) == (
        b'(("text" "x" ("charset" "us-ascii") NIL NIL "7bit" 3 0) "mixed")'
    )


def test_boundary_line_ends_a_header_without_blank_line() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/html\n--b\n\nx\n--b--\n"
    )
    assert [section(data, f"{n}.MIME") for n in (1, 2)] == [b"Content-Type: text/html", b"\r\n"]
    assert section(data, "1") == b""
    assert section(data, "2") == b"x"


def test_longest_boundary_wins_and_outer_boundary_closes_inner_parts() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=foo\n\n"
        "--foo\n"
        "Content-Type: multipart/alternative; boundary=foobar\n\n"
        "--foobar\n\ninner one\n"
        "--foo\n\nouter two\n"
        "--foo--\n"
    )
    root = parse_message(data)
    assert len(root.children) == 2
    assert len(root.children[0].children) == 1
    assert section(data, "1.1") == b"inner one"
    assert section(data, "2") == b"outer two"


def test_transport_padding_after_boundary() -> None:
    data = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b  \t\n\nx\n--b--  \n")
    assert section(data, "1") == b"x"


def test_digest_members_default_to_message_rfc822() -> None:
    data = crlf(
        "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: s\n\nhi\n"
        "--d\nContent-Type: text/plain\n\nplain\n--d--\n"
    )
    root = parse_message(data)
    assert root.children[0].message is not None
    assert root.children[1].message is None
    assert section(data, "1.HEADER") == b"Subject: s\r\n\r\n"
    assert section(data, "1.1") == b"hi"


def test_message_rfc822_sections_and_envelope() -> None:
    inner = "From: Inner <in@x.example>\nSubject: inner\n\nbody\n"
    data = crlf(f"Content-Type: message/rfc822\nMIME-Version: 1.0\n\n{inner}")
    assert section(data, "1") == crlf(inner)
    assert section(data, "1.HEADER") == crlf("From: Inner <in@x.example>\nSubject: inner\n\n")
    assert section(data, "1.TEXT") == section(data, "1.1") == b"body\r\n"
    assert section(data, "1.MIME") == section(data, "HEADER")
    assert section(data, "1.2") == b""
    assert bs(data, extensible=False) == (
        b'("message" "rfc822" NIL NIL NIL "7bit" %d'
        % len(crlf(inner))
        + b' (NIL "inner" (("Inner" NIL "in" "x.example")) (("Inner" NIL "in" "x.example"))'
        b' (("Inner" NIL "in" "x.example")) NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 6 1) 4)'
    )


def test_message_rfc822_cut_short() -> None:
    data = crlf("Content-Type: message/rfc822")
    root = parse_message(data)
    assert root.message is not None and root.message.body_end == len(data)
    assert encode_value(envelope(root.message)) == b"(" + b" ".join([b"NIL"] * 10) + b")"


def test_deep_nesting_is_bounded() -> None:
    data = b""
    for level in range(200):
        data += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
    data += b"\r\ndeep\r\n"
    root = parse_message(data)
    assert depth_of(root) == MAX_DEPTH + 1
    encode_value(body_structure(root))
    chain = b"Content-Type: message/rfc822\r\n\r\n" * 200 + b"\r\nend\r\n"
    root = parse_message(chain)
    assert depth_of(root) == MAX_DEPTH + 1
    assert b'"text" "plain"' in encode_value(body_structure(root))


def test_part_count_is_bounded() -> None:
    data = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 5000
    data += b"--b--\r\nepilogue\r\n"
    root = parse_message(data)
    assert count_of(root) == MAX_PARTS
    assert root.body_end == len(data)
    assert section(data, str(MAX_PARTS - 1)) == b"x"
    assert section(data, str(MAX_PARTS)) == b""


def test_past_the_part_limit_the_rest_is_opaque() -> None:
    inner = b"Content-Type: multipart/mixed; boundary=in\r\n\r\n" + b"--in\r\n\r\nx\r\n" * 3000
    data = (
        b"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\n"
        + inner
        + b"--in--\r\n--out\r\n\r\nlast\r\n--out--\r\n"
    )
    root = parse_message(data)
    assert count_of(root) == MAX_PARTS
    assert len(root.children) == 1  # no room left for the second member
    assert root.children[0].body_end == data.index(b"\r\n--out\r\n\r\nlast")
    assert root.body_end == len(data)


def test_rfc2231_parameters() -> None:
    data = crlf(
        "MIME-Version: 1.0\n"
        "Content-Type: application/pdf; name*1=\"b%.pdf\"; name*0*=utf-8''%E2%82%AC;\n"
        " title*0=a; title*2=c\n"
        "Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\n\nx\n"
    )
    assert bs(data) == (
        b'("application" "pdf" ("name*" "utf-8\'\'%E2%82%ACb%25.pdf" "title*0" "a" "title*2" "c")'
        b' NIL NIL "7bit" 3 NIL ("attachment" ("filename*" "utf-8\'\'r%C3%A9sum%C3%A9.pdf"))'
        b" NIL NIL)"
    )


# --- ENVELOPE ------------------------------------------------------------------------


def test_envelope_keeps_encoded_words_and_unfolds() -> None:
    data = crlf(
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
        "Subject: =?utf-8?q?caf=C3=A9?=\n"
        "  au lait \n"
        "From: =?iso-8859-1?q?Andr=E9?= <andre@x.example>\n"
        "Message-ID: <m@x>\n\n"
    )
    assert env(data) == (
        b'("Mon, 1 Jan 2024 00:00:00 +0000" "=?utf-8?q?caf=C3=A9?=  au lait"'
        b' (("=?iso-8859-1?q?Andr=E9?=" NIL "andre" "x.example"))'
        b' (("=?iso-8859-1?q?Andr=E9?=" NIL "andre" "x.example"))'
        b' (("=?iso-8859-1?q?Andr=E9?=" NIL "andre" "x.example")) NIL NIL NIL NIL "<m@x>")'
    )


def test_envelope_keeps_8bit_bytes() -> None:
    data = 'Subject: Médecin\r\nFrom: "Hélène" <h@x>\r\n\r\n'.encode()
    value = envelope(parse_message(data))
    assert value.items[1] == String("Médecin".encode())
    assert encode_value(value).startswith(b"(NIL {8}\r\nM\xc3\xa9decin ((")


def test_envelope_of_an_empty_message() -> None:
    assert env(b"") == b"(" + b" ".join([b"NIL"] * 10) + b")"


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("a@b", b'((NIL NIL "a" "b"))'),
        ('"Doe, \\"J\\"" <j@d>', b'(("Doe, \\"J\\"" NIL "j" "d"))'),
        ('"folded\r\n name" <j@d>', b'(("folded name" NIL "j" "d"))'),
        ("j@d (Comment \\(x\\))", b'(("Comment (x)" NIL "j" "d"))'),
        ("<@a.example,@b.example:u@d>", b'((NIL "@a.example,@b.example" "u" "d"))'),
        ("user", b'((NIL NIL "user" "MISSING_DOMAIN"))'),
        ("John Smith", b'(("John Smith" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
        ("Name <broken", b'(("Name" NIL "broken" "SYNTAX_ERROR"))'),
        ("<@route>", b'((NIL "INVALID_ROUTE" "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
        ("Name <@route x@y>", b'(("Name" "INVALID_ROUTE" "x" "y"))'),
        ("@d", b'((NIL NIL "MISSING_MAILBOX" "d"))'),
        ("undisclosed-recipients:;", b'((NIL NIL "undisclosed-recipients" NIL) (NIL NIL NIL NIL))'),
        ("a@b, (unterminated", b'((NIL NIL "a" "b") (NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
        ("", b"NIL"),
        ("  (just a comment) ", b"NIL"),
    ],
)
def test_address_forms(field: str, expected: bytes) -> None:
    data = crlf(f"To: {field}\n\n")
    assert Wire(encode_value(envelope(parse_message(data)).items[5])) == expected


def test_address_field_size_is_bounded() -> None:
    data = crlf("From: " + "a " * 200_000 + "<x@y>\n\n")
    author = envelope(parse_message(data)).items[2]
    assert isinstance(author, ListValue) and len(author.items) == 1


def test_address_count_is_bounded() -> None:
    data = crlf("To: " + ", ".join(f"u{n}@x" for n in range(3 * MAX_ADDRESSES)) + "\n\n")
    to = envelope(parse_message(data)).items[5]
    assert isinstance(to, ListValue) and isinstance(to.items[0], Adjacent)
    assert len(to.items[0].items) == MAX_ADDRESSES


# --- BODY[section] -------------------------------------------------------------------

FOLDED = crlf(
    "From: a@b\nX-Long: one\n two\nSubject: s\nfrom: second@b\nBroken line without colon\n\nbody\n"
)


def test_field_name_is_on_the_first_line() -> None:
    data = crlf("Odd line\n To: fake\nTo: real\n\n")
    assert section(data, "HEADER.FIELDS (TO)") == b"To: real\r\n\r\n"
    assert section_bytes(data, parse_message(data), SectionSpec((), "HEADER.FIELDS")) == b"\r\n"
    assert header_values(data, parse_message(data), "tö") == []


def test_header_fields_keep_folding_and_order() -> None:
    assert section(FOLDED, "HEADER.FIELDS (x-long FROM)") == crlf(
        "From: a@b\nX-Long: one\n two\nfrom: second@b\n\n"
    )
    assert section(FOLDED, 'HEADER.FIELDS.NOT ("From" X-LONG)') == crlf(
        "Subject: s\nBroken line without colon\n\n"
    )
    assert section(FOLDED, "HEADER.FIELDS (nothing)") == b"\r\n"


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("", SectionSpec()),
        ("header", SectionSpec((), "HEADER")),
        ("Text", SectionSpec((), "TEXT")),
        ("1", SectionSpec((1,))),
        ("1.2.3.MIME", SectionSpec((1, 2, 3), "MIME")),
        ("4.header", SectionSpec((4,), "HEADER")),
        ("HEADER.FIELDS (From to)", SectionSpec((), "HEADER.FIELDS", ("FROM", "TO"))),
        ('2.header.fields.not ("x y" Z])', SectionSpec((2,), "HEADER.FIELDS.NOT", ("X Y", "Z]"))),
    ],
)
def test_parse_section(text: str, spec: SectionSpec) -> None:
    assert parse_section(text) == spec


@pytest.mark.parametrize(
    "text",
    [
        "MIME",
        "0",
        "1.0",
        "1.",
        ".1",
        "1..2",
        "1HEADER",
        "HEADER.FIELDS",
        "HEADER.FIELDS ()",
        "HEADER.FIELDS (a  b)",
        "HEADER.FIELDS (a",
        "HEADER.FIELDS.NOT(a)",
        "TEXT.MIME",
        "12345678901",
        "BODY",
    ],
)
def test_parse_section_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        parse_section(text)


# --- BINARY[section] -----------------------------------------------------------------


def test_binary_decodes_leaves() -> None:
    root = parse_message(MIXED)
    assert binary_section(MIXED, root, (1,)) == b"caf\xe9 au lait"
    assert binary_section(MIXED, root, (2,)) == b"\x00\x01\x02\xff"
    assert binary_section(MIXED, root, (3,)) == b""


def test_binary_of_a_multipart_rewrites_the_encodings() -> None:
    whole = binary_section(MIXED, parse_message(MIXED), ())
    assert whole.count(b"Content-Transfer-Encoding: binary\r\n") == 2
    assert b"caf\xe9 au lait\r\n--b1\r\n" in whole
    assert whole.endswith(b"\r\n\r\n\x00\x01\x02\xff\r\n--b1--\r\nepilogue\r\n")
    assert binary_section(whole, parse_message(whole), (2,)) == b"\x00\x01\x02\xff"


def test_binary_of_a_multipart_without_members_is_its_body() -> None:
    data = crlf("Content-Type: multipart/mixed\nContent-Transfer-Encoding: base64\n\naGk=\n")
    assert binary_section(data, parse_message(data), ()) == data


def test_binary_unknown_or_undecodable() -> None:
    for cte, body in (("x-uuencode", "begin 644 x\n"), ("base64", "abcde\n")):
        data = crlf(f"MIME-Version: 1.0\nContent-Transfer-Encoding: {cte}\n\n{body}")
        root = parse_message(data)
        with pytest.raises(MimeError) as raised:
            binary_section(data, root, (1,))
        assert raised.value.code == "UNKNOWN-CTE"


def test_binary_base64_leniency() -> None:
    for body, decoded in (("aGk", b"hi"), ("aGk=aGk=", b"hihi"), ("a G!k=\n", b"hi")):
        data = crlf(f"MIME-Version: 1.0\nContent-Transfer-Encoding: BASE64\n\n{body}")
        assert binary_section(data, parse_message(data), (1,)) == decoded


def test_binary_quoted_printable_keeps_bad_escapes() -> None:
    data = crlf("MIME-Version: 1.0\nContent-Transfer-Encoding: quoted-printable\n\na=zz=3d=\n")
    assert binary_section(data, parse_message(data), (1,)) == b"a=zz="


# --- text for SEARCH and SORT --------------------------------------------------------


def test_header_values_decode_rfc2047() -> None:
    data = crlf(
        "Subject: =?utf-8?q?caf=C3=A9?= =?UTF-8?B?w6k=?=\n  and =?x-unknown?q?a?= =?utf-8?q?b?\n"
        "subject: =?iso-8859-1?q?=E9t=E9?=_x\n\n"
    )
    assert header_values(data, parse_message(data), "Subject") == [
        "caféé  and a =?utf-8?q?b?",
        "été_x",
    ]


def test_header_values_of_8bit_headers() -> None:
    data = b"Subject: M\xc3\xa9decin\r\nX-Latin: caf\xe9\r\n\r\n"
    root = parse_message(data)
    assert header_values(data, root, "subject") == ["Médecin"]
    assert header_values(data, root, "x-latin") == ["café"]
    assert header_values(data, root, "missing") == []


def test_text_content_decodes_every_text_part() -> None:
    data = crlf(
        "Content-Type: multipart/mixed; boundary=b\n\n"
        "--b\nContent-Type: text/html; charset=punycode\n\n<b>bold</b>\n"
        "--b\nContent-Type: message/rfc822\n\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nw6k=\n"
        "--b\nContent-Type: image/png\n\nnot text\n"
        "--b\nContent-Type: text/plain; charset=no-such-charset\n\n\xc3\xa9t\xc3\xa9\n"
        "--b--\n"
    )
    assert text_content(data, parse_message(data)) == "<b>bold</b>\né\nété"
    assert text_content(MIXED, parse_message(MIXED)) == "café au lait"


# --- the cache form ------------------------------------------------------------------


def test_json_round_trip_is_compact() -> None:
    root = parse_message(MIXED)
    encoded = json.dumps(root.to_json(), separators=(",", ":"))
    assert Part.from_json(json.loads(encoded)) == root
    assert len(encoded) < 700
    assert Part.from_json(Part(0, 0, 0).to_json()) == Part(0, 0, 0)


@pytest.mark.parametrize(
    "bad",
    [
        {},
        {"o": [0, 0]},
        {"o": [0, 0, -1]},
        {"o": [0, 0, True]},
        {"o": [0, 0, 0], "t": ["text"]},
        {"o": [0, 0, 0], "p": [["a"]]},
        {"o": [0, 0, 0], "v": [None] * 9},
        {"o": [0, 0, 0], "k": [{"o": "x"}]},
        {"o": [0, 0, 0], "i": 3},
    ],
)
def test_from_json_rejects_malformed(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Part.from_json(bad)


# --- properties ----------------------------------------------------------------------

_LINES = st.sampled_from(
    [
        b"Content-Type: multipart/mixed; boundary=a\r\n",
        b"Content-Type: multipart/digest; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: text/plain; charset*0*=utf-8''%C3; charset*1=x\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b'From: "a\\" (b" <@r:x@y>, g: c@d;\r\n',
        b"Subject: =?utf-8?b?w6k=?=\r\n",
        b" folded\r\n",
        b"--a\r\n",
        b"--b\r\n",
        b"--a--\r\n",
        b"\r\n",
        b"\n",
        b"aGk= =3D\r\n",
    ]
)
_MESSAGES = st.one_of(st.binary(max_size=300), st.lists(_LINES, max_size=40).map(b"".join))


def _everything(data: bytes) -> Part:
    """Run every public function on a message; only MimeError may come out, from BINARY."""
    root = parse_message(data)
    encode_value(envelope(root))
    encode_value(body_structure(root))
    encode_value(body_structure(root, extensible=False))
    text_content(data, root)
    header_values(data, root, "from")
    for spec in ("", "TEXT", "HEADER", "1", "1.MIME", "1.1", "2.HEADER", "HEADER.FIELDS (FROM)"):
        section_bytes(data, root, parse_section(spec))
    for path in ((), (1,), (1, 1), (2,)):
        with contextlib.suppress(MimeError):
            binary_section(data, root, path)
    return root


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(_MESSAGES)
def test_never_raises_and_round_trips(data: bytes) -> None:
    root = _everything(data)
    assert Part.from_json(json.loads(json.dumps(root.to_json()))) == root
    assert root.header_start == 0 and root.body_end == len(data)


@settings(max_examples=200)
@given(_MESSAGES)
def test_parts_tile_their_parent(data: bytes) -> None:
    """Children lie in order inside their parent's body; offsets stay in the message."""

    def walk(part: Part) -> None:
        assert 0 <= part.header_start <= part.body_start <= part.body_end <= len(data)
        pos = part.body_start
        for child in part.children:
            assert pos <= child.header_start and child.body_end <= part.body_end
            pos = child.body_end
            walk(child)
        if part.message is not None:
            assert part.message.header_start == part.body_start
            assert part.message.body_end == part.body_end
            walk(part.message)

    walk(parse_message(data))


def test_sender_and_reply_to_default_to_from() -> None:
    """Sender and Reply-To fall back to From when absent or empty."""
    data = crlf("From: a@b\nSender:\nReply-To: (nobody)\n\n")
    items = envelope(parse_message(data)).items
    assert items[2] == items[3] == items[4] != NIL


_QP_PIECES = [b"a", b"=", b"3", b"D", b"d", b"\r", b"\n", b"\r\n", b" ", b"\t", b"=3D", b"=3d"]
_QP_PIECES += [b"=C3=A9", b"=\r\n", b"=\n", b"= \r\n", b"=0", b"g", b"\xe9", b"_", b"=="]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_QP_PIECES), max_size=40))
def test_quoted_printable_reads_the_same_by_the_fast_path(parts: list[bytes]) -> None:
    # The C decoder serves plain bodies; the line-by-line reading is the reference.
    body = b"".join(parts)
    assert mime._quoted_printable(body) == mime._quoted_printable_lines(body)
