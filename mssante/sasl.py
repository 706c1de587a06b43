"""SASL server mechanisms, sans-IO: decoded bytes in, challenges or credentials out.

SMTP submission (RFC 4954) and IMAP (RFC 3501 AUTHENTICATE, RFC 4959 SASL-IR)
share these exchanges, so the parsing of hostile client data lives in one place
and is fuzzed once. The protocol layer moves wire lines through
:func:`decode_wire` / :func:`encode_wire`; this module never touches sockets,
the database or a token verifier: it only says *who claims to be whom*, and the
caller checks the claim (Argon2 hash, certificate binding, :mod:`mssante.oauth`).

Use::

    exchange = start(mechanism, initial_response)   # initial: decoded bytes or None
    result = exchange.step(None)                     # the first step takes no data
    while isinstance(result, Challenge):
        send(encode_wire(result.data)); result = exchange.step(decode_wire(read()))
    # result is PasswordCredentials | ExternalCredentials | BearerCredentials

A rejected bearer token may be reported the RFC 7628 way: send
``exchange.fail_challenge(bearer_error(...))``, read one more response, and
``exchange.step(response)`` then always raises ``SaslError("authentication
failed")``, the terminal marker (so every failure path is one ``except``).

Every failure is a :class:`SaslError` whose message is fixed text: it never
quotes client data, so it can be logged and never leaks a password or token.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from typing import Final, TypeAlias

__all__ = [
    "MAX_IDENTITY",
    "MAX_RESPONSE",
    "MECHANISMS",
    "BearerCredentials",
    "Challenge",
    "Credentials",
    "ExternalCredentials",
    "PasswordCredentials",
    "SaslCancelled",
    "SaslError",
    "SaslExchange",
    "advertised",
    "bearer_error",
    "decode_wire",
    "encode_wire",
    "start",
]

MECHANISMS: Final[tuple[str, ...]] = ("EXTERNAL", "OAUTHBEARER", "XOAUTH2", "PLAIN", "LOGIN")
MAX_RESPONSE: Final = 16 * 1024
"""Default cap on one decoded client response: room for long JWTs, not for abuse."""
MAX_IDENTITY: Final = 1024
"""Cap on an identity in bytes (RFC 4616 asks for at least 255; addresses fit in 320)."""

_MAX_KV_PAIRS: Final = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BEARER = re.compile(rb"(?i:bearer) +([A-Za-z0-9\-._~+/]+=*)")  # RFC 6750 b64token
_KEY = re.compile(rb"[A-Za-z]+")
_VALUE = re.compile(rb"[\x21-\x7e \t\r\n]*")  # RFC 7628: VCHAR / SP / HTAB / CR / LF
_SASLNAME = re.compile(rb"(?:[^=,]|=2C|=3D)+")  # RFC 5801 escapes "," and "="
_PORT = re.compile(rb"[0-9]{1,5}")
_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class SaslError(Exception):
    """The exchange failed; ``str()`` is fixed text, safe to log and to show."""


class SaslCancelled(SaslError):
    """The client cancelled the exchange with ``*`` (RFC 4954 §4, RFC 3501 §6.2.2)."""


@dataclass(frozen=True)
class Challenge:
    """Raw challenge bytes; the protocol layer base64-encodes them for the wire."""

    data: bytes


@dataclass(frozen=True)
class PasswordCredentials:
    """PLAIN or LOGIN: an identity and a password to check against the stored hash.

    The password is passed verbatim (no SASLprep): it must be compared the way
    it was hashed. It is left out of ``repr`` so a stray log line cannot show it.
    """

    authcid: str
    authzid: str | None
    password: str = field(repr=False)


@dataclass(frozen=True)
class ExternalCredentials:
    """EXTERNAL: the identity is the TLS client certificate; the client may name an authzid."""

    authzid: str | None


@dataclass(frozen=True)
class BearerCredentials:
    """XOAUTH2 or OAUTHBEARER: an access token to verify, and the user the client named.

    ``user`` is XOAUTH2's ``user=`` or OAUTHBEARER's GS2 ``a=`` authzid (optional there).
    """

    user: str | None
    token: str = field(repr=False)
    mechanism: str


Credentials: TypeAlias = PasswordCredentials | ExternalCredentials | BearerCredentials


# -- wire helpers -------------------------------------------------------------


def decode_wire(line: bytes, *, max_size: int = MAX_RESPONSE) -> bytes:
    """One client response line (CRLF optional) to bytes.

    ``=`` is the empty initial response (RFC 4954, RFC 4959), ``*`` cancels.
    Padding is required and nothing but the base64 alphabet is accepted.
    """
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    if line == b"*":
        raise SaslCancelled("authentication cancelled by the client")
    if line == b"=":
        return b""
    if len(line) > (max_size + 2) // 3 * 4:
        raise SaslError("response too long")
    if len(line) % 4 or not _B64.fullmatch(line):
        raise SaslError("response is not valid base64")
    try:
        data = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("response is not valid base64") from None
    if len(data) > max_size:
        raise SaslError("response too long")
    return data


def encode_wire(data: bytes) -> bytes:
    """Challenge bytes to a wire line (no CRLF); an empty challenge is an empty line."""
    return base64.b64encode(data)


def bearer_error(
    *,
    status: str = "invalid_token",
    scope: str | None = None,
    openid_configuration: str | None = None,
) -> bytes:
    """The RFC 7628 §3.2.2 JSON error a server sends as its failure challenge."""
    body: dict[str, str] = {"status": status}
    if scope is not None:
        body["scope"] = scope
    if openid_configuration is not None:
        body["openid-configuration"] = openid_configuration
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def advertised(
    *, tls: bool, password_enabled: bool, external_available: bool, oauth_enabled: bool
) -> list[str]:
    """Mechanisms to offer, strongest first; none before TLS (no plaintext auth, ever)."""
    if not tls:
        return []
    offer: list[str] = []
    if external_available:
        offer.append("EXTERNAL")
    if oauth_enabled:
        offer += ["OAUTHBEARER", "XOAUTH2"]
    if password_enabled:
        offer += ["PLAIN", "LOGIN"]
    return offer


def start(
    mechanism: str, initial_response: bytes | None, *, max_size: int = MAX_RESPONSE
) -> SaslExchange:
    """Begin an exchange; ``initial_response`` is decoded (``b""`` for ``=``, None if absent)."""
    factory = _FACTORIES.get(mechanism.upper())
    if factory is None:
        raise SaslError("unsupported SASL mechanism")
    return factory(initial_response, max_size)


# -- field parsing ------------------------------------------------------------


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"{what} is not valid UTF-8") from None


def _identity(raw: bytes, what: str) -> str:
    if not raw:
        raise SaslError(f"empty {what}")
    if len(raw) > MAX_IDENTITY:
        raise SaslError(f"{what} too long")
    value = _text(raw, what)
    if _CONTROL.search(value):
        raise SaslError(f"{what} contains control characters")
    return value


def _optional_identity(raw: bytes, what: str) -> str | None:
    return _identity(raw, what) if raw else None


def _password(raw: bytes) -> str:
    if not raw:
        raise SaslError("empty password")
    if b"\x00" in raw:
        raise SaslError("password contains NUL")
    return _text(raw, "password")


def _bearer_token(raw: bytes) -> str:
    match = _BEARER.fullmatch(raw)
    if match is None:
        raise SaslError("auth is not 'Bearer <token>'")
    return match.group(1).decode("ascii")


def _pairs(fields: list[bytes], mechanism: str) -> dict[str, bytes]:
    if len(fields) > _MAX_KV_PAIRS:
        raise SaslError(f"{mechanism} response has too many fields")
    pairs: dict[str, bytes] = {}
    for item in fields:
        key, sep, value = item.partition(b"=")
        if not sep or not _KEY.fullmatch(key):
            raise SaslError(f"{mechanism} response has a malformed field")
        if not _VALUE.fullmatch(value):
            raise SaslError(f"{mechanism} field value contains forbidden characters")
        name = key.decode("ascii")
        if name in pairs:
            raise SaslError(f"{mechanism} response repeats a field")
        pairs[name] = value
    return pairs


# -- exchanges ----------------------------------------------------------------


class SaslExchange:
    """One server-side exchange: call :meth:`step` with ``None`` first, then each response.

    After credentials or an error the exchange is over and further steps raise
    :class:`SaslError`, except the bearer mechanisms' :meth:`fail_challenge` dance.
    """

    mechanism: str = ""
    _dummy: bytes | None = None  # the client's answer to a failure challenge, if any

    def __init__(self, initial_response: bytes | None, max_size: int) -> None:
        self._initial = initial_response
        self._max_size = max_size
        self._phase = "new"  # new, running, credentials, failing, over

    @property
    def done(self) -> bool:
        """True once no further :meth:`step` can produce credentials."""
        return self._phase in ("credentials", "over")

    def step(self, client_data: bytes | None) -> Challenge | Credentials:
        """Consume one decoded client response (``None`` only on the first call)."""
        phase = self._phase
        if phase == "failing":
            self._phase = "over"
            if client_data == self._dummy:
                raise SaslError("authentication failed")
            raise SaslError("unexpected response to the error challenge")
        if phase in ("credentials", "over"):
            self._phase = "over"
            raise SaslError("the exchange is already over")
        if phase == "new":
            if client_data is not None:
                self._phase = "over"
                raise SaslError("the first step takes no client data")
            self._phase = "running"
            if self._initial is None:
                return self._opening()
            data = self._initial
        else:
            if client_data is None:
                self._phase = "over"
                raise SaslError("a client response is required")
            data = client_data
        if len(data) > self._max_size:
            self._phase = "over"
            raise SaslError("response too long")
        try:
            result = self._respond(data)
        except SaslError:
            self._phase = "over"
            raise
        if not isinstance(result, Challenge):
            self._phase = "credentials"
        return result

    def fail_challenge(self, error_json: bytes) -> Challenge:
        """After a rejected token: the error challenge to send (XOAUTH2, OAUTHBEARER).

        The next :meth:`step` expects the client's dummy response and raises
        ``SaslError("authentication failed")`` either way.
        """
        if self._dummy is None or self._phase != "credentials":
            self._phase = "over"
            raise SaslError("no token to reject in this exchange")
        self._phase = "failing"
        return Challenge(error_json)

    def _opening(self) -> Challenge:
        return Challenge(b"")

    def _respond(self, data: bytes) -> Challenge | Credentials:
        raise NotImplementedError


class _Plain(SaslExchange):
    """RFC 4616: ``[authzid] NUL authcid NUL passwd`` in one message."""

    mechanism = "PLAIN"

    def _respond(self, data: bytes) -> Challenge | Credentials:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            raise SaslError("PLAIN expects exactly authzid NUL authcid NUL password")
        authzid, authcid, password = parts
        return PasswordCredentials(
            authcid=_identity(authcid, "authentication identity"),
            authzid=_optional_identity(authzid, "authorization identity"),
            password=_password(password),
        )


class _Login(SaslExchange):
    """The obsolete LOGIN mechanism some clients still use; an initial response is the user."""

    mechanism = "LOGIN"

    def __init__(self, initial_response: bytes | None, max_size: int) -> None:
        super().__init__(initial_response, max_size)
        self._user: str | None = None

    def _opening(self) -> Challenge:
        return Challenge(b"Username:")

    def _respond(self, data: bytes) -> Challenge | Credentials:
        if self._user is None:
            if b"\x00" in data:
                raise SaslError("user name contains NUL")
            self._user = _identity(data, "user name")
            return Challenge(b"Password:")
        return PasswordCredentials(authcid=self._user, authzid=None, password=_password(data))


class _External(SaslExchange):
    """RFC 4422 appendix A: the message is an optional authzid, nothing else."""

    mechanism = "EXTERNAL"

    def _respond(self, data: bytes) -> Challenge | Credentials:
        return ExternalCredentials(authzid=_optional_identity(data, "authorization identity"))


class _XOAuth2(SaslExchange):
    """Google's XOAUTH2: ``user=U ^A auth=Bearer T ^A ^A``; error challenges get an empty reply."""

    mechanism = "XOAUTH2"
    _dummy = b""

    def _respond(self, data: bytes) -> Challenge | Credentials:
        if not data.endswith(b"\x01\x01"):
            raise SaslError("XOAUTH2 response is not terminated by two ^A")
        pairs = _pairs(data[:-2].split(b"\x01"), self.mechanism)
        if set(pairs) != {"user", "auth"}:
            raise SaslError("XOAUTH2 response must carry exactly user and auth")
        return BearerCredentials(
            user=_identity(pairs["user"], "user"),
            token=_bearer_token(pairs["auth"]),
            mechanism=self.mechanism,
        )


class _OAuthBearer(SaslExchange):
    """RFC 7628: GS2 header, then ^A-separated key=value pairs, ``auth`` required.

    Channel binding (``p=``) is refused: we never advertise OAUTHBEARER-PLUS.
    Unknown well-formed keys are ignored, as RFC 7628 leaves the key space open
    for registered extensions; their number is bounded.
    """

    mechanism = "OAUTHBEARER"
    _dummy = b"\x01"

    def _respond(self, data: bytes) -> Challenge | Credentials:
        gs2, sep, body = data.partition(b"\x01")
        if not sep:
            raise SaslError("OAUTHBEARER response has no GS2 header")
        authzid = self._gs2_authzid(gs2)
        if not body.endswith(b"\x01\x01"):
            raise SaslError("OAUTHBEARER response is not terminated by ^A")
        pairs = _pairs(body[:-2].split(b"\x01"), self.mechanism)
        if "auth" not in pairs:
            raise SaslError("OAUTHBEARER response has no auth field")
        if "host" in pairs and not pairs["host"]:
            raise SaslError("OAUTHBEARER host is empty")
        if "port" in pairs:
            port = pairs["port"]
            if not _PORT.fullmatch(port) or not 0 < int(port) < 65536:
                raise SaslError("OAUTHBEARER port is not a port number")
        return BearerCredentials(
            user=authzid, token=_bearer_token(pairs["auth"]), mechanism=self.mechanism
        )

    @staticmethod
    def _gs2_authzid(gs2: bytes) -> str | None:
        if not gs2.endswith(b","):
            raise SaslError("malformed GS2 header")
        flag, sep, authz = gs2[:-1].partition(b",")
        if not sep:
            raise SaslError("malformed GS2 header")
        if flag.startswith(b"p="):
            raise SaslError("channel binding is not supported")
        if flag not in (b"n", b"y"):
            raise SaslError("malformed GS2 header")
        if not authz:
            return None
        if not authz.startswith(b"a=") or not _SASLNAME.fullmatch(authz[2:]):
            raise SaslError("malformed GS2 authzid")
        name = authz[2:].replace(b"=2C", b",").replace(b"=3D", b"=")
        return _identity(name, "authorization identity")


_FACTORIES: Final[dict[str, type[SaslExchange]]] = {
    cls.mechanism: cls for cls in (_External, _OAuthBearer, _XOAuth2, _Plain, _Login)
}
assert set(_FACTORIES) == set(MECHANISMS)
