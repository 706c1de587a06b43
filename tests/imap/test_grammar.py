"""The IMAP grammar core: command tokenization, literals, bounds, resync, responses."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from imap.grammar import (
    NEED_DATA,
    NIL,
    Atom,
    Command,
    CommandParser,
    Continuation,
    Event,
    Limits,
    ListValue,
    LiteralFile,
    NeedContinuation,
    NeedData,
    Number,
    ParseError,
    SequenceSet,
    String,
    Tagged,
    Untagged,
    Value,
    as_astring,
    as_sequence_set,
    encode_value,
    parse_response_line,
    serialize,
)


def run(parser: CommandParser, data: bytes, *, accept: bool = True) -> list[Event]:
    """Feed ``data`` and collect events until the parser wants more bytes."""
    parser.feed(data)
    out: list[Event] = []
    while True:
        event = parser.next()
        if isinstance(event, NeedData):
            return out
        out.append(event)
        if isinstance(event, NeedContinuation):
            if accept:
                parser.accept_literal()
            else:
                parser.reject_literal()


def parse(data: bytes, limits: Limits | None = None) -> list[Event]:
    return run(CommandParser(limits), data)


def one(data: bytes) -> Command:
    events = [e for e in parse(data) if not isinstance(e, NeedContinuation)]
    assert len(events) == 1, events
    assert isinstance(events[0], Command), events[0]
    return events[0]


def error(data: bytes, limits: Limits | None = None) -> ParseError:
    events = parse(data, limits)
    assert isinstance(events[0], ParseError), events
    return events[0]


# --- tokens -------------------------------------------------------------------------


def test_simple_command_is_upper_cased() -> None:
    assert one(b"a1 noop\r\n") == Command("a1", "NOOP", ())


def test_uid_command_name_has_two_words() -> None:
    cmd = one(b"A2 uid fetch 1:* (FLAGS)\r\n")
    assert cmd == Command("A2", "UID FETCH", (Atom("1:*"), ListValue((Atom("FLAGS"),))))
    assert as_sequence_set(cmd.args[0]) == SequenceSet(((1, None),))


def test_atoms_flags_and_wildcards() -> None:
    cmd = one(b"A STORE 1 +FLAGS.SILENT (\\Seen \\Deleted $Junk)\r\n")
    assert cmd.args == (
        Number(1),
        Atom("+FLAGS.SILENT"),
        ListValue((Atom("\\Seen"), Atom("\\Deleted"), Atom("$Junk"))),
    )
    assert one(b'B LIST "" %/*\r\n').args == (String(b""), Atom("%/*"))


def test_section_with_spaces_is_one_atom() -> None:
    cmd = one(b"A FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (From To)]<0.100> BODY[])\r\n")
    assert cmd.args[1] == ListValue(
        (Atom("UID"), Atom("BODY.PEEK[HEADER.FIELDS (From To)]<0.100>"), Atom("BODY[]"))
    )
    # An unclosed "[" is an ordinary atom character (mailbox names may hold one);
    # FETCH then refuses "BODY[HEADER" as an attribute, not the tokenizer.
    assert one(b"A FETCH 1 BODY[HEADER\r\n").args[1] == Atom("BODY[HEADER")
    assert one(b"A SELECT a[b]c[d\r\n").args == (Atom("a[b]c[d"),)


def test_quoted_escapes() -> None:
    cmd = one(b'A LOGIN "us\\"er" "p\\\\w d"\r\n')
    assert cmd.args == (String(b'us"er'), String(b"p\\w d"))
    first = cmd.args[0]
    assert isinstance(first, String) and not first.literal


@pytest.mark.parametrize(
    "line",
    [
        b'A LOGIN "a\\b" x\r\n',  # only \" and \\ may be escaped
        b'A LOGIN "abc\r\n',  # unterminated
        b'A LOGIN "a\x00b" x\r\n',  # NUL
        b'A LOGIN "\xff\xfe" x\r\n',  # 8-bit but not UTF-8
        b'A LOGIN "x"y\r\n',  # no space after the string
    ],
)
def test_bad_quoted_then_in_sync(line: bytes) -> None:
    events = parse(line + b"B NOOP\r\n")
    assert isinstance(events[0], ParseError) and events[0].tag == "A"
    assert events[1:] == [Command("B", "NOOP", ())]


def test_utf8_in_quoted() -> None:
    assert one('A SELECT "Boîte reçue"\r\n'.encode()).args == (String("Boîte reçue".encode()),)


def test_nil_numbers() -> None:
    cmd = one(b"A X nil NIL 0 42 9223372036854775807 007\r\n")
    assert cmd.args == (NIL, NIL, Number(0), Number(42), Number(2**63 - 1), Atom("007"))
    assert error(b"A X 9223372036854775808\r\n").text == "number too large"


def test_nested_lists_and_depth_bound() -> None:
    assert one(b"A X () (a (b ()))\r\n").args == (
        ListValue(()),
        ListValue((Atom("a"), ListValue((Atom("b"), ListValue(()))))),
    )
    ok = b"A X " + b"(" * 16 + b")" * 16 + b"\r\n"
    assert isinstance(parse(ok)[0], Command)
    deep = b"A X " + b"(" * 17 + b")" * 17 + b"\r\nB NOOP\r\n"
    events = parse(deep)
    assert isinstance(events[0], ParseError) and "deep" in events[0].text
    assert events[1] == Command("B", "NOOP", ())
    assert isinstance(parse(b"A X " + b"(" * 3 + b"\r\n")[0], ParseError)


@pytest.mark.parametrize(
    ("line", "tag"),
    [
        (b"\r\n", None),
        (b"(x NOOP\r\n", None),
        (b"A+ NOOP\r\n", None),
        (b"A\r\n", "A"),
        (b"A  NOOP\r\n", "A"),
        (b"A NOOP \r\n", "A"),
        (b"A FO(O x\r\n", "A"),
        (b"A LOGIN {3} x\r\n", "A"),
        (b"A LOGIN \xe9t\xe9\r\n", "A"),
        (b"A LOGIN a\nb\r\n", "A"),
        (b"A LOGIN a\rb\r\n", "A"),
    ],
)
def test_syntax_errors_carry_the_tag_and_resync(line: bytes, tag: str | None) -> None:
    events = parse(line + b"B NOOP\r\n")
    assert isinstance(events[0], ParseError) and events[0].tag == tag
    assert events[1:] == [Command("B", "NOOP", ())]


# --- literals -----------------------------------------------------------------------


def test_synchronising_literal_waits_for_accept() -> None:
    parser = CommandParser()
    parser.feed(b"A LOGIN {4}\r\n")
    assert parser.next() == NeedContinuation(4)
    assert parser.next() == NeedContinuation(4)  # asking again changes nothing
    parser.accept_literal()
    assert parser.next() is NEED_DATA
    parser.feed(b"us\r\n {5+}\r\np\x00s\r\n\r\n")
    cmd = parser.next()
    assert cmd == Command("A", "LOGIN", (String(b"us\r\n"), String(b"p\x00s\r\n")))
    assert isinstance(cmd, Command)
    first = cmd.args[0]
    assert isinstance(first, String) and first.literal
    assert parser.next() is NEED_DATA


def test_rejected_literal_drops_the_command() -> None:
    parser = CommandParser()
    events = run(parser, b"A APPEND INBOX {10}\r\nB NOOP\r\n", accept=False)
    assert events == [NeedContinuation(10), Command("B", "NOOP", ())]
    with pytest.raises(RuntimeError):
        parser.accept_literal()
    with pytest.raises(RuntimeError):
        parser.reject_literal()


def test_literal8_and_empty_literal() -> None:
    cmd = one(b"A APPEND INBOX (\\Seen) ~{3+}\r\n\x00\x01\x02 {0}\r\n\r\n")
    assert cmd.args == (
        Atom("INBOX"),
        ListValue((Atom("\\Seen"),)),
        String(b"\x00\x01\x02", binary=True),
        String(b""),
    )
    events = parse(b"A APPEND INBOX ~{2}\r\nab\r\n")
    assert events == [
        NeedContinuation(2),
        Command("A", "APPEND", (Atom("INBOX"), String(b"ab", binary=True))),
    ]


def test_literal_inside_a_list() -> None:
    cmd = one(b"A X (a {1+}\r\nb c)\r\n")
    assert cmd.args == (ListValue((Atom("a"), String(b"b"), Atom("c"))),)


def test_big_literals_are_spooled() -> None:
    limits = Limits(literal_memory=8)
    events = parse(b"A APPEND INBOX {20+}\r\n" + b"x" * 20 + b" {6+}\r\nsmall!\r\n", limits)
    (cmd,) = events
    assert isinstance(cmd, Command)
    big = cmd.args[1]
    assert isinstance(big, LiteralFile) and big.size == 20 and not big.binary
    assert big.file.read() == b"x" * 20
    assert cmd.args[2] == String(b"small!")
    big.file.close()
    # what stays in memory is bounded per command, not only per literal
    (cmd,) = parse(b"A X {6+}\r\naaaaaa {6+}\r\nbbbbbb\r\n", limits)
    assert isinstance(cmd, Command)
    assert cmd.args[0] == String(b"aaaaaa")
    assert isinstance(cmd.args[1], LiteralFile) and cmd.args[1].file.read() == b"bbbbbb"


def test_too_big_nonsync_literal_is_skipped() -> None:
    limits = Limits(max_literal=10)
    data = b"A APPEND INBOX {11+}\r\nhello\r\nworld more {2+}\r\n\r\n rest\r\nB NOOP\r\n"
    events = parse(data, limits)
    assert events == [ParseError("A", "TOOBIG", "literal too big"), Command("B", "NOOP", ())]


def test_too_big_sync_literal_ends_the_command() -> None:
    events = parse(b"A APPEND INBOX {11}\r\nB NOOP\r\n", Limits(max_literal=10))
    assert events == [ParseError("A", "TOOBIG", "literal too big"), Command("B", "NOOP", ())]


def test_literal_total_per_command_is_bounded() -> None:
    limits = Limits(max_literal=10, max_literal_total=15)
    data = b"A X {8+}\r\n12345678 {8+}\r\n12345678\r\nB NOOP\r\n"
    events = parse(data, limits)
    assert events == [ParseError("A", "TOOBIG", "literal too big"), Command("B", "NOOP", ())]


def test_absurd_literal_size() -> None:
    events = parse(b"A X {" + b"9" * 40 + b"}\r\nB NOOP\r\n")
    assert events == [ParseError("A", "TOOBIG", "literal too big"), Command("B", "NOOP", ())]


# --- line bound ---------------------------------------------------------------------


def test_line_at_the_limit_is_accepted() -> None:
    line = b"A X " + b"y" * 28
    assert len(line) == 32
    assert parse(line + b"\r\n", Limits(max_line=32)) == [Command("A", "X", (Atom("y" * 28),))]


def test_over_long_line_then_in_sync() -> None:
    limits = Limits(max_line=32)
    events = parse(b"A X " + b"y" * 100 + b"\r\nB NOOP\r\n", limits)
    assert events == [ParseError("A", None, "line too long"), Command("B", "NOOP", ())]


def test_over_long_line_fed_slowly_is_not_buffered() -> None:
    parser = CommandParser(Limits(max_line=32))
    events: list[Event] = []
    for _ in range(1000):
        events += run(parser, b"A X " + b"y" * 60)
    assert len(parser._buf) < 100  # discarded as it comes
    events += run(parser, b"\r\nB NOOP\r\n")
    assert events == [ParseError("A", None, "line too long"), Command("B", "NOOP", ())]


def test_over_long_line_with_nonsync_literal_skips_it() -> None:
    limits = Limits(max_line=32)
    data = b"A X " + b"y" * 100 + b" {6+}\r\nB\r\nNOO\r\nB NOOP\r\n"
    events = parse(data, limits)
    assert events == [ParseError("A", None, "line too long"), Command("B", "NOOP", ())]
    # a synchronising one is never sent: the client got its BAD instead of "+"
    data = b"A X " + b"y" * 100 + b" {7}\r\nB NOOP\r\n"
    events = parse(data, limits)
    assert events == [ParseError("A", None, "line too long"), Command("B", "NOOP", ())]


def test_line_bound_counts_every_segment_but_not_literals() -> None:
    limits = Limits(max_line=32)
    ok = b"A X {40+}\r\n" + b"z" * 40 + b" abc\r\n"
    assert isinstance(parse(ok, limits)[0], Command)
    long = b"A X {1+}\r\nz " + b"y" * 30 + b"\r\nB NOOP\r\n"
    events = parse(long, limits)
    assert events == [ParseError("A", None, "line too long"), Command("B", "NOOP", ())]


# --- split input ----------------------------------------------------------------------

STREAMS = [
    b"a1 NOOP\r\nA2 uid fetch 1:*,3 (FLAGS BODY.PEEK[HEADER.FIELDS (From)])\r\n",
    b'A LOGIN "us\\"er" {4+}\r\np\r\nw\r\nB SELECT "Bo\xc3\xaete"\r\n',
    b"A APPEND INBOX (\\Seen) ~{3}\r\n\x00\r\n {2}\r\nab\r\nB NOOP\r\n",
    b'A LOGIN "a\\b" x\r\nB X ((((\r\nC NOOP\r\n',
    b"A X " + b"y" * 80 + b" {3+}\r\nabc\r\nB NOOP\r\n",
]


@pytest.mark.parametrize("stream", STREAMS)
def test_every_split_gives_the_same_events(stream: bytes) -> None:
    limits = Limits(max_line=64)
    whole = parse(stream, limits)
    assert isinstance(whole[-1], Command)
    for cut in range(len(stream) + 1):
        parser = CommandParser(limits)
        assert run(parser, stream[:cut]) + run(parser, stream[cut:]) == whole
    parser = CommandParser(limits)
    assert [e for b in stream for e in run(parser, bytes([b]))] == whole


# --- AUTHENTICATE lines ---------------------------------------------------------------


def test_raw_lines_for_sasl() -> None:
    parser = CommandParser(Limits(max_line=24))
    assert run(parser, b"A AUTHENTICATE PLAIN\r\nAGZv") == [
        Command("A", "AUTHENTICATE", (Atom("PLAIN"),))
    ]
    assert parser.read_raw_line() is NEED_DATA
    parser.feed(b"bwBiYXI=\r\n*\r\n")
    assert parser.read_raw_line() == b"AGZvbwBiYXI="
    assert parser.read_raw_line() == b"*"
    parser.feed(b"x" * 40)
    assert parser.read_raw_line() == ParseError(None, None, "line too long")
    assert run(parser, b"x" * 40 + b"\r\nB NOOP\r\n") == [Command("B", "NOOP", ())]


def test_raw_line_refused_inside_a_command() -> None:
    parser = CommandParser()
    run(parser, b"A LOGIN {3}\r\n")
    with pytest.raises(RuntimeError):
        parser.read_raw_line()


# --- helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Atom("1:*"), SequenceSet(((1, None),))),
        (Atom("3,5:7,9"), SequenceSet(((3, 3), (5, 7), (9, 9)))),
        (Atom("*"), SequenceSet(((None, None),))),
        (Atom("*:4"), SequenceSet(((None, 4),))),
        (Number(12), SequenceSet(((12, 12),))),
        (Atom("$"), SequenceSet((), saved=True)),
        (Atom("4294967295"), SequenceSet(((4294967295, 4294967295),))),
    ],
)
def test_sequence_sets(value: Value, expected: SequenceSet) -> None:
    assert as_sequence_set(value) == expected
    assert encode_value(expected) == as_astring(value)


@pytest.mark.parametrize(
    "value",
    [
        Atom("0"),
        Number(0),
        Atom("01"),
        Atom("4294967296"),
        Atom(""),
        Atom("1,,2"),
        Atom("1:"),
        Atom("1:2:3"),
        Atom("a"),
        Atom("$,1"),
        String(b"1"),
        NIL,
    ],
)
def test_bad_sequence_sets(value: Value) -> None:
    with pytest.raises(ParseError):
        as_sequence_set(value)


def test_astring() -> None:
    assert as_astring(Atom("INBOX")) == b"INBOX"
    assert as_astring(Number(2024)) == b"2024"
    assert as_astring(String(b"a b")) == b"a b"
    assert as_astring(NIL) == b"NIL"
    with pytest.raises(ParseError):
        as_astring(ListValue(()))


# --- responses ----------------------------------------------------------------------------


def test_serialize_responses() -> None:
    assert serialize(Tagged("A1", "OK", None, "done")) == b"A1 OK done\r\n"
    assert serialize(Tagged("A1", "NO", "TOOBIG", "too\r\nbig")) == b"A1 NO [TOOBIG] too  big\r\n"
    assert serialize(Tagged("A1", "OK", "READ-WRITE", "")) == b"A1 OK [READ-WRITE]\r\n"
    assert serialize(Continuation("Ready")) == b"+ Ready\r\n"
    assert serialize(Continuation()) == b"+\r\n"
    assert serialize(Untagged("5 EXISTS")) == b"* 5 EXISTS\r\n"
    fetch = Untagged(
        (
            Number(5),
            Atom("FETCH"),
            ListValue((Atom("UID"), Number(7), Atom("BODY[]"), String(b"a\r\nb"))),
        )
    )
    assert serialize(fetch) == b"* 5 FETCH (UID 7 BODY[] {4}\r\na\r\nb)\r\n"
    with pytest.raises(ValueError):
        serialize(Tagged("A", "NO", "BAD]CODE", "x"))
    with pytest.raises(ValueError):
        serialize(Tagged("A", "MAYBE", None, "x"))  # type: ignore[arg-type]


def test_parse_tagged_and_continuation() -> None:
    for response in (
        Tagged("A1", "OK", None, "done"),
        Tagged("A1", "BAD", "TOOBIG", "literal too big"),
        Continuation("Ready"),
    ):
        assert parse_response_line(serialize(response)) == response


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        (Atom("\\Seen"), b"\\Seen"),
        (NIL, b"NIL"),
        (Number(0), b"0"),
        (String(b""), b'""'),
        (String(b'say "hi" \\o/'), b'"say \\"hi\\" \\\\o/"'),
        (String(b"a\rb"), b"{3}\r\na\rb"),
        (String(b"nul\x00"), b"{4}\r\nnul\x00"),
        (String("é".encode()), b"{2}\r\n\xc3\xa9"),
        (String(b"x" * 1025), b"{1025}\r\n" + b"x" * 1025),
        (String(b"bin", binary=True), b"~{3}\r\nbin"),
        (ListValue((NIL, ListValue(()))), b"(NIL ())"),
        (SequenceSet(((1, 3), (5, None))), b"1:3,5:*"),
    ],
)
def test_encode_value(value: Value, wire: bytes) -> None:
    assert encode_value(value) == wire


def test_encode_nonsync_and_literal_file() -> None:
    assert encode_value(String(b"a\nb"), nonsync=True) == b"{3+}\r\na\nb"
    assert encode_value(String(b"a", binary=True), nonsync=True) == b"~{1+}\r\na"
    (cmd,) = parse(b"A X {20+}\r\n" + b"q" * 20 + b"\r\n", Limits(literal_memory=4))
    assert isinstance(cmd, Command) and isinstance(cmd.args[0], LiteralFile)
    assert encode_value(cmd.args[0]) == b"{20}\r\n" + b"q" * 20
    cmd.args[0].file.close()
    with pytest.raises(ValueError):
        encode_value(Atom("a\r\nb"))
    with pytest.raises(ValueError):
        encode_value(Number(-1))


# --- properties ---------------------------------------------------------------------------

_ATOM_CHARS = "abcXYZ019.-_\\$+&'!#"
atoms = st.builds(
    lambda head, rest: Atom(head + rest),
    st.sampled_from("aBz\\$"),
    st.text(alphabet=_ATOM_CHARS, max_size=12),
).filter(lambda a: a.value.upper() != "NIL")
strings = st.builds(String, st.binary(max_size=40), binary=st.booleans()) | st.builds(
    String, st.text(max_size=20).map(str.encode)
)
numbers = st.integers(0, 2**63 - 1).map(Number)
scalars: st.SearchStrategy[Value] = st.one_of(atoms, strings, numbers, st.just(NIL))
values: st.SearchStrategy[Value] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5).map(lambda xs: ListValue(tuple(xs))),
    max_leaves=20,
)


def depth(value: Value) -> int:
    if isinstance(value, ListValue):
        return 1 + max((depth(v) for v in value.items), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(st.lists(values, min_size=1, max_size=6))
def test_values_round_trip(items: list[Value]) -> None:
    assume(all(depth(v) <= 16 for v in items))
    response = Untagged(tuple(items))
    assert parse_response_line(serialize(response)) == response


tags = st.text(alphabet="AZaz09.-_]", min_size=1, max_size=8)
names = st.text(alphabet="ABCXYZabcxyz", min_size=1, max_size=10).filter(
    lambda n: n.upper() != "UID"
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tags, names, st.lists(values, max_size=6), st.data())
def test_client_commands_parse_back(
    tag: str, name: str, args: list[Value], data: st.DataObject
) -> None:
    assume(all(depth(v) <= 16 for v in args))
    wire = f"{tag} {name}".encode() + b"".join(b" " + encode_value(v, nonsync=True) for v in args)
    wire += b"\r\n"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = CommandParser()
    events: list[Event] = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        events += run(parser, wire[start:end])
    assert events == [Command(tag, name.upper(), tuple(args))]


fragments = st.one_of(
    st.binary(max_size=12),
    st.sampled_from(
        [
            b"\r\n",
            b"A1 ",
            b"UID ",
            b"{3}\r\n",
            b"{5+}\r\n",
            b"~{2}\r\n",
            b"{99}\r\n",
            b"{" + b"9" * 25 + b"+}\r\n",
            b"(",
            b")",
            b'"',
            b"\\",
            b"[",
            b"]",
            b" ",
            b"NIL",
            b"123",
            b"\xc3\xa9",
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=40), st.lists(st.booleans(), max_size=40))
def test_arbitrary_bytes_never_raise(chunks: list[bytes], choices: list[bool]) -> None:
    parser = CommandParser(
        Limits(max_line=64, literal_memory=8, max_literal=50, max_literal_total=80, max_depth=3)
    )
    answers = iter(choices)
    for chunk in chunks:
        parser.feed(chunk)
        while True:
            event = parser.next()
            assert isinstance(event, Command | NeedData | NeedContinuation | ParseError)
            if isinstance(event, NeedData):
                break
            if isinstance(event, NeedContinuation):
                if next(answers, True):
                    parser.accept_literal()
                else:
                    parser.reject_literal()
            if isinstance(event, Command):
                for arg in event.args:
                    if isinstance(arg, LiteralFile):
                        arg.file.close()
    parser.close()
