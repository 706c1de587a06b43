# covers: TS-3
"""DKIM: the notification smarthost's signatures and the MX's verification.

Keys are generated here, written to tmp_path and published in an in-memory
DNS (a dict), so nothing reaches the network. dkimpy's own verifier and signer
serve as an independent implementation for RSA interop.
"""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.util import parse_tag_value
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mssante.errors import OperatorError
from smtp.dkim import (
    MAX_SIGNATURES,
    DkimError,
    DkimKey,
    DkimResult,
    KeyKind,
    authentication_results,
    dns_record,
    generate_key,
    load_key,
    record_name,
    sign,
    verify,
)

DOMAIN = "notif.example.fr"
MESSAGE = (
    b"From: Notifications <ne-pas-repondre@notif.example.fr>\r\n"
    b"To: patient@example.com\r\n"
    b"Subject: Vous avez un nouveau message\r\n"
    b"Date: Fri, 01 May 2026 10:00:00 +0200\r\n"
    b"Message-ID: <n1@notif.example.fr>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Un nouveau message vous attend dans votre messagerie de sant\xc3\xa9.\r\n"
    b"Connectez-vous pour le lire.\r\n"
)

DnsTable = dict[bytes, bytes]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[DkimKey, bytes]]:
    """One RSA 2048 and one Ed25519 key, each with its DNS TXT value."""
    directory = tmp_path_factory.mktemp("dkim")
    made: dict[str, tuple[DkimKey, bytes]] = {}
    pairs: tuple[tuple[KeyKind, str], ...] = (("rsa", "rsa1"), ("ed25519", "ed1"))
    for kind, selector in pairs:
        path = directory / f"{kind}.key"
        record = generate_key(path, kind=kind)
        made[kind] = (load_key(path, domain=DOMAIN, selector=selector), record.encode())
    return made


def table(*pairs: tuple[DkimKey, bytes]) -> DnsTable:
    return {record_name(key).encode(): record for key, record in pairs}


def lookup(dns: DnsTable) -> Callable[[bytes], bytes | None]:
    return dns.get


def signed(message: bytes, key: DkimKey) -> bytes:
    return sign(message, key) + message


# -- sign then verify ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_sign_then_verify_passes(keys: dict[str, tuple[DkimKey, bytes]], kind: str) -> None:
    key, record = keys[kind]
    results = verify(signed(MESSAGE, key), dns=lookup(table(keys[kind])))
    assert results == (DkimResult("pass", DOMAIN, key.selector, None),)
    assert record.startswith(f"v=DKIM1; k={kind}; p=".encode())


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_signature_field_shape(keys: dict[str, tuple[DkimKey, bytes]], kind: str) -> None:
    key, _ = keys[kind]
    now = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
    field = sign(MESSAGE, key, now=now)
    assert field.startswith(b"DKIM-Signature: v=1; a=")
    assert field.endswith(b"\r\n") and not field.endswith(b"\r\n\r\n")
    lines = field.split(b"\r\n")[:-1]
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])
    tags = parse_tag_value(field.split(b":", 1)[1])
    assert tags[b"a"] == (b"rsa-sha256" if kind == "rsa" else b"ed25519-sha256")
    assert tags[b"c"] == b"relaxed/relaxed"
    assert tags[b"d"] == DOMAIN.encode() and tags[b"s"] == key.selector.encode()
    assert tags[b"t"] == str(int(now.timestamp())).encode()
    signed_names = [n.strip() for n in tags[b"h"].split(b":")]
    # each listed field once more than present: From is oversigned
    assert signed_names.count(b"from") == 2
    assert signed_names.count(b"subject") == 2
    assert signed_names.count(b"cc") == 1
    signature = base64.b64decode(b"".join(tags[b"b"].split()))
    assert len(signature) == (256 if kind == "rsa" else 64)


def test_sign_returns_one_field_only(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    """The caller prepends it; the message bytes themselves are never rewritten."""
    field = sign(MESSAGE, keys["rsa"][0])
    assert field.count(b"DKIM-Signature:") == 1
    assert b"\r\n\r\n" not in field and b"\n" not in field.replace(b"\r\n", b"")


def test_lf_only_message_verifies(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    """Local pipes hand over LF-only text; relaxed canonicalisation makes it equal."""
    key, _ = keys["ed25519"]
    message = MESSAGE.replace(b"\r\n", b"\n")
    results = verify(sign(message, key) + message, dns=lookup(table(keys["ed25519"])))
    assert results[0].result == "pass"


def test_relaxed_survives_refolding(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    key, _ = keys["rsa"]
    message = signed(MESSAGE, key)
    refolded = message.replace(
        b"Subject: Vous avez un nouveau message", b"Subject:  Vous avez\r\n\tun nouveau   message"
    ).replace(b"Connectez-vous pour le lire.", b"Connectez-vous pour le lire.   ")
    assert verify(refolded, dns=lookup(table(keys["rsa"])))[0].result == "pass"


# -- tampering ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_body_changed_by_one_byte_fails(keys: dict[str, tuple[DkimKey, bytes]], kind: str) -> None:
    key, _ = keys[kind]
    message = signed(MESSAGE, key).replace(b"pour le lire", b"pour le lirE")
    (result,) = verify(message, dns=lookup(table(keys[kind])))
    assert result == DkimResult("fail", DOMAIN, key.selector, "body hash mismatch")


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_from_changed_fails(keys: dict[str, tuple[DkimKey, bytes]], kind: str) -> None:
    key, _ = keys[kind]
    message = signed(MESSAGE, key).replace(b"ne-pas-repondre@", b"ne-pas-repondrE@")
    (result,) = verify(message, dns=lookup(table(keys[kind])))
    assert result == DkimResult("fail", DOMAIN, key.selector, "signature mismatch")


def test_added_from_or_subject_fails(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    """Oversigning: a relay cannot prepend or append a second From or Subject."""
    key, _ = keys["rsa"]
    message = signed(MESSAGE, key)
    dns = lookup(table(keys["rsa"]))
    header, body = message.split(b"\r\n\r\n", 1)
    for extra in (b"From: attacker@evil.example", b"Subject: Urgent"):
        appended = header + b"\r\n" + extra + b"\r\n\r\n" + body
        assert verify(appended, dns=dns)[0].result == "fail"
        assert verify(extra + b"\r\n" + message, dns=dns)[0].result == "fail"


def test_unsigned_is_none() -> None:
    def no_dns(name: bytes) -> bytes | None:
        raise AssertionError("an unsigned message needs no DNS")

    assert verify(MESSAGE, dns=no_dns) == (DkimResult("none"),)
    assert verify(b"", dns=no_dns) == (DkimResult("none"),)
    # a DKIM-Signature line in the body is not a signature
    assert verify(MESSAGE + b"DKIM-Signature: v=1\r\n", dns=no_dns) == (DkimResult("none"),)


def test_too_large_is_none_without_work(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    message = signed(MESSAGE, keys["rsa"][0])
    results = verify(message, dns=lookup(table(keys["rsa"])), max_size=len(message) - 1)
    assert results == (DkimResult("none", reason="too large"),)


# -- DNS ---------------------------------------------------------------------------


def test_missing_key_record_is_permerror(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    """Decision: NXDOMAIN/no TXT (the lookup answers ``None``) is permerror, as RFC
    6376 §6.1.2 says ("no key for signature"); dkimpy itself just answers False."""
    key, _ = keys["rsa"]
    (result,) = verify(signed(MESSAGE, key), dns=lookup({}))
    assert result == DkimResult("permerror", DOMAIN, "rsa1", "no key")


def test_dns_failure_is_temperror(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    """Decision: a lookup that raises (timeout, SERVFAIL) is temperror, never an exception."""
    key, _ = keys["rsa"]

    def broken(name: bytes) -> bytes | None:
        raise TimeoutError("resolver timed out")

    (result,) = verify(signed(MESSAGE, key), dns=broken)
    assert result == DkimResult("temperror", DOMAIN, "rsa1", "key lookup failed")


def test_lookup_name_has_no_trailing_dot(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    asked: list[bytes] = []

    def recording(name: bytes) -> bytes | None:
        asked.append(name)
        return None

    verify(signed(MESSAGE, keys["ed25519"][0]), dns=recording)
    assert asked == [b"ed1._domainkey.notif.example.fr"]


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (b"v=DKIM1; k=rsa; p=", "key revoked"),
        (b"v=DKIM1; k=ed25519; p=AAAA", "key type mismatch"),
        (b"v=DKIM2; k=rsa; p=AAAA", "invalid key record"),
        (b"v=DKIM1; k=rsa; p=!!!!", "invalid key"),
        (b"v=DKIM1; k=rsa; p=QUJDRA==", "invalid key"),
        (b"v=DKIM1; k=rsa; s=tlsrpt; p=AAAA", "key not for email"),
        (b"v=DKIM1; k=rsa; h=sha1; p=AAAA", "key does not allow sha256"),
        (b"garbage without tags", "invalid key record"),
    ],
)
def test_bad_key_records_are_permerror(
    keys: dict[str, tuple[DkimKey, bytes]], record: bytes, reason: str
) -> None:
    key, _ = keys["rsa"]
    (result,) = verify(signed(MESSAGE, key), dns=lookup({record_name(key).encode(): record}))
    assert result == DkimResult("permerror", DOMAIN, "rsa1", reason)


def test_small_rsa_key_in_dns_is_permerror(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    """RFC 8301: under 1024 bits is not a valid key, whatever the signature."""
    # cryptography will not generate one; any odd 768-bit modulus makes a parsable key
    small = rsa.RSAPublicNumbers(65537, (1 << 767) + 1).public_key()
    der = small.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key, _ = keys["rsa"]
    record = b"v=DKIM1; p=" + base64.b64encode(der)
    (result,) = verify(signed(MESSAGE, key), dns=lookup({record_name(key).encode(): record}))
    assert result.result == "permerror" and result.reason == "key too small"


def test_wrong_key_in_dns_fails(keys: dict[str, tuple[DkimKey, bytes]], tmp_path: Path) -> None:
    other = generate_key(tmp_path / "other.key", kind="ed25519").encode()
    key, _ = keys["ed25519"]
    (result,) = verify(signed(MESSAGE, key), dns=lookup({record_name(key).encode(): other}))
    assert result == DkimResult("fail", DOMAIN, "ed1", "signature mismatch")


# -- hostile signatures ------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "reason", "domain"),
    [
        (b"DKIM-Signature: garbage", "malformed signature", None),
        (b"DKIM-Signature: v=1; v=1", "malformed signature", None),
        (b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr", "missing b= tag", "example.fr"),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr; s=s; h=from; bh=AAAA; b=%%%%",
            "invalid b= tag",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr; s=s; h=from; bh=A; b=AAAA",
            "invalid bh= tag",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha1; d=example.fr; s=s; h=from; bh=AAAA; b=AAAA",
            "rsa-sha1 not accepted",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr; s=s; h=to; bh=AAAA; b=AAAA",
            "From not signed",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=ex;ample; s=s; h=from; bh=AAAA; b=AAAA",
            "malformed signature",
            None,
        ),
        (
            b'DKIM-Signature: v=1; a=rsa-sha256; d=ex"ample; s=s; h=from; bh=AAAA; b=AAAA',
            "invalid d= tag",
            None,
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; c=odd; d=example.fr; s=s; h=from; bh=AAAA; b=AAAA",
            "invalid c= tag",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr; i=x@other.fr; s=s; h=from;"
            b" bh=AAAA; b=AAAA",
            "i= not within d=",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr; i=@example.fr; s=s; h=from;"
            b" x=1000; bh=AAAA; b=AAAA",
            "signature expired",
            "example.fr",
        ),
        (
            b"DKIM-Signature: v=1; a=rsa-sha256; d=example.fr; s=s; h=from; l=99999;"
            b" bh=AAAA; b=AAAA",
            "l= exceeds body",
            "example.fr",
        ),
    ],
)
def test_garbage_signature_is_permerror(field: bytes, reason: str, domain: str | None) -> None:
    def no_dns(name: bytes) -> bytes | None:
        raise AssertionError("a broken signature needs no DNS")

    (result,) = verify(field + b"\r\n" + MESSAGE, dns=no_dns)
    assert result.result == "permerror"
    assert result.reason == reason
    assert result.domain == domain


def test_malformed_header_with_signature_is_permerror() -> None:
    message = b"DKIM-Signature: v=1\r\nthis line has no colon\r\n\r\nbody\r\n"
    assert verify(message, dns=lookup({})) == (DkimResult("permerror", reason="malformed header"),)
    # a leading continuation line crashes the library's parser; still a result
    assert verify(b" folded\r\nDKIM-Signature: v=1\r\n\r\n", dns=lookup({}))[0].result == (
        "permerror"
    )


def test_only_the_first_signatures_are_checked(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    key, _ = keys["ed25519"]
    calls: list[bytes] = []
    dns = table(keys["ed25519"])

    def counting(name: bytes) -> bytes | None:
        calls.append(name)
        return dns.get(name)

    field = sign(MESSAGE, key)
    message = field * (MAX_SIGNATURES + 3) + MESSAGE
    results = verify(message, dns=counting)
    assert len(results) == MAX_SIGNATURES and len(calls) == MAX_SIGNATURES
    assert {r.result for r in results} == {"pass"}


def test_several_signatures_each_get_a_result(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    rsa_key, _ = keys["rsa"]
    ed_key, _ = keys["ed25519"]
    message = sign(MESSAGE, ed_key) + sign(MESSAGE, rsa_key) + MESSAGE
    dns = table(keys["rsa"])  # the Ed25519 key is not published
    assert verify(message, dns=lookup(dns)) == (
        DkimResult("permerror", DOMAIN, "ed1", "no key"),
        DkimResult("pass", DOMAIN, "rsa1", None),
    )


def test_time_tags_use_the_given_clock(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    key, _ = keys["rsa"]
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    message = sign(MESSAGE, key, now=t0) + MESSAGE
    dns = lookup(table(keys["rsa"]))
    assert verify(message, dns=dns, now=t0)[0].result == "pass"
    early = verify(message, dns=dns, now=t0 - timedelta(days=1))[0]
    assert (early.result, early.reason) == ("permerror", "signed in the future")


# -- interop with dkimpy's own implementation --------------------------------------


def test_dkimpy_verifies_our_rsa_signature(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    key, record = keys["rsa"]

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes | None:
        return record if name == record_name(key).encode() + b"." else None

    assert dkim.verify(signed(MESSAGE, key), dnsfunc=dnsfunc) is True


@pytest.mark.parametrize("canonicalize", [(b"relaxed", b"simple"), (b"simple", b"simple")])
def test_we_verify_a_dkimpy_signature(
    keys: dict[str, tuple[DkimKey, bytes]], canonicalize: tuple[bytes, bytes]
) -> None:
    key, _ = keys["rsa"]
    field = dkim.sign(
        MESSAGE, b"rsa1", DOMAIN.encode(), key.private_key_pem, canonicalize=canonicalize
    )
    assert verify(field + MESSAGE, dns=lookup(table(keys["rsa"])))[0].result == "pass"
    tampered = (field + MESSAGE).replace(b"lire", b"lira")
    assert verify(tampered, dns=lookup(table(keys["rsa"])))[0].result == "fail"


# -- fuzzing -----------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=2000),
        st.binary(max_size=2000).map(lambda rest: b"DKIM-Signature:" + rest),
    )
)
def test_verify_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    results = verify(data, dns=lookup({}))
    assert results and all(isinstance(r, DkimResult) for r in results)
    authentication_results(results, "mx.example.fr")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_verify_never_raises_on_mutated_signed_mail(
    keys: dict[str, tuple[DkimKey, bytes]], data: st.DataObject
) -> None:
    """Byte flips, cuts and insertions inside a real signature reach the deep paths."""
    kind = data.draw(st.sampled_from(["rsa", "ed25519"]))
    key, _ = keys[kind]
    message = bytearray(signed(MESSAGE, key))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(message)))
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip" and position < len(message):
            message[position] = data.draw(st.integers(0, 255))
        elif action == "cut":
            del message[position:]
        else:
            message[position:position] = data.draw(
                st.sampled_from([b";", b"=", b":", b"\r\n", b"\r\n ", b"\x00", b"\xff", b"b="])
            )
    answer = data.draw(st.one_of(st.just(keys[kind][1]), st.none(), st.binary(max_size=300)))
    results = verify(bytes(message), dns=lambda name: answer)
    assert results and all(
        r.result in ("none", "pass", "fail", "temperror", "permerror") for r in results
    )
    authentication_results(results, "mx.example.fr")


_TAG_NAMES = st.sampled_from(b"v a b bh c d h i l q s t x z 1x".split())
_TAG_VALUES = st.sampled_from(
    [
        *b"1 rsa-sha256 ed25519-sha256 relaxed/relaxed simple example.fr s1 from from:to".split(),
        *b"AAAA @example.fr dns/txt 0 99999999999 = a;b".split(),
        b"",
        b"\xff",
        b" \r\n ",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(_TAG_NAMES, _TAG_VALUES), max_size=14),
    st.one_of(st.none(), st.binary(max_size=200), _TAG_VALUES),
)
def test_verify_never_raises_on_generated_tag_lists(
    tags: list[tuple[bytes, bytes]], record: bytes | None
) -> None:
    field = b"DKIM-Signature: " + b"; ".join(name + b"=" + value for name, value in tags)
    results = verify(field + b"\r\n" + MESSAGE, dns=lambda name: record)
    assert len(results) == 1 and results[0].result in ("fail", "permerror")


# -- keys --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_generate_key_is_private_and_its_record_parses(tmp_path: Path, kind: KeyKind) -> None:
    path = tmp_path / "dkim.key"
    record = generate_key(path, kind=kind)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind
    tags = parse_tag_value(record.encode())
    assert tags[b"v"] == b"DKIM1" and tags[b"k"] == kind.encode()
    raw = base64.b64decode(tags[b"p"], validate=True)
    if kind == "rsa":
        public = serialization.load_der_public_key(raw)
        assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
        # dkimpy's own key-record parser agrees
        assert dkim.evaluate_pk(b"x", record.encode())[1] == 2048
    else:
        ed25519.Ed25519PublicKey.from_public_bytes(raw)
    key = load_key(path, domain="Example.FR", selector="S1")
    assert (key.domain, key.selector) == ("example.fr", "s1")
    assert dns_record(key) == record
    assert record_name(key) == "s1._domainkey.example.fr"
    assert b"PRIVATE" not in repr(key).encode()


def test_generate_key_keeps_an_existing_key(tmp_path: Path) -> None:
    path = tmp_path / "dkim.key"
    first = generate_key(path, kind="ed25519")
    with pytest.raises(DkimError, match="already exists"):
        generate_key(path, kind="ed25519")
    assert dns_record(load_key(path, domain=DOMAIN, selector="a")) == first
    assert generate_key(path, kind="ed25519", overwrite=True) != first


def _pem(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, password: bytes | None = None
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: None, "cannot read DKIM key"),
        (lambda: b"not a key at all", "is not a PEM private key"),
        (lambda: _pem(_rsa(1024)), "is too short: RSA 1024 bits, at least 2048 needed"),
        (lambda: _pem(ec.generate_private_key(ec.SECP256R1())), "unsupported type"),
        (lambda: _pem(_rsa(2048), b"secret"), "is encrypted"),
    ],
)
def test_load_key_refuses_bad_keys(
    tmp_path: Path, content: Callable[[], bytes | None], message: str
) -> None:
    path = tmp_path / "dkim.key"
    data = content()
    if data is not None:
        path.write_bytes(data)
    with pytest.raises(DkimError, match=message) as caught:
        load_key(path, domain=DOMAIN, selector="s1")
    assert isinstance(caught.value, OperatorError)
    assert "\n" not in str(caught.value)


def test_key_identity_is_checked() -> None:
    with pytest.raises(DkimError, match="invalid DKIM domain"):
        DkimKey(domain="exa mple.fr", selector="s1", private_key_pem=b"")
    with pytest.raises(DkimError, match="invalid DKIM selector"):
        DkimKey(domain="example.fr", selector="s1;x", private_key_pem=b"")


def test_sign_refuses_what_it_cannot_sign(keys: dict[str, tuple[DkimKey, bytes]]) -> None:
    key, _ = keys["rsa"]
    with pytest.raises(ValueError, match="exactly one From"):
        sign(b"To: a@b.fr\r\n\r\nx\r\n", key)
    with pytest.raises(ValueError, match="exactly one From"):
        sign(b"From: a@b.fr\r\n" + MESSAGE, key)
    with pytest.raises(ValueError, match="field name"):
        sign(MESSAGE, key, headers=[b"from", b"received"])
    with pytest.raises(ValueError, match="without signing From"):
        sign(MESSAGE, key, headers=[b"subject"])
    with pytest.raises(ValueError, match="malformed"):
        sign(b"no colon here\r\n\r\n", key)


# -- Authentication-Results --------------------------------------------------------


def test_authentication_results_single_pass() -> None:
    results = [DkimResult("pass", "example.fr", "sel1", None)]
    assert authentication_results(results, "mx.example.fr") == (
        b"Authentication-Results: mx.example.fr; dkim=pass header.d=example.fr header.s=sel1\r\n"
    )


def test_authentication_results_unsigned() -> None:
    expected = b"Authentication-Results: mx.example.fr; dkim=none\r\n"
    assert authentication_results([], "mx.example.fr") == expected
    assert authentication_results(verify(MESSAGE, dns=lookup({})), "mx.example.fr") == expected
    assert authentication_results([DkimResult("none", reason="too large")], "mx.example.fr") == (
        b'Authentication-Results: mx.example.fr; dkim=none reason="too large"\r\n'
    )


def test_authentication_results_several_signatures_fold() -> None:
    results = [
        DkimResult("pass", "example.fr", "sel1", None),
        DkimResult("fail", "other.example", "s2", "body hash mismatch"),
        DkimResult("permerror", None, None, "malformed signature"),
    ]
    assert authentication_results(results, "mx.example.fr") == (
        b"Authentication-Results: mx.example.fr;\r\n"
        b" dkim=pass header.d=example.fr header.s=sel1;\r\n"
        b' dkim=fail reason="body hash mismatch" header.d=other.example header.s=s2;\r\n'
        b' dkim=permerror reason="malformed signature"\r\n'
    )


def test_authentication_results_short_pair_stays_on_one_line() -> None:
    results = [DkimResult("fail"), DkimResult("temperror", "b.fr", "s", None)]
    assert authentication_results(results, "mx") == (
        b"Authentication-Results: mx; dkim=fail; dkim=temperror header.d=b.fr header.s=s\r\n"
    )


def test_authentication_results_drops_unsafe_values() -> None:
    hostile = DkimResult("fail", "evil.fr\r\nX-Injected: 1", "s; dkim=pass", 'a"b\r\n')
    field = authentication_results([hostile], "mx.example.fr")
    assert field == b"Authentication-Results: mx.example.fr; dkim=fail\r\n"
    with pytest.raises(DkimError, match="authserv-id"):
        authentication_results([], "mx.example.fr; dkim=pass")
