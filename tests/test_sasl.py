# covers: TS-4
"""SASL server mechanisms: happy paths, malformed input, and a fuzz of every exchange."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mssante import sasl
from mssante.sasl import (
    MECHANISMS,
    BearerCredentials,
    Challenge,
    ExternalCredentials,
    PasswordCredentials,
    SaslCancelled,
    SaslError,
)

TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"


def run(mechanism: str, initial: bytes | None, *responses: bytes) -> object:
    """Drive an exchange; return the result after the last response."""
    exchange = sasl.start(mechanism, initial)
    result = exchange.step(None)
    for response in responses:
        assert isinstance(result, Challenge)
        result = exchange.step(response)
    return result


def refused(mechanism: str, initial: bytes | None, *responses: bytes) -> str:
    with pytest.raises(SaslError) as info:
        run(mechanism, initial, *responses)
    return str(info.value)


# -- wire helpers ---------------------------------------------------------------


def test_decode_wire_handles_empty_cancel_crlf_and_bad_base64():
    assert sasl.decode_wire(b"=") == b""
    assert sasl.decode_wire(b"") == b""
    assert sasl.decode_wire(b"=\r\n") == b""
    assert sasl.decode_wire(base64.b64encode(b"\x00u\x00p") + b"\r\n") == b"\x00u\x00p"
    with pytest.raises(SaslCancelled):
        sasl.decode_wire(b"*\r\n")
    for bad in (b"abc", b"ab!=", b"a===", b"YWJj\x00", b"YW Jj", b"==YW"):
        with pytest.raises(SaslError, match="base64"):
            sasl.decode_wire(bad)


def test_decode_wire_bounds_the_decoded_size():
    big = base64.b64encode(b"x" * 101)
    assert sasl.decode_wire(base64.b64encode(b"x" * 100), max_size=100) == b"x" * 100
    with pytest.raises(SaslError, match="too long"):
        sasl.decode_wire(big, max_size=100)


def test_cancel_is_a_sasl_error_so_one_except_ends_every_exchange():
    assert issubclass(SaslCancelled, SaslError)


def test_encode_wire_round_trips():
    assert sasl.encode_wire(b"") == b""
    assert sasl.decode_wire(sasl.encode_wire(b"Username:")) == b"Username:"


def test_nothing_is_advertised_before_tls():
    assert (
        sasl.advertised(
            tls=False, password_enabled=True, external_available=True, oauth_enabled=True
        )
        == []
    )
    assert sasl.advertised(
        tls=True, password_enabled=True, external_available=True, oauth_enabled=True
    ) == ["EXTERNAL", "OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN"]
    assert sasl.advertised(
        tls=True, password_enabled=False, external_available=False, oauth_enabled=True
    ) == ["OAUTHBEARER", "XOAUTH2"]
    assert sasl.advertised(
        tls=True, password_enabled=True, external_available=False, oauth_enabled=False
    ) == ["PLAIN", "LOGIN"]
    assert set(MECHANISMS) == {"EXTERNAL", "OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN"}


def test_unknown_mechanism_is_refused_and_names_are_case_insensitive():
    with pytest.raises(SaslError, match="unsupported"):
        sasl.start("CRAM-MD5", None)
    assert sasl.start("plain", None).mechanism == "PLAIN"


# -- PLAIN ------------------------------------------------------------------------


def test_plain_with_initial_response():
    result = run("PLAIN", b"\x00dr.house@hopital.mssante.fr\x00s3cr\xc3\xa9t")
    assert result == PasswordCredentials(
        authcid="dr.house@hopital.mssante.fr", authzid=None, password="s3crét"
    )


def test_plain_after_an_empty_challenge_with_authzid():
    exchange = sasl.start("PLAIN", None)
    assert exchange.step(None) == Challenge(b"")
    result = exchange.step(b"secretariat@h.fr\x00alice@h.fr\x00pw")
    assert result == PasswordCredentials(
        authcid="alice@h.fr", authzid="secretariat@h.fr", password="pw"
    )
    assert exchange.done


def test_password_never_appears_in_repr_or_errors():
    result = run("PLAIN", b"\x00alice\x00hunter2")
    assert "hunter2" not in repr(result)
    message = refused("PLAIN", b"\x00alice\x00hunter2\x00")
    assert "hunter2" not in message and "alice" not in message


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "PLAIN expects"),
        (b"alice\x00pw", "PLAIN expects"),
        (b"\x00alice\x00pw\x00", "PLAIN expects"),
        (b"\x00\x00pw", "empty authentication identity"),
        (b"\x00alice\x00", "empty password"),
        (b"\x00al\xffice\x00pw", "not valid UTF-8"),
        (b"\x00alice\x00p\xc3", "not valid UTF-8"),
        (b"z\xed\xa0\x80\x00alice\x00pw", "not valid UTF-8"),  # a UTF-8-encoded surrogate
        (b"\x00ali\rce\x00pw", "control characters"),
        (b"\x00" + b"a" * 1025 + b"\x00pw", "too long"),
    ],
)
def test_plain_malformed(message: bytes, error: str):
    assert error in refused("PLAIN", message)


def test_over_long_responses_are_refused_before_parsing():
    assert "too long" in refused("PLAIN", b"\x00a\x00" + b"p" * sasl.MAX_RESPONSE)
    exchange = sasl.start("PLAIN", b"\x00a\x00" + b"p" * 20, max_size=16)
    with pytest.raises(SaslError, match="too long"):
        exchange.step(None)


# -- LOGIN ------------------------------------------------------------------------


def test_login_prompts_for_user_then_password():
    exchange = sasl.start("LOGIN", None)
    assert exchange.step(None) == Challenge(b"Username:")
    assert exchange.step(b"alice@h.fr") == Challenge(b"Password:")
    assert exchange.step(b"pw") == PasswordCredentials("alice@h.fr", None, "pw")


def test_login_initial_response_is_the_user_name():
    exchange = sasl.start("LOGIN", b"alice@h.fr")
    assert exchange.step(None) == Challenge(b"Password:")
    assert exchange.step(b"pw") == PasswordCredentials("alice@h.fr", None, "pw")


@pytest.mark.parametrize(
    ("user", "password", "error"),
    [
        (b"", b"pw", "empty user name"),
        (b"al\x00ice", b"pw", "NUL"),
        (b"alice", b"", "empty password"),
        (b"alice", b"p\x00w", "NUL"),
        (b"al\x80", b"pw", "UTF-8"),
    ],
)
def test_login_malformed(user: bytes, password: bytes, error: str):
    assert error in refused("LOGIN", None, user, password)


# -- EXTERNAL ---------------------------------------------------------------------


def test_external_without_and_with_authzid():
    assert run("EXTERNAL", b"") == ExternalCredentials(authzid=None)
    assert run("EXTERNAL", None, b"") == ExternalCredentials(authzid=None)
    assert run("EXTERNAL", b"dpi@h.fr") == ExternalCredentials(authzid="dpi@h.fr")
    assert "control" in refused("EXTERNAL", b"dpi\x00@h.fr")
    assert "UTF-8" in refused("EXTERNAL", b"\xc0\xaf")


def test_external_has_no_error_challenge():
    exchange = sasl.start("EXTERNAL", b"")
    exchange.step(None)
    with pytest.raises(SaslError, match="no token"):
        exchange.fail_challenge(b"{}")


# -- XOAUTH2 ----------------------------------------------------------------------


def xoauth2(user: bytes = b"alice@h.fr", auth: bytes = b"Bearer " + TOKEN.encode()) -> bytes:
    return b"user=" + user + b"\x01auth=" + auth + b"\x01\x01"


def test_xoauth2_happy_path():
    expected = BearerCredentials(user="alice@h.fr", token=TOKEN, mechanism="XOAUTH2")
    assert run("XOAUTH2", xoauth2()) == expected
    assert run("XOAUTH2", None, xoauth2()) == expected
    assert run("XOAUTH2", xoauth2(auth=b"bearer  " + TOKEN.encode())) == expected
    assert TOKEN not in repr(expected)


@pytest.mark.parametrize(
    "message",
    [
        b"",
        xoauth2()[:-1],
        xoauth2(user=b""),
        xoauth2(auth=b"Basic YWxpY2U6cHc="),
        xoauth2(auth=b"Bearer "),
        xoauth2(auth=b"Bearer tok en"),
        xoauth2(auth=b"Bearer tok\x00en"),
        b"auth=Bearer abc\x01\x01",
        b"user=a\x01auth=Bearer abc\x01user=b\x01\x01",
        b"user=a\x01auth=Bearer abc\x01extra=1\x01\x01",
        b"user=a\x01\x01auth=Bearer abc\x01\x01",
        b"user=\xc3\xa9\x01auth=Bearer abc\x01\x01",
    ],
)
def test_xoauth2_malformed(message: bytes):
    refused("XOAUTH2", message)


def test_xoauth2_error_challenge_expects_an_empty_answer():
    exchange = sasl.start("XOAUTH2", xoauth2())
    assert isinstance(exchange.step(None), BearerCredentials)
    error = sasl.bearer_error(scope="mail")
    assert exchange.fail_challenge(error) == Challenge(error)
    with pytest.raises(SaslError, match="authentication failed"):
        exchange.step(b"")
    with pytest.raises(SaslError):
        exchange.step(b"")


# -- OAUTHBEARER ------------------------------------------------------------------


def oauthbearer(gs2: bytes = b"n,a=alice@h.fr,", **pairs: bytes) -> bytes:
    fields = {"host": b"imap.h.fr", "port": b"993", "auth": b"Bearer " + TOKEN.encode()}
    fields.update(pairs)
    body = b"".join(k.encode() + b"=" + v + b"\x01" for k, v in fields.items())
    return gs2 + b"\x01" + body + b"\x01"


def test_oauthbearer_happy_paths():
    expected = BearerCredentials(user="alice@h.fr", token=TOKEN, mechanism="OAUTHBEARER")
    assert run("OAUTHBEARER", oauthbearer()) == expected
    assert run("OAUTHBEARER", None, oauthbearer()) == expected
    minimal = b"n,,\x01auth=Bearer " + TOKEN.encode() + b"\x01\x01"
    assert run("OAUTHBEARER", minimal) == BearerCredentials(None, TOKEN, "OAUTHBEARER")
    escaped = run("OAUTHBEARER", oauthbearer(b"y,a=we=2Cird=3Dname,"))
    assert isinstance(escaped, BearerCredentials) and escaped.user == "we,ird=name"
    tolerant = run("OAUTHBEARER", oauthbearer(future=b"value with spaces"))
    assert tolerant == expected


@pytest.mark.parametrize(
    ("message", "error"),
    [
        (b"", "no GS2 header"),
        (b"\x01", "GS2"),
        (oauthbearer(b"p=tls-unique,,"), "channel binding"),
        (oauthbearer(b"n,a=alice"), "GS2"),
        (oauthbearer(b"x,,"), "GS2"),
        (oauthbearer(b"n,"), "GS2"),
        (oauthbearer(b"n,b=alice,"), "authzid"),
        (oauthbearer(b"n,a=al,ice,"), "authzid"),
        (oauthbearer(b"n,a=al=3Cice,"), "authzid"),
        (oauthbearer(b"n,a=,"), "authzid"),
        (oauthbearer(b"n,a=\xff,"), "UTF-8"),
        (b"n,,\x01host=h\x01\x01", "no auth"),
        (oauthbearer()[:-1], "terminated"),
        (oauthbearer(auth=b"Bearer"), "Bearer"),
        (oauthbearer(port=b"99999"), "port"),
        (oauthbearer(port=b"x"), "port"),
        (oauthbearer(host=b""), "host"),
        (oauthbearer(host=b"h\x00"), "forbidden"),
        (oauthbearer(**{"no-dash": b"1"}), "malformed field"),
        (oauthbearer()[:-1] + b"auth=Bearer x\x01\x01", "repeats"),
        (
            b"n,,\x01" + b"".join(b"k=v\x01" for _ in range(20)) + b"auth=Bearer x\x01\x01",
            "too many",
        ),
    ],
)
def test_oauthbearer_malformed(message: bytes, error: str):
    assert error in refused("OAUTHBEARER", message)


def test_oauthbearer_failure_dance_needs_the_dummy_response():
    exchange = sasl.start("OAUTHBEARER", oauthbearer())
    assert isinstance(exchange.step(None), BearerCredentials)
    error = sasl.bearer_error(scope="mail", openid_configuration="https://idp/.well-known/x")
    assert json.loads(error) == {
        "status": "invalid_token",
        "scope": "mail",
        "openid-configuration": "https://idp/.well-known/x",
    }
    assert exchange.fail_challenge(error).data == error
    with pytest.raises(SaslError, match=r"^authentication failed$"):
        exchange.step(b"\x01")
    assert exchange.done

    other = sasl.start("OAUTHBEARER", oauthbearer())
    other.step(None)
    other.fail_challenge(error)
    with pytest.raises(SaslError, match="unexpected response"):
        other.step(b"")


def test_fail_challenge_only_after_credentials_and_only_once():
    exchange = sasl.start("OAUTHBEARER", None)
    exchange.step(None)
    with pytest.raises(SaslError):
        exchange.fail_challenge(b"{}")
    exchange = sasl.start("OAUTHBEARER", oauthbearer())
    exchange.step(None)
    exchange.fail_challenge(b"{}")
    with pytest.raises(SaslError):
        exchange.fail_challenge(b"{}")


# -- sequencing -------------------------------------------------------------------


def test_step_sequencing_is_enforced():
    exchange = sasl.start("PLAIN", None)
    with pytest.raises(SaslError, match="first step"):
        exchange.step(b"\x00a\x00b")
    exchange = sasl.start("LOGIN", None)
    exchange.step(None)
    with pytest.raises(SaslError, match="required"):
        exchange.step(None)
    exchange = sasl.start("PLAIN", b"\x00a\x00b")
    exchange.step(None)
    with pytest.raises(SaslError, match="over"):
        exchange.step(b"\x00a\x00b")


def test_an_error_ends_the_exchange():
    exchange = sasl.start("LOGIN", None)
    exchange.step(None)
    with pytest.raises(SaslError):
        exchange.step(b"")
    with pytest.raises(SaslError, match="over"):
        exchange.step(b"alice")


# -- fuzz -------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(
    mechanism=st.sampled_from(MECHANISMS),
    initial=st.none() | st.binary(max_size=200),
    responses=st.lists(st.none() | st.binary(max_size=200), max_size=4),
    dance=st.booleans(),
)
def test_exchanges_only_ever_raise_sasl_errors(
    mechanism: str, initial: bytes | None, responses: list[bytes | None], dance: bool
):
    exchange = sasl.start(mechanism, initial)
    for data in [None, *responses]:
        try:
            result = exchange.step(data)
        except SaslError:
            continue
        assert isinstance(
            result, Challenge | PasswordCredentials | ExternalCredentials | BearerCredentials
        )
        if isinstance(result, BearerCredentials) and dance:
            exchange.fail_challenge(b"{}")


@settings(max_examples=300, deadline=None)
@given(
    mechanism=st.sampled_from(MECHANISMS),
    alphabet_soup=st.lists(
        st.sampled_from(
            [b"\x00", b"\x01", b"=", b",", b"n,", b"a=", b"user=", b"auth=", b"Bearer ", b"x"]
        ),
        max_size=20,
    ),
)
def test_structured_garbage_only_raises_sasl_errors(mechanism: str, alphabet_soup: list[bytes]):
    exchange = sasl.start(mechanism, b"".join(alphabet_soup))
    with contextlib.suppress(SaslError):
        exchange.step(None)


@given(st.binary(max_size=300))
def test_decode_wire_only_raises_sasl_errors(line: bytes):
    with contextlib.suppress(SaslError):
        sasl.decode_wire(line)


@given(
    authzid=st.text(
        st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc")), max_size=30
    ),
    authcid=st.text(
        st.characters(min_codepoint=0x20, exclude_categories=("Cs", "Cc")), min_size=1, max_size=30
    ),
    password=st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1
    ),
)
def test_plain_round_trips_any_valid_credentials(authzid: str, authcid: str, password: str):
    message = b"\x00".join(s.encode() for s in (authzid, authcid, password))
    result = run("PLAIN", sasl.decode_wire(sasl.encode_wire(message)))
    assert result == PasswordCredentials(authcid, authzid or None, password)
