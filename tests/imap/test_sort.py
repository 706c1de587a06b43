"""SORT and THREAD: base subjects, sort keys, the REFERENCES algorithm, and imaptest.

The corpus scripts replay through the harness of ``test_search.py``.
"""

from __future__ import annotations

import itertools
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_search import CorpusMessage, command, corpus_file, run_script

from imap.grammar import ParseError, Value
from imap.search import SearchContext, UnsupportedCharset, esearch_response
from imap.sort import (
    SortCriterion,
    Thread,
    base_subject,
    format_threads,
    parse_sort,
    parse_thread,
    sort_messages,
    sort_views,
    thread_messages,
)

# --- the corpus -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "sort-addresses",
        "sort-arrival",
        "sort-date",
        "sort-display-from",
        "sort-display-to",
        "sort-size",
        "sort-subject",
        "esort",
        "thread",
        "thread2",
        "thread3",
        "thread4",
        "thread5",
        "thread6",
        "thread7",
        "thread8",
        "thread-orderedsubject",
        "thread-orderedsubject2",
        pytest.param(
            "sort-partial",
            marks=pytest.mark.skip(reason="needs CONTEXT=SORT (RFC 5267 PARTIAL): not in scope"),
        ),
    ],
)
def test_imaptest_script(name: str) -> None:
    assert run_script(corpus_file(name)) == []


# --- base subject (RFC 5256 §2.1) --------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "base", "reply"),
    [
        ("Hello", "Hello", False),
        ("  Hello \t  world  ", "Hello world", False),
        ("Re: Hello", "Hello", True),
        ("RE:Re: re : Hello", "Hello", True),
        ("Fwd: Fw: Hello", "Hello", True),
        ("Hello (fwd)", "Hello", True),
        ("Hello (Fwd) (fwd) ", "Hello", True),
        ("[list] Hello", "Hello", False),
        ("[list] Re: [other] Fwd: Hello", "Hello", True),
        ("Re[2]: Hello", "Hello", True),  # a blob between "re" and ":"
        ("[list]", "[list]", False),  # nothing would remain: the blob stays
        ("[a][b]", "[b]", False),
        ("[Fwd: Hello]", "Hello", True),
        ("Re: [fwd: [Fwd: re: hi]]", "hi", True),
        ("Ad: Re: x", "Ad: Re: x", False),
        ("Reply needed", "Reply needed", False),
        ("", "", False),
        ("Re:", "", True),
    ],
)
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    assert base_subject(subject) == (base, reply)


_subject_parts = st.sampled_from(
    ["re", "Re:", "fwd:", "fw", "[x]", "[fwd:", "]", "(fwd)", " ", "\t", ":", "a", "b", "[", "é"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_subject_parts, max_size=12).map("".join))
def test_base_subject_is_a_fixed_point(subject: str) -> None:
    base, _ = base_subject(subject)
    assert base_subject(base)[0] == base
    assert base == base.strip()


# --- building messages --------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def message(seq: int, *headers: str, body: str = "text", minutes: int = 0) -> CorpusMessage:
    raw = ("\r\n".join(headers) + "\r\n\r\n" + body + "\r\n").encode()
    return CorpusMessage(
        raw, seq=seq, uid=100 + seq, internal_date=T0 + timedelta(minutes=minutes or seq)
    )


def context(messages: list[CorpusMessage]) -> SearchContext:
    return SearchContext(max_seq=len(messages), max_uid=messages[-1].uid if messages else 0)


def args(text: str) -> tuple[Value, ...]:
    return command(f"t X {text}").args


def sort(text: str, messages: list[CorpusMessage]) -> list[int]:
    return sort_messages(parse_sort(args(text)), messages, context(messages))


def thread(messages: list[CorpusMessage], algorithm: str = "REFERENCES", uid: bool = False) -> str:
    prog = parse_thread(args(f"{algorithm} UTF-8 ALL"), uid_command=uid)
    return format_threads(thread_messages(prog, messages, context(messages)), use_uid=uid)


# --- SORT -------------------------------------------------------------------------------


def test_parse_sort() -> None:
    prog = parse_sort(
        args("RETURN (MIN COUNT) (reverse DATE subject) utf-8 SEEN"), uid_command=True
    )
    assert prog.criteria == (SortCriterion("DATE", reverse=True), SortCriterion("SUBJECT"))
    assert prog.search.charset == "UTF-8"
    assert prog.search.return_options == frozenset({"MIN", "COUNT"})
    assert prog.search.uid
    assert parse_sort(args("(ARRIVAL SIZE) US-ASCII ALL")).needs == frozenset()
    assert parse_sort(args("(ARRIVAL) US-ASCII BODY x")).needs == {"body"}
    assert parse_sort(args("(DISPLAYTO) US-ASCII ALL")).needs == {"headers"}


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ARRIVAL UTF-8 ALL",  # criteria not in a list
        "() UTF-8 ALL",
        "(FOO) UTF-8 ALL",
        "(REVERSE) UTF-8 ALL",
        "(DATE REVERSE) UTF-8 ALL",
        "(REVERSE REVERSE DATE) UTF-8 ALL",
        "(DATE)",  # no charset
        "(DATE) UTF-8",  # no search key
        "(DATE) UTF-8 FOO",
        "RETURN (PARTIAL 1:5) (DATE) UTF-8 ALL",
    ],
)
def test_bad_sort(text: str) -> None:
    with pytest.raises(ParseError) as raised:
        parse_sort(args(text) if text else ())
    assert raised.value.code is None


def test_sort_charset_must_be_known() -> None:
    with pytest.raises(UnsupportedCharset) as raised:
        parse_sort(args("(DATE) ISO-2022-JP ALL"))
    assert raised.value.code == "BADCHARSET (UTF-8 US-ASCII)"
    with pytest.raises(UnsupportedCharset):
        parse_thread(args("REFERENCES KOI8-R ALL"))


@pytest.fixture
def letters() -> list[CorpusMessage]:
    return [
        message(1, "From: Zoe <b@x>", "To: c@x", "Subject: Re: beta", minutes=30),
        message(2, "From: a@x", "Subject: alpha", "Date: Sat, 1 Mar 2025 10:00:00 +0000"),
        message(3, "From: =?utf-8?q?=C3=89mile?= <e@x>", "Cc: g: z@x;", "Subject: [l] Beta"),
        message(4, "From: Adam <z@x>", "To: Bea <a@x>", "Subject: gamma", body="longer body"),
        message(5, "Subject: Alpha", "Date: bad"),
    ]


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ("ARRIVAL", [2, 3, 4, 5, 1]),
        ("REVERSE ARRIVAL", [1, 5, 4, 3, 2]),
        ("DATE", [2, 3, 4, 5, 1]),  # 2's Date: is earliest; others fall back to arrival
        ("SIZE", [5, 1, 4, 2, 3]),
        ("SUBJECT", [2, 5, 1, 3, 4]),  # alpha, Alpha, beta x2, gamma
        ("SUBJECT REVERSE ARRIVAL", [5, 2, 1, 3, 4]),
        ("REVERSE SUBJECT", [4, 1, 3, 2, 5]),  # ties still by sequence number
        ("FROM", [5, 2, 1, 3, 4]),  # "", a, b, e, z
        ("DISPLAYFROM", [5, 2, 4, 3, 1]),  # "", a@x, Adam, Émile, Zoe
        ("TO", [2, 3, 5, 4, 1]),  # a missing To: sorts first
        ("DISPLAYTO", [2, 3, 5, 4, 1]),
        ("CC", [1, 2, 4, 5, 3]),  # a group counts by its name
    ],
)
def test_sort_criteria(letters: list[CorpusMessage], criteria: str, expected: list[int]) -> None:
    assert sort(f"({criteria}) UTF-8 ALL", letters) == expected


def test_sort_selects_with_its_search_program(letters: list[CorpusMessage]) -> None:
    assert sort("(SUBJECT) UTF-8 NOT 2:3", letters) == [5, 1, 4]
    assert sort("(SUBJECT) UTF-8 9", letters) == []


def test_esort_keeps_the_sort_order(letters: list[CorpusMessage]) -> None:
    prog = parse_sort(args("RETURN (MIN MAX ALL COUNT) (REVERSE ARRIVAL) UTF-8 ALL"))
    views = sort_views(prog, letters, context(letters))
    reply = esearch_response(prog.search, "s1", views)
    assert reply == 'ESEARCH (TAG "s1") MIN 1 MAX 2 ALL 1,5,4,3,2 COUNT 5'


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "B", "Re: b", "[x] c", ""]), st.integers(0, 5)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from(["SUBJECT", "ARRIVAL", "SIZE", "REVERSE SUBJECT"]),
)
def test_sort_is_a_stable_permutation(specs: list[tuple[str, int]], criterion: str) -> None:
    box = [
        message(seq, f"Subject: {subject}", body="x" * seq, minutes=minute)
        for seq, (subject, minute) in enumerate(specs, 1)
    ]
    result = sort(f"({criterion}) UTF-8 ALL", box)
    assert sorted(result) == [m.seq for m in box]
    keys_by_criterion: dict[str, Callable[[CorpusMessage], Any]] = {
        "SUBJECT": lambda m: base_subject(m.header("Subject")[0])[0].upper(),
        "ARRIVAL": lambda m: m.internal_date,
        "SIZE": lambda m: m.size,
    }
    key = keys_by_criterion[criterion.split()[-1]]
    keys = [key(box[s - 1]) for s in result]
    assert keys == sorted(keys, reverse=criterion.startswith("REVERSE"))
    for a, b in itertools.pairwise(result):  # ties by sequence number
        assert key(box[a - 1]) != key(box[b - 1]) or a < b


# --- THREAD -----------------------------------------------------------------------------


def test_parse_thread() -> None:
    prog = parse_thread(args("orderedsubject us-ascii SEEN"), uid_command=True)
    assert (prog.algorithm, prog.search.charset, prog.search.uid) == (
        "ORDEREDSUBJECT",
        "US-ASCII",
        True,
    )
    for bad in ["", "REFS UTF-8 ALL", "(REFERENCES) UTF-8 ALL", "REFERENCES", "REFERENCES UTF-8"]:
        with pytest.raises(ParseError):
            parse_thread(args(bad) if bad else ())


def test_references_links_replies_and_sorts_siblings_by_date() -> None:
    box = [
        message(1, "Message-ID: <a@x>", "Subject: plan", minutes=10),
        message(2, "Message-ID: <b@x>", "In-Reply-To: <a@x>", "Subject: Re: plan", minutes=40),
        message(3, "Message-ID: <c@x>", "References: <a@x>", "Subject: Re: plan", minutes=20),
        message(4, "Message-ID: <d@x>", "References: <a@x> <c@x>", minutes=50),
        message(5, "Message-ID: <e@x>", "Subject: other", minutes=5),
    ]
    assert thread(box) == "(5)(1 (3 4)(2))"
    assert thread(box, uid=True) == "(105)(101 (103 104)(102))"


def test_references_placeholders() -> None:
    box = [
        message(1, "Message-ID: <b@x>", "References: <a@x>"),  # <a@x> is not here
        message(2, "Message-ID: <c@x>", "References: <a@x>"),
        message(3, "Message-ID: <d@x>", "References: <z@x> <y@x>"),  # one child: lifted
    ]
    assert thread(box) == "((1)(2))(3)"


def test_references_ignore_links_that_would_loop() -> None:
    box = [
        message(1, "Message-ID: <a@x>", "References: <b@x>"),
        message(2, "Message-ID: <b@x>", "References: <a@x>"),
        message(3, "Message-ID: <c@x>", "References: <c@x>"),
        message(4, "Message-ID: <d@x>", "References: <e@x> <d@x> <e@x>"),
    ]
    assert thread(box) == "(2 1)(3)(4)"  # 2 keeps 1 below it: 1's link to 2 is refused


def test_duplicate_and_missing_message_ids_stay_apart() -> None:
    box = [
        message(1, "Message-ID: <a@x>"),
        message(2, "Message-ID: <a@x>"),
        message(3, "Subject: none"),
        message(4, "Message-ID: <b@x>", "In-Reply-To: <a@x>"),
    ]
    assert thread(box) == "(1 4)(2)(3)"


@pytest.mark.parametrize(
    ("subjects", "expected"),
    [
        (["Re: news", "news"], "(2 1)"),  # the reply under the original, whatever the order
        (["news", "Re: news"], "(1 2)"),
        (["news", "news"], "((1)(2))"),  # neither a reply: siblings
        (["Re: news", "Fwd: news"], "((1)(2))"),
        (["news", "", ""], "(1)(2)(3)"),  # no subject, no grouping
        (["[list] news (fwd)", "news", "Re: other"], "(2 1)(3)"),
    ],
)
def test_references_group_threads_by_subject(subjects: list[str], expected: str) -> None:
    box = [message(seq, f"Subject: {s}") for seq, s in enumerate(subjects, 1)]
    assert thread(box) == expected


def test_subject_grouping_joins_a_placeholder_thread() -> None:
    box = [
        message(1, "Message-ID: <b@x>", "References: <a@x>", "Subject: Re: trip", minutes=5),
        message(2, "Message-ID: <c@x>", "References: <a@x>", "Subject: Re: trip", minutes=6),
        message(3, "Subject: trip", minutes=1),
    ]
    assert thread(box) == "((3)(1)(2))"


def test_ordered_subject() -> None:
    box = [
        message(1, "Subject: b", minutes=3),
        message(2, "Subject: Re: a", minutes=5),
        message(3, "Subject: a", minutes=4),
        message(4, "Subject: B", minutes=1),
        message(5, "Subject: c", minutes=2),
    ]
    assert thread(box, "ORDEREDSUBJECT") == "(4 1)(5)(3 2)"
    box.append(message(6, "Subject: b", minutes=9))
    assert thread(box, "ORDEREDSUBJECT") == "(4 (1)(6))(5)(3 2)"


def test_no_message_no_thread() -> None:
    assert thread([]) == ""
    box = [message(1, "Subject: x")]
    prog = parse_thread(args("REFERENCES UTF-8 DELETED"))
    assert thread_messages(prog, box, context(box)) == []


def test_format_threads_by_hand() -> None:
    box = [message(seq) for seq in range(1, 6)]
    tree = [
        Thread(box[0], [Thread(box[1], [Thread(box[2])])]),
        Thread(None, [Thread(box[3]), Thread(box[4], [Thread(box[0]), Thread(box[1])])]),
    ]
    assert format_threads(tree, use_uid=False) == "(1 2 3)((4)(5 (1)(2)))"
    assert format_threads([], use_uid=True) == ""


def test_a_deep_reply_chain_needs_no_deep_recursion() -> None:
    depth = 3000
    assert depth > sys.getrecursionlimit()
    in_order = [
        message(i, f"Message-ID: <{i}@x>", f"In-Reply-To: <{i - 1}@x>") for i in range(1, depth + 1)
    ]
    assert thread(in_order) == "(" + " ".join(str(i) for i in range(1, depth + 1)) + ")"
    backwards = [  # replies first: every link is checked against a growing chain
        message(i, f"Message-ID: <{depth - i}@x>", f"In-Reply-To: <{depth - i - 1}@x>")
        for i in range(1, 1001)
    ]
    assert thread(backwards) == "(" + " ".join(str(i) for i in range(1000, 0, -1)) + ")"


_ids = st.sampled_from([f"<{c}@x>" for c in "abcdef"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), _ids),
            st.lists(_ids, max_size=4),
            st.sampled_from(["", "x", "Re: x", "y", "[l] y (fwd)"]),
            st.integers(0, 3),
        ),
        max_size=10,
    ),
    st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]),
)
def test_every_message_appears_once_in_well_formed_threads(
    specs: list[tuple[str | None, list[str], str, int]], algorithm: str
) -> None:
    box = []
    for seq, (own, refs, subject, minute) in enumerate(specs, 1):
        headers = [f"Subject: {subject}"]
        if own:
            headers.append(f"Message-ID: {own}")
        if refs:
            headers.append(f"References: {' '.join(refs)}")
        box.append(message(seq, *headers, minutes=minute + 1))
    text = thread(box, algorithm)
    assert sorted(int(n) for n in re.findall(r"\d+", text)) == [m.seq for m in box]
    assert _well_formed(text)


def _well_formed(text: str) -> bool:
    """RFC 5256 thread-list syntax: members, and nesting only of two or more threads."""
    pos = 0

    def thread_list() -> bool:
        nonlocal pos
        if text[pos : pos + 1] != "(":
            return False
        pos += 1
        numbers = re.match(r"[1-9][0-9]*(?: [1-9][0-9]*)*", text[pos:])
        if numbers:
            pos += numbers.end()
            if text[pos : pos + 1] == " ":
                pos += 1
                if not nested():
                    return False
        elif not nested():
            return False
        if text[pos : pos + 1] != ")":
            return False
        pos += 1
        return True

    def nested() -> bool:
        count = 0
        while text[pos : pos + 1] == "(":
            if not thread_list():
                return False
            count += 1
        return count >= 2

    while pos < len(text):
        if not thread_list():
            return False
    return True
