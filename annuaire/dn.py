"""Distinguished names (DN), compared after ONE documented normalisation.

Why: the national whitelist pairs each mail domain with the subject DN of the
operator's IGC-Santé server certificate, typed by many hands. The same DN shows
up with attributes in another order, quoted values (``O="C H U  DE  LIMOGES"``),
no-break spaces, double spaces or another case. Raw string comparison would
refuse legitimate peers, so the product never compares DN strings: it compares
``DN.key``, built by this rule and no other.

The rule:

1. Parse RFC 4514 text, also accepting RFC 1779/2253 input forms: ``,`` or
   ``;`` separate RDNs, ``+`` joins the attributes of a multi-valued RDN,
   ``\\`` escapes one special character or two hex digits (UTF-8 bytes), a
   double-quoted value is literal (commas included), unescaped spaces around
   ``=``, ``,``, ``;`` and ``+`` are ignored, ``#hex`` values are decoded BER
   strings. At most 4 KiB of input and 64 RDNs.
2. Type: ``OID.`` prefix dropped; names and OIDs mapped to one upper-case short
   name (``ST``/``S``/``stateOrProvinceName``/``2.5.4.8`` -> ``ST``;
   ``E``/``EMAIL``/``emailAddress``/``1.2.840.113549.1.9.1`` -> ``EMAILADDRESS``;
   ``2.5.4.3`` -> ``CN``...); other names upper-cased, other OIDs kept dotted.
3. Value: NFKC; every Unicode white space (U+00A0 included) becomes ``' '``;
   runs of spaces collapse to one; stripped; casefolded (X.520
   caseIgnoreMatch); NFKC again so the result is stable.
4. Key: the sorted tuple of ``(type, value)`` pairs. Attribute order and RDN
   grouping are ignored (order varies in the national file); duplicates count
   (a multiset).

Two DNs are the same if and only if their keys are equal; ``DN.__eq__`` and
``hash(DN)`` use the key, and ``same_dn`` says so for strings too.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from cryptography import x509

__all__ = [
    "DN",
    "MAX_ATTRIBUTES",
    "MAX_DN_BYTES",
    "MAX_RDNS",
    "Attribute",
    "DNError",
    "canonical_type",
    "dn_from_x509",
    "normalise_value",
    "parse_dn",
    "same_dn",
]

MAX_DN_BYTES = 4096
MAX_RDNS = 64
MAX_ATTRIBUTES = 128
_MAX_TYPE_CHARS = 64

Attribute = tuple[str, str]
RDN = tuple[Attribute, ...]


class DNError(ValueError):
    """A DN string (or DN value) is not acceptable; the message says where and why."""


# canonical short name, OID, accepted names (lower-case)
_TYPES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("CN", "2.5.4.3", ("cn", "commonname")),
    ("SN", "2.5.4.4", ("sn", "surname")),
    ("SERIALNUMBER", "2.5.4.5", ("serialnumber",)),
    ("C", "2.5.4.6", ("c", "countryname")),
    ("L", "2.5.4.7", ("l", "localityname")),
    ("ST", "2.5.4.8", ("st", "s", "stateorprovincename")),
    ("STREET", "2.5.4.9", ("street", "streetaddress")),
    ("O", "2.5.4.10", ("o", "organizationname")),
    ("OU", "2.5.4.11", ("ou", "organizationalunitname")),
    ("TITLE", "2.5.4.12", ("title",)),
    ("BUSINESSCATEGORY", "2.5.4.15", ("businesscategory",)),
    ("POSTALCODE", "2.5.4.17", ("postalcode",)),
    ("GN", "2.5.4.42", ("gn", "givenname")),
    ("INITIALS", "2.5.4.43", ("initials",)),
    ("GENERATIONQUALIFIER", "2.5.4.44", ("generationqualifier",)),
    ("X500UNIQUEIDENTIFIER", "2.5.4.45", ("x500uniqueidentifier",)),
    ("DNQUALIFIER", "2.5.4.46", ("dnqualifier",)),
    ("PSEUDONYM", "2.5.4.65", ("pseudonym",)),
    ("ORGANIZATIONIDENTIFIER", "2.5.4.97", ("organizationidentifier",)),
    ("DC", "0.9.2342.19200300.100.1.25", ("dc", "domaincomponent")),
    ("UID", "0.9.2342.19200300.100.1.1", ("uid", "userid")),
    ("EMAILADDRESS", "1.2.840.113549.1.9.1", ("emailaddress", "email", "e")),
)
_NAME_TO_TYPE = {name: canon for canon, _oid, names in _TYPES for name in names}
_OID_TO_TYPE = {oid: canon for canon, oid, _names in _TYPES}

_DESCR_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")
_OID_RE = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_HEX = frozenset("0123456789abcdefABCDEF")
_WS = " \t\r\n"
_SEPARATORS = ",;"
_TO_ESCAPE = frozenset('\\"+,;<>=')
# BER universal string tags accepted in "#hex" values, with their codec
_BER_STRINGS = {
    0x0C: "utf-8",  # UTF8String
    0x12: "ascii",  # NumericString
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # TeletexString (T.61, read as Latin-1 like most tools)
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}


def canonical_type(attribute_type: str) -> str:
    """The one upper-case name of an attribute type, so aliases and OIDs compare equal."""
    raw = attribute_type.strip(_WS)
    if raw[:4].lower() == "oid.":
        raw = raw[4:]
    if not raw or len(raw) > _MAX_TYPE_CHARS:
        raise DNError(f"invalid attribute type {attribute_type!r}")
    if _OID_RE.fullmatch(raw):
        oid = ".".join(str(int(arc)) for arc in raw.split("."))
        return _OID_TO_TYPE.get(oid, oid)
    if _DESCR_RE.fullmatch(raw):
        return _NAME_TO_TYPE.get(raw.lower(), raw.upper())
    raise DNError(f"invalid attribute type {attribute_type!r}")


def normalise_value(value: str) -> str:
    """The comparison form of an attribute value (steps 3 of the module rule)."""
    folded = " ".join(unicodedata.normalize("NFKC", value).split())
    return unicodedata.normalize("NFKC", folded.casefold())


def _key(rdns: tuple[RDN, ...]) -> tuple[Attribute, ...]:
    return tuple(sorted((canonical_type(t), normalise_value(v)) for rdn in rdns for (t, v) in rdn))


def _escape(value: str) -> str:
    """RFC 4514 escaping; control characters as ``\\XX`` so a printed DN stays one line."""
    out: list[str] = []
    last = len(value) - 1
    for idx, char in enumerate(value):
        if char in _TO_ESCAPE:
            out.append("\\" + char)
        elif unicodedata.category(char) == "Cc":
            out.append("".join(f"\\{b:02X}" for b in char.encode("utf-8")))
        elif (char == " " and idx in (0, last)) or (char == "#" and idx == 0):
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


@dataclass(frozen=True, eq=False)
class DN:
    """A distinguished name as written (RDNs, attributes in input order) plus its key.

    Equality and hash use ``key`` only: two spellings of one name are equal.
    """

    rdns: tuple[RDN, ...]
    key: tuple[Attribute, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.rdns, tuple):
            raise DNError("DN.rdns must be a tuple of RDNs")
        if len(self.rdns) > MAX_RDNS:
            raise DNError(f"DN has {len(self.rdns)} RDNs, more than {MAX_RDNS}")
        count = 0
        for rdn in self.rdns:
            if not isinstance(rdn, tuple) or not rdn:
                raise DNError("every RDN must be a non-empty tuple of (type, value)")
            for attr in rdn:
                if not (
                    isinstance(attr, tuple)
                    and len(attr) == 2
                    and isinstance(attr[0], str)
                    and isinstance(attr[1], str)
                ):
                    raise DNError(f"attribute {attr!r} is not a (type, value) pair of strings")
            count += len(rdn)
        if count > MAX_ATTRIBUTES:
            raise DNError(f"DN has {count} attributes, more than {MAX_ATTRIBUTES}")
        object.__setattr__(self, "key", _key(self.rdns))

    @classmethod
    def of(cls, *attributes: Attribute) -> DN:
        """A DN of single-valued RDNs, e.g. ``DN.of(("CN", "mx.x.fr"), ("C", "FR"))``."""
        return cls(tuple((attr,) for attr in attributes))

    @property
    def attributes(self) -> tuple[Attribute, ...]:
        """Every (type, value) pair in input order, RDN grouping flattened."""
        return tuple(attr for rdn in self.rdns for attr in rdn)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DN):
            return self.key == other.key
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return ",".join("+".join(f"{t}={_escape(v)}" for t, v in rdn) for rdn in self.rdns)


class _Parser:
    """One pass over a DN string; every error names the offset it stopped at."""

    def __init__(self, text: str) -> None:
        self.s = text
        self.n = len(text)
        self.i = 0

    def skip_ws(self) -> None:
        while self.i < self.n and self.s[self.i] in _WS:
            self.i += 1

    def parse(self) -> tuple[RDN, ...]:
        rdns: list[RDN] = []
        count = 0
        self.skip_ws()
        if self.i == self.n:
            raise DNError("empty DN")
        while True:
            rdn: list[Attribute] = []
            while True:
                rdn.append((self.parse_type(), self.parse_value()))
                count += 1
                if count > MAX_ATTRIBUTES:
                    raise DNError(f"DN has more than {MAX_ATTRIBUTES} attributes")
                self.skip_ws()
                if self.i < self.n and self.s[self.i] == "+":
                    self.i += 1
                    continue
                break
            rdns.append(tuple(rdn))
            if len(rdns) > MAX_RDNS:
                raise DNError(f"DN has more than {MAX_RDNS} RDNs")
            if self.i == self.n:
                return tuple(rdns)
            # parse_value stops only at a separator, '+' or the end
            self.i += 1

    def parse_type(self) -> str:
        self.skip_ws()
        start = self.i
        while self.i < self.n and self.s[self.i] not in "=,;+":
            self.i += 1
        raw = self.s[start : self.i].strip(_WS)
        if self.i == self.n or self.s[self.i] != "=":
            if not raw:
                raise DNError(f"expected an attribute type at offset {start}")
            raise DNError(f"missing '=' after attribute type {raw!r} at offset {start}")
        if not raw:
            raise DNError(f"empty attribute type before '=' at offset {self.i}")
        stripped = raw[4:] if raw[:4].lower() == "oid." else raw
        if not (_DESCR_RE.fullmatch(stripped) or _OID_RE.fullmatch(stripped)):
            raise DNError(f"invalid attribute type {raw!r} at offset {start}")
        if len(stripped) > _MAX_TYPE_CHARS:
            raise DNError(f"attribute type longer than {_MAX_TYPE_CHARS} at offset {start}")
        self.i += 1
        return stripped

    def parse_value(self) -> str:
        self.skip_ws()
        if self.i < self.n and self.s[self.i] == '"':
            value = self.quoted()
        elif self.i < self.n and self.s[self.i] == "#":
            value = self.hex_value()
        else:
            return self.unquoted()
        self.skip_ws()
        if self.i < self.n and self.s[self.i] not in ",;+":
            raise DNError(f"unexpected {self.s[self.i]!r} after value at offset {self.i}")
        return value

    def escape(self, out: list[str], pending: bytearray) -> None:
        """Consume one ``\\`` escape at ``self.i``; hex bytes wait in ``pending``."""
        at = self.i
        if at + 1 >= self.n:
            raise DNError(f"dangling '\\' at offset {at}")
        nxt = self.s[at + 1]
        if nxt in _HEX:
            if at + 2 >= self.n or self.s[at + 2] not in _HEX:
                raise DNError(f"incomplete hex escape at offset {at}")
            pending.append(int(self.s[at + 1 : at + 3], 16))
            self.i += 3
            return
        self.flush(out, pending)
        out.append(nxt)
        self.i += 2

    def flush(self, out: list[str], pending: bytearray) -> None:
        if pending:
            try:
                out.append(pending.decode("utf-8"))
            except UnicodeDecodeError:
                raise DNError(f"hex escapes before offset {self.i} are not valid UTF-8") from None
            pending.clear()

    def check_char(self, char: str) -> None:
        if char not in _WS and unicodedata.category(char) == "Cc":
            raise DNError(f"control character U+{ord(char):04X} at offset {self.i}")

    def unquoted(self) -> str:
        out: list[str] = []
        pending = bytearray()
        keep = 0  # trailing unescaped white space is not part of the value
        while self.i < self.n:
            char = self.s[self.i]
            if char in ",;+":
                break
            if char == "\\":
                self.escape(out, pending)
                keep = len(out) + (1 if pending else 0)
                continue
            self.flush(out, pending)
            if char == '"':
                raise DNError(
                    f"unescaped '\"' inside a value at offset {self.i} "
                    "(quote the whole value or escape the quote)"
                )
            self.check_char(char)
            out.append(char)
            if char not in _WS:
                keep = len(out)
            self.i += 1
        self.flush(out, pending)
        return "".join(out[:keep])

    def quoted(self) -> str:
        start = self.i
        self.i += 1
        out: list[str] = []
        pending = bytearray()
        while True:
            if self.i >= self.n:
                raise DNError(f"unterminated quoted value starting at offset {start}")
            char = self.s[self.i]
            if char == "\\":
                self.escape(out, pending)
                continue
            self.flush(out, pending)
            if char == '"':
                self.i += 1
                return "".join(out)
            self.check_char(char)
            out.append(char)
            self.i += 1

    def hex_value(self) -> str:
        start = self.i
        self.i += 1
        while self.i < self.n and self.s[self.i] in _HEX:
            self.i += 1
        digits = self.s[start + 1 : self.i]
        if not digits or len(digits) % 2:
            raise DNError(f"'#' value at offset {start} needs an even number of hex digits")
        return _decode_ber_string(bytes.fromhex(digits), start)


def _decode_ber_string(der: bytes, offset: int) -> str:
    """The text of a ``#hex`` value: a BER string type, or a precise refusal."""
    where = f"'#' value at offset {offset}"
    if len(der) < 2:
        raise DNError(f"{where} is too short for a BER string")
    codec = _BER_STRINGS.get(der[0])
    if codec is None:
        raise DNError(f"{where} has BER tag 0x{der[0]:02X}, not a string type")
    length, body = der[1], der[2:]
    if length & 0x80:
        size = length & 0x7F
        if size not in (1, 2) or len(body) < size:
            raise DNError(f"{where} has an unsupported BER length")
        length, body = int.from_bytes(body[:size], "big"), body[size:]
    if length != len(body):
        raise DNError(f"{where} BER length {length} does not match {len(body)} content bytes")
    try:
        return body.decode(codec)
    except UnicodeDecodeError:
        raise DNError(f"{where} is not valid {codec}") from None


def parse_dn(text: str) -> DN:
    """Parse a DN string (RFC 4514 and the RFC 1779/2253 forms seen in the national list)."""
    if not isinstance(text, str):
        raise DNError(f"DN must be a string, not {type(text).__name__}")
    if len(text) > MAX_DN_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_DN_BYTES:
        raise DNError(f"DN longer than {MAX_DN_BYTES} bytes")
    return DN(_Parser(text).parse())


def dn_from_x509(name: x509.Name) -> DN:
    """A certificate subject/issuer as a DN, in RFC 4514 order (most specific RDN first)."""
    rdns: list[RDN] = []
    for rdn in reversed(name.rdns):
        attrs: list[Attribute] = []
        for attr in rdn:
            oid = attr.oid.dotted_string
            value = attr.value
            text = value if isinstance(value, str) else "#" + bytes(value).hex()
            attrs.append((_OID_TO_TYPE.get(oid, oid), text))
        rdns.append(tuple(attrs))
    return DN(tuple(rdns))


def same_dn(a: DN | str, b: DN | str) -> bool:
    """True if both name the same entity under the module rule; garbage strings raise DNError."""
    left = a if isinstance(a, DN) else parse_dn(a)
    right = b if isinstance(b, DN) else parse_dn(b)
    return left.key == right.key
