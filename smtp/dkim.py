"""DKIM (RFC 6376, RFC 8463, RFC 8301) signing and verification, plus RFC 8601 results.

Two jobs. The generic patient notifications are the only mail that leaves the
trust space, through their own smarthost to ordinary Internet providers, which
file unsigned mail as spam: :func:`sign` gives them a DKIM signature. Inbound
MX mail may carry signatures: :func:`verify` checks them and
:func:`authentication_results` writes the header the MX prepends.

dkimpy supplies the fiddly, well-tested parts (header/body split, the simple
and relaxed canonicalisations, tag=value parsing, the header hash input with
its oversigning semantics). The rest is done here on purpose: dkimpy's own
Ed25519 needs PyNaCl, which is not a dependency, its RSA signing is pure Python
(not constant-time), and its ``verify`` folds a DNS timeout, a missing key and
a bad signature into one ``False`` where RFC 8601 needs temperror, permerror
and fail. Signatures are made and checked by ``cryptography``.

Verification reads hostile bytes: it never raises, bounds its work (message
size, signatures, header fields, signed-header list, key size) and logs
nothing. Reasons are a fixed vocabulary, never text from the message, so they
can go into a header as they are.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, cast

import dkim  # type: ignore[import-untyped]
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy  # type: ignore[import-untyped]
from dkim.util import parse_tag_value  # type: ignore[import-untyped]
from dns import resolver

from mssante.errors import OperatorError
from mssante.files import atomic_write

__all__ = [
    "DEFAULT_SIGNED_HEADERS",
    "DNS_TIMEOUT",
    "MAX_HEADER_FIELDS",
    "MAX_SIGNATURES",
    "MAX_VERIFY_SIZE",
    "DkimError",
    "DkimKey",
    "DkimResult",
    "DnsLookup",
    "KeyKind",
    "Result",
    "authentication_results",
    "dns_record",
    "dns_txt_lookup",
    "generate_key",
    "load_key",
    "record_name",
    "sign",
    "verify",
]

KeyKind = Literal["rsa", "ed25519"]
Result = Literal["none", "pass", "fail", "temperror", "permerror"]
DnsLookup = Callable[[bytes], bytes | None]
"""``name -> TXT value``: ``None`` when there is no record, an exception when DNS failed."""

DEFAULT_SIGNED_HEADERS: tuple[bytes, ...] = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
)
"""What a notification's meaning rests on; each is signed once more than present."""
MAX_VERIFY_SIZE = 50 * 1024 * 1024
"""Above this, verification is skipped (``none``, "too large"): hashing is linear work."""
MAX_SIGNATURES = 5
"""Only the topmost signatures are checked: each costs a DNS query and a body hash."""
MAX_HEADER_FIELDS = 1000
"""Header selection is quadratic in (signed names x fields); real mail has ~100 fields."""
MAX_SIGNED_NAMES = 256
"""Cap on ``h=`` entries, the other factor of that product."""
DNS_TIMEOUT = 5.0
"""Seconds for one key lookup by the default resolver."""
RSA_MIN_SIGNING_BITS = 2048
RSA_MIN_VERIFY_BITS = 1024
"""RFC 8301: keys under 1024 bits are not valid."""
RSA_MAX_BITS = 8192
"""Bounds the cost of a hostile key published by the sender's DNS."""
CLOCK_SLOP = 3600
"""Seconds of tolerance for senders' clocks on ``t=`` and ``x=``."""

_CRLF = b"\r\n"
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DIGITS = re.compile(rb"[0-9]{1,12}")
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]")
_WSP = re.compile(rb"\s+")
_H_SPLIT = re.compile(rb"\s*:\s*")
_HEADER_END = re.compile(rb"\n\r?\n")
_SIGNATURE_LINE = re.compile(rb"(?:\A|\n)dkim-signature:", re.IGNORECASE)
_NEVER_SIGN = frozenset(cast("tuple[bytes, ...]", dkim.DKIM.SHOULD_NOT))
_ALGORITHMS: dict[bytes, KeyKind] = {b"rsa-sha256": "rsa", b"ed25519-sha256": "ed25519"}
_MANDATORY = (b"v", b"a", b"b", b"bh", b"d", b"h", b"s")
_REASON_CHARS = re.compile(r"[\x20-\x7e]*")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ed25519.Ed25519PublicKey


class DkimError(OperatorError):
    """A DKIM key or setting the operator must fix (one line, CLI exit 2)."""


@dataclass(frozen=True)
class DkimKey:
    """A signing identity: ``d=`` domain, ``s=`` selector and the PEM private key."""

    domain: str
    selector: str
    private_key_pem: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not _valid_domain(self.domain):
            raise DkimError(f"invalid DKIM domain {self.domain!r}: lower-case ASCII host name")
        if not _valid_domain(self.selector):
            raise DkimError(f"invalid DKIM selector {self.selector!r}: lower-case DNS labels")


@dataclass(frozen=True)
class DkimResult:
    """One signature's outcome (or the whole message's, for ``none``).

    ``domain``/``selector`` are set only when they were syntactically valid, so
    they can be written into a header; ``reason`` is from a fixed vocabulary.
    """

    result: Result
    domain: str | None = None
    selector: str | None = None
    reason: str | None = None


# -- keys -----------------------------------------------------------------------


def load_key(path: Path, *, domain: str, selector: str) -> DkimKey:
    """Read and check a PEM private key, so a bad key stops ``serve`` at start."""
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise DkimError(f"cannot read DKIM key {path}: {exc.strerror or exc}") from None
    _parse_private_key(pem, str(path))
    return DkimKey(domain=domain.lower(), selector=selector.lower(), private_key_pem=pem)


def generate_key(path: Path, *, kind: KeyKind = "rsa", overwrite: bool = False) -> str:
    """Write a new private key (mode 0600) and return the TXT value to publish.

    An existing key is kept unless ``overwrite``: its public half may already
    be in DNS, and replacing it would break mail signed but not yet delivered.
    Rotate with a new selector instead.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise DkimError(f"DKIM key {target} already exists; use a new file and selector to rotate")
    private: PrivateKey
    if kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_MIN_SIGNING_BITS)
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise DkimError(f"unknown DKIM key type {kind!r}: rsa or ed25519")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        atomic_write(target, pem, mode=0o600)
    except OSError as exc:
        raise DkimError(f"cannot write DKIM key {target}: {exc.strerror or exc}") from None
    return _record_for(private)


def dns_record(key: DkimKey) -> str:
    """The TXT value for ``record_name(key)`` (RSA ones exceed 255 bytes: split the string)."""
    return _record_for(_parse_private_key(key.private_key_pem, record_name(key)))


def record_name(key: DkimKey) -> str:
    """Where the public key is published: ``<selector>._domainkey.<domain>``."""
    return f"{key.selector}._domainkey.{key.domain}"


def _record_for(private: PrivateKey) -> str:
    public = private.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        der = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode('ascii')}"
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode('ascii')}"


@functools.lru_cache(maxsize=8)
def _parse_private_key(pem: bytes, label: str) -> PrivateKey:
    """Load once per key: RSA loading checks the key, which is slow."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise DkimError(f"DKIM key {label} is encrypted; store it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise DkimError(f"DKIM key {label} is not a PEM private key") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < RSA_MIN_SIGNING_BITS:
            raise DkimError(
                f"DKIM key {label} is too short: RSA {key.key_size} bits, "
                f"at least {RSA_MIN_SIGNING_BITS} needed"
            )
        if key.key_size > RSA_MAX_BITS:
            raise DkimError(f"DKIM key {label} is too long: RSA over {RSA_MAX_BITS} bits")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise DkimError(f"DKIM key {label} has an unsupported type: use RSA or Ed25519")


# -- signing --------------------------------------------------------------------


def sign(
    message: bytes,
    key: DkimKey,
    *,
    headers: Sequence[bytes] = DEFAULT_SIGNED_HEADERS,
    now: datetime | None = None,
) -> bytes:
    """Return the ``DKIM-Signature`` field (folded, CRLF-terminated) to prepend.

    relaxed/relaxed survives the re-folding and whitespace changes relays do.
    Each name in ``headers`` is signed once more than it occurs (an absent one
    once), so no relay can add a second From, Subject, To... without breaking
    the signature. The message itself is not changed.
    """
    private = _parse_private_key(key.private_key_pem, record_name(key))
    algorithm = (
        b"ed25519-sha256" if isinstance(private, ed25519.Ed25519PrivateKey) else b"rsa-sha256"
    )
    try:
        fields, body = _parse_message(message)
    except ValueError:
        raise ValueError("cannot DKIM-sign: the message header is malformed") from None
    present = [name.lower() for name, _ in fields]
    if present.count(b"from") != 1:
        raise ValueError("cannot DKIM-sign: the message needs exactly one From field")
    include: list[bytes] = []
    for raw in dict.fromkeys(name.lower() for name in headers):
        if not _FIELD_NAME.fullmatch(raw) or raw in _NEVER_SIGN:
            raise ValueError(f"cannot DKIM-sign the field name {raw!r}")
        include.extend([raw] * (present.count(raw) + 1))
    if b"from" not in include:
        raise ValueError("cannot DKIM-sign without signing From (RFC 6376 §5.4)")

    policy = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body_hash = hashlib.sha256(policy.canonicalize_body(body)).digest()
    timestamp = int(now.timestamp() if now is not None else time.time())
    lines = [
        b"DKIM-Signature: v=1; a=" + algorithm + b"; c=relaxed/relaxed;",
        b" d=" + key.domain.encode("ascii") + b"; s=" + key.selector.encode("ascii") + b";",
        b" t=" + str(timestamp).encode("ascii") + b";",
    ]
    current = b" h="
    for index, name in enumerate(include):
        piece = name + (b":" if index < len(include) - 1 else b";")
        if len(current) + len(piece) > 78 and current != b" h=":
            lines.append(current)
            current = b" "
        current += piece
    lines.append(current)
    lines.append(b" bh=" + base64.b64encode(body_hash) + b";")
    prefix = _CRLF.join(lines) + _CRLF + b" b="
    name, value = prefix.split(b":", 1)
    digest = _header_digest(policy, fields, include, (name, value))
    if isinstance(private, ed25519.Ed25519PrivateKey):
        signature = private.sign(digest)
    else:
        signature = private.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    encoded = base64.b64encode(signature)
    chunks = [encoded[i : i + 72] for i in range(0, len(encoded), 72)]
    return prefix + (_CRLF + b" ").join(chunks) + _CRLF


# -- verification ---------------------------------------------------------------


def dns_txt_lookup(name: bytes, *, timeout: float = DNS_TIMEOUT) -> bytes | None:
    """The default key lookup (dnspython): ``None`` if no record, raises if DNS failed.

    SERVFAIL and timeouts raise (temperror) rather than answer ``None`` as
    dkimpy's lookup does: a resolver outage must not read as a revoked key.
    """
    try:
        answer = resolver.resolve(name.decode("ascii"), "TXT", lifetime=timeout, search=False)
    except (resolver.NXDOMAIN, resolver.NoAnswer):
        return None
    for rdata in answer:
        return b"".join(cast("tuple[bytes, ...]", rdata.strings))
    return None


def verify(
    message: bytes,
    *,
    dns: DnsLookup | None = None,
    timeout: float = DNS_TIMEOUT,
    max_size: int = MAX_VERIFY_SIZE,
    max_signatures: int = MAX_SIGNATURES,
    now: datetime | None = None,
) -> tuple[DkimResult, ...]:
    """Check the topmost ``max_signatures`` signatures; never raises.

    Returns one result per checked signature, in header order, or a single
    ``none`` when the message is unsigned or over ``max_size``. ``dns`` is
    called with ``<s>._domainkey.<d>`` (no trailing dot): a missing record
    (``None``) is permerror "no key" (RFC 6376 §6.1.2), an exception is
    temperror. The default lookup blocks up to ``timeout``: call from a thread.
    """
    if len(message) > max_size:
        return (DkimResult("none", reason="too large"),)
    end = _HEADER_END.search(message)
    head = message[: end.start() + 1] if end else message
    if head.startswith((b"\n", b"\r\n")) or not _SIGNATURE_LINE.search(head):
        return (DkimResult("none"),)
    try:
        fields, body = _parse_message(message)
    except ValueError:
        return (DkimResult("permerror", reason="malformed header"),)
    if len(fields) > MAX_HEADER_FIELDS:
        return (DkimResult("permerror", reason="too many header fields"),)
    signatures = [f for f in fields if f[0].lower() == b"dkim-signature"][:max_signatures]
    if not signatures:
        return (DkimResult("none"),)
    lookup = dns if dns is not None else functools.partial(dns_txt_lookup, timeout=timeout)
    checker = _Checker(
        fields, body, lookup, int(now.timestamp() if now is not None else time.time())
    )
    return tuple(checker.check(signature) for signature in signatures)


class _Checker:
    """Checks the signatures of one message, canonicalising its parts at most once each."""

    def __init__(
        self, fields: list[tuple[bytes, bytes]], body: bytes, dns: DnsLookup, now: int
    ) -> None:
        self.fields = fields
        self.body = body
        self.dns = dns
        self.now = now
        self.bodies: dict[bytes, bytes] = {}

    def check(self, signature: tuple[bytes, bytes]) -> DkimResult:
        domain: str | None = None
        selector: str | None = None
        try:
            tags = _tags(signature[1])
            if tags is None:
                return DkimResult("permerror", reason="malformed signature")
            domain = _domain_tag(tags.get(b"d"))
            selector = _domain_tag(tags.get(b"s"))
            outcome, reason = self._check(signature, tags, domain, selector)
        except Exception:  # dkimpy on hostile bytes: whatever slipped through is the sender's
            outcome, reason = "permerror", "malformed signature"
        return DkimResult(outcome, domain, selector, reason)

    def _check(
        self,
        signature: tuple[bytes, bytes],
        tags: dict[bytes, bytes],
        domain: str | None,
        selector: str | None,
    ) -> tuple[Result, str | None]:
        for tag in _MANDATORY:
            if tag not in tags:
                return "permerror", f"missing {tag.decode()}= tag"
        if tags[b"v"] != b"1":
            return "permerror", "unsupported version"
        if domain is None:
            return "permerror", "invalid d= tag"
        if selector is None:
            return "permerror", "invalid s= tag"
        if tags[b"a"] == b"rsa-sha1":
            return "permerror", "rsa-sha1 not accepted"
        kind = _ALGORITHMS.get(tags[b"a"])
        if kind is None:
            return "permerror", "unknown algorithm"
        try:
            policy = CanonicalizationPolicy.from_c_value(tags.get(b"c", b"simple/simple"))
        except Exception:
            return "permerror", "invalid c= tag"
        names = [n.lower() for n in _H_SPLIT.split(tags[b"h"].strip())]
        if len(names) > MAX_SIGNED_NAMES:
            return "permerror", "too many signed fields"
        if not all(_FIELD_NAME.fullmatch(n) for n in names):
            return "permerror", "invalid h= tag"
        if b"from" not in names:
            return "permerror", "From not signed"
        if b"i" in tags and not _identity_in(tags[b"i"], domain):
            return "permerror", "i= not within d="
        if b"q" in tags and b"dns/txt" not in _H_SPLIT.split(tags[b"q"]):
            return "permerror", "unsupported q= tag"
        problem = self._times(tags)
        if problem is not None:
            return "permerror", problem
        claimed_body = _base64(tags[b"bh"])
        claimed = _base64(tags[b"b"])
        if claimed_body is None:
            return "permerror", "invalid bh= tag"
        if claimed is None:
            return "permerror", "invalid b= tag"

        body = self._body(policy)
        if b"l" in tags:
            if not _DIGITS.fullmatch(tags[b"l"]):
                return "permerror", "invalid l= tag"
            length = int(tags[b"l"])
            if length > len(body):
                return "permerror", "l= exceeds body"
            body = body[:length]
        if not hmac.compare_digest(hashlib.sha256(body).digest(), claimed_body):
            return "fail", "body hash mismatch"

        name = f"{selector}._domainkey.{domain}"
        if len(name) > 253:
            return "permerror", "key name too long"
        try:
            record = self.dns(name.encode("ascii"))
        except Exception:
            return "temperror", "key lookup failed"
        if record is None:
            return "permerror", "no key"
        public, problem = _public_key(record, kind, tags, domain)
        if public is None:
            return "permerror", problem

        # RFC 6376 §8.15 workaround shared with dkimpy: one more From than h=
        # lists, so a second, prepended From breaks the signature.
        digest = _header_digest(policy, self.fields, [*names, b"from"], signature)
        try:
            if isinstance(public, ed25519.Ed25519PublicKey):
                public.verify(claimed, digest)
            else:
                public.verify(claimed, digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return "fail", "signature mismatch"
        return "pass", None

    def _times(self, tags: dict[bytes, bytes]) -> str | None:
        signed = expires = None
        if b"t" in tags:
            if not _DIGITS.fullmatch(tags[b"t"]):
                return "invalid t= tag"
            signed = int(tags[b"t"])
            if signed > self.now + CLOCK_SLOP:
                return "signed in the future"
        if b"x" in tags:
            if not _DIGITS.fullmatch(tags[b"x"]):
                return "invalid x= tag"
            expires = int(tags[b"x"])
            if signed is not None and expires < signed:
                return "x= before t="
            if expires + CLOCK_SLOP < self.now:
                return "signature expired"
        return None

    def _body(self, policy: Any) -> bytes:
        algorithm = cast(bytes, policy.body_algorithm.name)
        if algorithm not in self.bodies:
            self.bodies[algorithm] = cast(bytes, policy.canonicalize_body(self.body))
        return self.bodies[algorithm]


def _public_key(
    record: bytes, kind: KeyKind, tags: dict[bytes, bytes], domain: str
) -> tuple[PublicKey | None, str]:
    """Parse a key record (RFC 6376 §3.6.1) for a signature of ``kind``."""
    key_tags = _tags(record)
    if key_tags is None:
        return None, "invalid key record"
    if key_tags.get(b"v", b"DKIM1") != b"DKIM1":
        return None, "invalid key record"
    if b"h" in key_tags and b"sha256" not in _H_SPLIT.split(key_tags[b"h"]):
        return None, "key does not allow sha256"
    if b"s" in key_tags and not {b"*", b"email"} & set(_H_SPLIT.split(key_tags[b"s"])):
        return None, "key not for email"
    identity_host = tags.get(b"i", b"@").rpartition(b"@")[2].lower()
    strict = b"s" in _H_SPLIT.split(key_tags.get(b"t", b""))
    if strict and identity_host not in (b"", domain.encode("ascii")):
        return None, "i= must equal d= for this key"
    if key_tags.get(b"k", b"rsa").lower() != kind.encode("ascii"):
        return None, "key type mismatch"
    if not key_tags.get(b"p"):
        return None, "key revoked"
    raw = _base64(key_tags[b"p"])
    if raw is None:
        return None, "invalid key"
    if kind == "ed25519":
        try:
            return ed25519.Ed25519PublicKey.from_public_bytes(raw), ""
        except ValueError:
            return None, "invalid key"
    public = _rsa_public_key(raw)
    if public is None:
        return None, "invalid key"
    if public.key_size < RSA_MIN_VERIFY_BITS:
        return None, "key too small"
    if public.key_size > RSA_MAX_BITS:
        return None, "key too large"
    return public, ""


def _rsa_public_key(der: bytes) -> rsa.RSAPublicKey | None:
    """SubjectPublicKeyInfo per RFC 6376, or the bare RSAPublicKey some publish."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        armoured = (
            b"-----BEGIN RSA PUBLIC KEY-----\n"
            + base64.encodebytes(der)
            + b"-----END RSA PUBLIC KEY-----\n"
        )
        try:
            key = serialization.load_pem_public_key(armoured)
        except (ValueError, UnsupportedAlgorithm):
            return None
    return key if isinstance(key, rsa.RSAPublicKey) else None


# -- Authentication-Results -----------------------------------------------------


def authentication_results(results: Sequence[DkimResult], authserv_id: str) -> bytes:
    """The RFC 8601 field (CRLF-terminated) for the MX to prepend.

    One line when it fits in 78 characters, otherwise one result per line. No
    results means ``dkim=none``. Values that are not valid host names are left
    out rather than quoted, so nothing a sender chose can reshape the field.
    """
    if not _valid_domain(authserv_id.lower()):
        raise DkimError(f"invalid authserv-id {authserv_id!r}: use this host's name")
    parts = [_resinfo(r) for r in results] or [b"dkim=none"]
    head = b"Authentication-Results: " + authserv_id.encode("ascii")
    line = head + b"; " + b"; ".join(parts)
    if len(line) > 78 and len(parts) > 1:
        line = head + b";" + b";".join(_CRLF + b" " + part for part in parts)
    return line + _CRLF


def _resinfo(result: DkimResult) -> bytes:
    if result.result not in ("none", "pass", "fail", "temperror", "permerror"):
        raise ValueError(f"not a DKIM result: {result.result!r}")
    words = [f"dkim={result.result}"]
    if result.reason and _REASON_CHARS.fullmatch(result.reason):
        escaped = result.reason.replace("\\", "\\\\").replace('"', '\\"')
        words.append(f'reason="{escaped}"')
    if result.domain and _valid_domain(result.domain):
        words.append(f"header.d={result.domain}")
    if result.selector and _valid_domain(result.selector):
        words.append(f"header.s={result.selector}")
    return " ".join(words).encode("ascii")


# -- helpers --------------------------------------------------------------------


def _valid_domain(name: str) -> bool:
    return len(name) <= 253 and _DOMAIN.fullmatch(name) is not None


def _domain_tag(value: bytes | None) -> str | None:
    """A d=/s= value fit for DNS and for a header, lower-cased, else ``None``."""
    if value is None:
        return None
    try:
        text = value.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    return text if _valid_domain(text) else None


def _identity_in(identity: bytes, domain: str) -> bool:
    """``i=`` must be ``[local]@d`` or ``[local]@sub.d`` (RFC 6376 §3.5)."""
    if b"@" not in identity:
        return False
    host = identity.rpartition(b"@")[2].lower()
    target = domain.encode("ascii")
    return host == target or host.endswith(b"." + target)


def _tags(value: bytes) -> dict[bytes, bytes] | None:
    try:
        return cast("dict[bytes, bytes]", parse_tag_value(value))
    except Exception:
        return None


def _base64(value: bytes) -> bytes | None:
    compact = _WSP.sub(b"", value)
    if not compact or _NOT_BASE64.search(compact):
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except binascii.Error:
        return None


def _parse_message(message: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """dkimpy's header/body split (LF or CRLF in, CRLF out); ``ValueError`` if malformed."""
    try:
        fields, body = dkim.rfc822_parse(message)
    except Exception:
        raise ValueError("malformed message header") from None
    return [(bytes(name), bytes(value)) for name, value in fields], bytes(body)


def _header_digest(
    policy: Any,
    fields: list[tuple[bytes, bytes]],
    names: list[bytes],
    signature: tuple[bytes, bytes],
) -> bytes:
    """SHA-256 of the signed fields then the signature field without its ``b=`` value."""
    hasher = hashlib.sha256()
    dkim.hash_headers(
        hasher,
        policy,
        policy.canonicalize_headers(fields),
        names,
        signature,
        {},  # the parsed tags: unused by dkimpy
    )
    return hasher.digest()
