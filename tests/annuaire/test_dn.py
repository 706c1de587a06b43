"""DN parsing and the one normalisation rule the whitelist pairing relies on."""

from __future__ import annotations

import itertools
import re

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire.dn import (
    DN,
    MAX_DN_BYTES,
    MAX_RDNS,
    DNError,
    canonical_type,
    dn_from_x509,
    normalise_value,
    parse_dn,
    same_dn,
)

CHU = "CN=mx.chu-x.fr,OU=1750000012,O=CHU X,ST=Paris (75),C=FR"


def test_plain_dn_keeps_input_order_and_prints_back() -> None:
    dn = parse_dn(CHU)
    assert dn.attributes == (
        ("CN", "mx.chu-x.fr"),
        ("OU", "1750000012"),
        ("O", "CHU X"),
        ("ST", "Paris (75)"),
        ("C", "FR"),
    )
    assert str(dn) == CHU
    assert dn.key == (
        ("C", "fr"),
        ("CN", "mx.chu-x.fr"),
        ("O", "chu x"),
        ("OU", "1750000012"),
        ("ST", "paris (75)"),
    )


def test_quoted_value_keeps_commas_and_spaces_literal() -> None:
    dn = parse_dn('CN=mx.chu-limoges.fr,O="C H U  DE  LIMOGES, SITE 2",C=FR')
    assert dn.attributes[1] == ("O", "C H U  DE  LIMOGES, SITE 2")
    assert len(dn.rdns) == 3
    assert str(dn) == r"CN=mx.chu-limoges.fr,O=C H U  DE  LIMOGES\, SITE 2,C=FR"
    # covers: TS-2
    assert same_dn(dn, "CN=mx.chu-limoges.fr,O=C H U DE LIMOGES\\, SITE 2,C=FR")


def test_quoted_value_with_escapes_inside() -> None:
    assert parse_dn(r'O="a \"b\" \\ c"').attributes == (("O", 'a "b" \\ c'),)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"CN=a\,b", "a,b"),
        (r"CN=a\+b", "a+b"),
        (r"CN=a\"b", 'a"b'),
        (r"CN=a\\b", "a\\b"),
        (r"CN=a\;b", "a;b"),
        (r"CN=\#x", "#x"),
        (r"CN=\ x\ ", " x "),
        (r"CN=\41\42", "AB"),
        (r"CN=caf\C3\A9", "café"),
        (r"CN=\c3\a9t\c3\a9", "été"),
        (r"CN=x\00y", "x\x00y"),
        ("CN=#0C03616263", "abc"),
        ("CN=#130461626364", "abcd"),
    ],
)
def test_escapes(text: str, value: str) -> None:
    assert parse_dn(text).attributes == (("CN", value),)


def test_nbsp_and_double_spaces_are_the_same_name() -> None:
    # covers: TS-2
    ref = parse_dn("CN=mx.x.fr,O=CENTRE HOSPITALIER DE X,C=FR")
    for variant in (
        "CN=mx.x.fr,O=CENTRE\u00a0HOSPITALIER DE X,C=FR",
        "CN=mx.x.fr,O=CENTRE  HOSPITALIER\u00a0\u00a0DE X,C=FR",
        "CN=mx.x.fr,O=CENTRE\u2003HOSPITALIER\tDE X ,C=FR",
        'CN=mx.x.fr,O=" CENTRE HOSPITALIER DE X ",C=FR',
    ):
        dn = parse_dn(variant)
        assert dn == ref
        assert hash(dn) == hash(ref)


def test_attribute_order_permutations_are_equal() -> None:
    # covers: TS-2
    parts = CHU.split(",")
    ref = parse_dn(CHU)
    for perm in itertools.permutations(parts):
        assert parse_dn(",".join(perm)) == ref


def test_duplicates_count_as_a_multiset() -> None:
    assert parse_dn("OU=a,OU=a,CN=x") != parse_dn("OU=a,CN=x")
    assert parse_dn("OU=a,OU=b,CN=x") == parse_dn("OU=b,CN=x,OU=a")


def test_case_insensitive_types_and_values() -> None:
    assert same_dn("cn=MX.CHU-X.FR,ou=1750000012,o=chu x,st=PARIS (75),c=fr", CHU)
    assert same_dn("commonName=a,stateOrProvinceName=b", "CN=A,S=B")
    assert same_dn("E=ops@x.fr,CN=a", "emailAddress=OPS@X.FR,CN=a")
    assert same_dn("EMAIL=ops@x.fr", "1.2.840.113549.1.9.1=ops@x.fr")
    assert not same_dn("CN=a,O=b", "CN=a,OU=b")


def test_oid_types() -> None:
    dn = parse_dn("2.5.4.3=mx.x.fr, 2.5.4.11=1750000012, 2.5.4.10=X, 2.5.4.7=Lyon, 2.5.4.6=FR")
    assert same_dn(dn, "CN=mx.x.fr,OU=1750000012,O=X,L=Lyon,C=FR")
    assert same_dn("OID.2.5.4.3=a", "CN=a")
    assert same_dn("2.5.4.5=123,2.5.4.42=Jean,2.5.4.4=Dupont", "SERIALNUMBER=123,GN=jean,SN=dupont")
    assert canonical_type("givenName") == "GN"
    assert canonical_type("1.2.3.4") == "1.2.3.4"
    assert canonical_type("01.2.03") == "1.2.3"
    assert canonical_type("businessCategory") == "BUSINESSCATEGORY"
    assert canonical_type("fooBar") == "FOOBAR"


def test_multi_valued_rdn() -> None:
    dn = parse_dn("CN=a+UID=42,O=x")
    assert dn.rdns == ((("CN", "a"), ("UID", "42")), (("O", "x"),))
    assert str(dn) == "CN=a+UID=42,O=x"
    assert dn == parse_dn("UID=42+CN=a,O=x")


def test_semicolons_and_spaces_around_separators() -> None:
    dn = parse_dn("  CN = mx.x.fr ; OU = 123 ,  O = X  +  L = Lyon  ")
    assert dn.rdns == (
        (("CN", "mx.x.fr"),),
        (("OU", "123"),),
        (("O", "X"), ("L", "Lyon")),
    )


def test_cn_only_and_l_instead_of_st() -> None:
    assert parse_dn("CN=mx.x.fr").key == (("CN", "mx.x.fr"),)
    assert not same_dn("CN=mx.x.fr,L=Paris,C=FR", "CN=mx.x.fr,ST=Paris,C=FR")


def test_empty_value_is_allowed() -> None:
    assert parse_dn("CN=,O=x").attributes == (("CN", ""), ("O", "x"))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty DN"),
        ("   ", "empty DN"),
        ('O="C H U', "unterminated quoted value"),
        ("CN", "missing '='"),
        ("CN=a,OU", "missing '='"),
        ("=a", "empty attribute type"),
        ("CN=a,=b", "empty attribute type"),
        ("CN=a,", "expected an attribute type"),
        ("CN=a,,O=b", "expected an attribute type"),
        ("C N=a", "invalid attribute type"),
        ("1.=a", "invalid attribute type"),
        ("CN=a\\", "dangling"),
        ("CN=a\\4", "incomplete hex escape"),
        ("CN=\\C3", "not valid UTF-8"),
        ('CN=a"b', "unescaped '\"'"),
        ('O="x" y', "unexpected 'y' after value"),
        ("CN=a\x01", "control character"),
        ("CN=#", "even number"),
        ("CN=#0c0", "even number"),
        ("CN=#0203616263", "not a string type"),
        ("CN=#0c05616263", "does not match"),
    ],
)
def test_garbage_raises_precise_dnerror(text: str, message: str) -> None:
    with pytest.raises(DNError, match=re.escape(message)):
        parse_dn(text)


def test_dnerror_is_a_valueerror() -> None:
    with pytest.raises(ValueError):
        parse_dn("nonsense")


def test_size_is_bounded() -> None:
    with pytest.raises(DNError, match="longer than 4096 bytes"):
        parse_dn("CN=" + "a" * MAX_DN_BYTES)
    with pytest.raises(DNError, match="longer than 4096 bytes"):
        parse_dn("CN=" + "é" * 2100)  # under 4096 characters, over 4096 bytes
    with pytest.raises(DNError, match="more than 64 RDNs"):
        parse_dn(",".join(["OU=a"] * (MAX_RDNS + 1)))
    assert len(parse_dn(",".join(["OU=a"] * MAX_RDNS)).rdns) == MAX_RDNS
    with pytest.raises(DNError, match="attributes"):
        parse_dn("+".join(["OU=a"] * 200))
    with pytest.raises(DNError):
        DN(tuple(((("OU", "a"),),) * (MAX_RDNS + 1)))


def test_direct_construction_is_validated() -> None:
    with pytest.raises(DNError):
        DN(((),))
    with pytest.raises(DNError):
        DN(((("CN", 1),),))  # type: ignore[arg-type]
    with pytest.raises(DNError, match="invalid attribute type"):
        DN.of(("C N", "x"))
    assert DN.of(("CN", "a"), ("C", "FR")) == parse_dn("C=fr,CN=A")


def test_normalise_value_rule() -> None:
    assert normalise_value("  C H U\u00a0 DE\u2009LIMOGES  ") == "c h u de limoges"
    assert normalise_value("ＣＨＵ") == "chu"  # NFKC: full-width letters
    assert normalise_value("Straße") == "strasse"  # casefold, not lower


def test_dn_equality_is_not_string_equality() -> None:
    assert parse_dn("CN=a") != "CN=a"
    assert len({parse_dn("CN=A,C=FR"), parse_dn("c=fr, cn=a")}) == 1


def _subject() -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Paris (75)"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CHU X"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "1750000012"),
            x509.NameAttribute(NameOID.COMMON_NAME, "mx.chu-x.fr"),
        ]
    )


def test_dn_from_x509_equals_the_hand_written_subject() -> None:
    # covers: TS-2
    dn = dn_from_x509(_subject())
    assert dn == parse_dn(CHU)
    assert str(dn) == CHU
    assert same_dn(dn, "C=FR,ST=Paris (75),O=CHU\u00a0X,OU=1750000012,CN=mx.chu-x.fr")
    assert str(dn) == _subject().rfc4514_string()


def test_dn_from_x509_multi_valued_and_email() -> None:
    name = x509.Name(
        [
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "a"),
                    x509.NameAttribute(NameOID.EMAIL_ADDRESS, "ops@x.fr"),
                ]
            ),
            x509.RelativeDistinguishedName(
                [x509.NameAttribute(x509.ObjectIdentifier("1.2.3.4"), "custom")]
            ),
        ]
    )
    dn = dn_from_x509(name)
    assert dn == parse_dn("1.2.3.4=custom,E=OPS@x.fr+CN=a")
    assert dn_from_x509(x509.Name([])).key == ()


_TYPES = st.sampled_from(
    ["CN", "OU", "O", "ST", "S", "C", "L", "E", "emailAddress", "DC", "UID", "2.5.4.3", "1.2.3"]
)
_VALUES = st.text(max_size=12) | st.text(alphabet=' ,+;"\\#=<>\u00a0\t\x00é', max_size=8)
_DNS = st.lists(
    st.lists(st.tuples(_TYPES, _VALUES), min_size=1, max_size=3).map(tuple),
    min_size=1,
    max_size=5,
).map(lambda rdns: DN(tuple(rdns)))


@settings(max_examples=100, deadline=None)
@given(_DNS)
def test_str_reparses_to_an_equal_dn(dn: DN) -> None:
    again = parse_dn(str(dn))
    assert again == dn
    assert again.rdns == dn.rdns  # exact, not only under the normalisation
    assert str(again) == str(dn)


@settings(max_examples=30, deadline=None)
@given(_DNS, st.randoms(use_true_random=False))
def test_order_never_matters(dn: DN, rnd: object) -> None:
    rdns = list(dn.rdns)
    rnd.shuffle(rdns)  # type: ignore[attr-defined]
    assert DN(tuple(rdns)) == dn


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_normalise_value_is_idempotent(text: str) -> None:
    once = normalise_value(text)
    assert normalise_value(once) == once
    assert once == once.strip() and "  " not in once
