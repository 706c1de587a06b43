"""JWT access tokens (OAUTHBEARER, XOAUTH2) checked against the configured OpenID issuer.

People may authenticate with an access token from the health-sector identity
provider (Pro Santé Connect style) instead of a password. A token is accepted
only if it is signed by one of the issuer's published keys with an asymmetric
algorithm we allow, names our issuer and our audience, and is within its
validity window by the injected clock. Signature, issuer and audience checks
are PyJWT's; time checks are ours because PyJWT reads the system clock.

Keys come from a JWKS file (re-read when it changes) or an https URL (cached,
refreshed hourly and, at most every five minutes, when an unknown ``kid``
appears, so a key rotation is picked up without letting token spam hammer the
issuer). Keys are never taken from the token itself (``jku``, ``x5u``, ``jwk``
are ignored), symmetric and private JWKs are skipped, and ``alg`` must match
the key's type, so neither ``none`` nor HS256-with-the-public-key can pass.

:meth:`TokenVerifier.verify` may block on a download: from asyncio, call it
through ``asyncio.to_thread``. Tokens are never logged; :class:`TokenError`
carries only a short reason.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from jwt.types import Options

from mssante.clock import Clock
from mssante.errors import OperatorError

__all__ = [
    "ALLOWED_ALGORITHMS",
    "REASONS",
    "JwksError",
    "OAuthConfigError",
    "OAuthSettings",
    "TokenClaims",
    "TokenError",
    "TokenVerifier",
    "fetch_https",
]

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Asymmetric only: a public key must never double as an HMAC secret."""

REASONS: Final = (
    "expired",
    "bad signature",
    "wrong issuer",
    "wrong audience",
    "unknown key id",
    "not yet valid",
    "malformed",
    "algorithm not allowed",
    "keys unavailable",
)
"""Every :attr:`TokenError.reason`; only "keys unavailable" is temporary."""

MAX_TOKEN: Final = 16 * 1024
MAX_JWKS_BYTES: Final = 1024 * 1024
MAX_KEYS: Final = 100
MIN_RSA_BITS: Final = 2048
FETCH_TIMEOUT: Final = 10.0
REFETCH_INTERVAL: Final = 300.0
"""Least time between two downloads once keys are cached (unknown kid, refresh)."""
RETRY_INTERVAL: Final = 30.0
"""Least time between two downloads while no key could be loaded yet."""
MAX_KEYS_AGE: Final = 3600.0
"""Downloaded keys are refreshed after this, so a withdrawn key stops verifying."""
MAX_LEEWAY: Final = 600

_CURVES: Final = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
_PRIVATE_MEMBERS: Final = ("d", "p", "q", "dp", "dq", "qi", "k")


class OAuthConfigError(OperatorError):
    """The ``oauth`` settings cannot work (not https, no key source, unsafe algorithm)."""


class TokenError(Exception):
    """The token is refused; ``reason`` is one of :data:`REASONS`, safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def temporary(self) -> bool:
        """True when the token was not judged (the issuer's keys could not be loaded)."""
        return self.reason == "keys unavailable"


class JwksError(Exception):
    """A key set could not be read, downloaded or parsed (logged, never shown to clients).

    A custom ``fetch`` given to :class:`TokenVerifier` raises this (or ``OSError``).
    """


@dataclass(frozen=True)
class OAuthSettings:
    """Which issuer we trust, for which audience, and where its keys are published."""

    issuer: str
    audience: str
    jwks_file: Path | None = None
    jwks_url: str | None = None
    leeway_seconds: int = 30
    algorithms: tuple[str, ...] = ("RS256", "PS256", "ES256")

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise OAuthConfigError("oauth: issuer and audience are required")
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise OAuthConfigError("oauth: set exactly one of jwks_file and jwks_url")
        if self.jwks_url is not None:
            _require_https(self.jwks_url)
        if not self.algorithms:
            raise OAuthConfigError("oauth: algorithms is empty")
        unsafe = sorted(set(self.algorithms) - ALLOWED_ALGORITHMS)
        if unsafe:
            raise OAuthConfigError(
                f"oauth: algorithms {', '.join(unsafe)} not allowed "
                f"(choose among {', '.join(sorted(ALLOWED_ALGORITHMS))})"
            )
        if not 0 <= self.leeway_seconds <= MAX_LEEWAY:
            raise OAuthConfigError(f"oauth: leeway_seconds must be within 0..{MAX_LEEWAY}")


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says; ``raw`` lets the caller map custom claims (RPPS) to a BAL."""

    subject: str
    issuer: str
    audience: tuple[str, ...]
    expires_at: datetime
    email: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class _Key:
    kid: str | None
    alg: str | None
    public: Any  # a cryptography public key


def _require_https(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise OAuthConfigError("oauth: jwks_url must be an https:// URL")


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _fits(key: _Key, alg: str) -> bool:
    """Whether ``key`` may verify ``alg``: the JWK's own alg, then the key type and curve."""
    if key.alg is not None and key.alg != alg:
        return False
    if alg[:2] in ("RS", "PS"):
        return isinstance(key.public, rsa.RSAPublicKey)
    if alg in _CURVES:
        return isinstance(key.public, ec.EllipticCurvePublicKey) and (
            key.public.curve.name == _CURVES[alg]
        )
    if alg == "EdDSA":
        return isinstance(key.public, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)
    return False


def _parse_jwks(data: bytes) -> list[_Key]:
    """The usable public signing keys of a JWKS document; unusable entries are skipped."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise JwksError("not a JSON document") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise JwksError('no "keys" list')
    keys: list[_Key] = []
    for entry in entries[:MAX_KEYS]:
        key = _parse_jwk(entry)
        if key is not None:
            keys.append(key)
    if not keys:
        raise JwksError("no usable public signing key")
    return keys


def _parse_jwk(entry: object) -> _Key | None:
    if not isinstance(entry, dict):
        return None
    if entry.get("use", "sig") != "sig" or entry.get("kty") not in ("RSA", "EC", "OKP"):
        return None
    if any(member in entry for member in _PRIVATE_MEMBERS):
        return None  # private material has no business in a published set
    kid, alg = entry.get("kid"), entry.get("alg")
    if kid is not None and not isinstance(kid, str):
        return None
    if alg is not None and alg not in ALLOWED_ALGORITHMS:
        return None
    try:
        public = jwt.PyJWK(entry).key
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
    if isinstance(public, rsa.RSAPublicKey) and public.key_size < MIN_RSA_BITS:
        return None
    return _Key(kid=kid, alg=alg, public=public)


# -- key sources --------------------------------------------------------------


def _read_capped(path: Path) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise JwksError(f"larger than {MAX_JWKS_BYTES} bytes")
    return data


class _FileKeys:
    """A JWKS file, re-read when its mtime (or size, or inode) changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int, int] | None = None
        self._keys: list[_Key] = []
        self._lock = threading.Lock()

    def get(self, *, unknown_kid: bool) -> list[_Key]:
        with self._lock:
            try:
                st = os.stat(self._path)
            except OSError as exc:
                log.warning(
                    "oauth jwks unreadable",
                    extra={"fields": {"file": str(self._path), "error": exc.strerror}},
                )
                raise TokenError("keys unavailable") from None
            # ctime too: a chmod that makes the file readable again counts as a change.
            stamp = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
            if stamp != self._stamp:
                self._stamp = stamp  # a bad file is reported once, not on every token
                try:
                    self._keys = _parse_jwks(_read_capped(self._path))
                except (OSError, JwksError) as exc:
                    log.warning(
                        "oauth jwks rejected; keeping the previous keys",
                        extra={"fields": {"file": str(self._path), "error": str(exc)}},
                    )
            if not self._keys:
                raise TokenError("keys unavailable")
            return self._keys


class _UrlKeys:
    """An https JWKS, cached; downloads are rate-limited by the injected clock."""

    def __init__(self, url: str, clock: Clock, fetch: Callable[[str], bytes]) -> None:
        self._url = url
        self._clock = clock
        self._fetch = fetch
        self._keys: list[_Key] = []
        self._loaded_at: float | None = None
        self._tried_at: float | None = None
        self._lock = threading.Lock()

    def get(self, *, unknown_kid: bool) -> list[_Key]:
        with self._lock:
            now = self._clock.monotonic()
            stale = self._loaded_at is None or now - self._loaded_at >= MAX_KEYS_AGE
            interval = REFETCH_INTERVAL if self._keys else RETRY_INTERVAL
            may_try = self._tried_at is None or now - self._tried_at >= interval
            if (stale or unknown_kid) and may_try:
                self._tried_at = now
                try:
                    self._keys = _parse_jwks(self._fetch(self._url))
                    self._loaded_at = now
                except (JwksError, OSError) as exc:
                    log.warning(
                        "oauth jwks download failed",
                        extra={"fields": {"url": self._url, "error": str(exc)}},
                    )
            if not self._keys:
                raise TokenError("keys unavailable")
            return self._keys


class _HttpsOnlyRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme != "https":
            raise urllib.error.URLError("redirect away from https refused")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def fetch_https(
    url: str,
    *,
    timeout: float = FETCH_TIMEOUT,
    max_bytes: int = MAX_JWKS_BYTES,
    context: ssl.SSLContext | None = None,
) -> bytes:
    """Download ``url`` over https only (redirects included), bounded in size and total time."""
    _require_https(url)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=context or ssl.create_default_context()),
        _HttpsOnlyRedirect(),
    )
    request = urllib.request.Request(  # noqa: S310 (https only, checked above)
        url, headers={"Accept": "application/json", "User-Agent": "mssante-operator"}
    )
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    size = 0
    try:
        with opener.open(request, timeout=timeout) as response:
            while chunk := response.read(64 * 1024):
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise JwksError(f"larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise JwksError(f"took longer than {timeout:g} s")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise JwksError(f"cannot download: {reason}") from None
    return b"".join(chunks)


# -- the verifier ---------------------------------------------------------------


class TokenVerifier:
    """Checks access tokens for one issuer; thread-safe, keys cached across calls.

    ``fetch`` replaces the https download (tests, or a proxy-aware fetcher);
    ``ssl_context`` sets the trust anchors of the default download.
    """

    def __init__(
        self,
        settings: OAuthSettings,
        clock: Clock,
        *,
        fetch: Callable[[str], bytes] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._keys: _FileKeys | _UrlKeys
        if settings.jwks_file is not None:
            self._keys = _FileKeys(Path(settings.jwks_file))
        else:
            assert settings.jwks_url is not None
            _require_https(settings.jwks_url)

            def download(url: str) -> bytes:
                return fetch_https(url, context=ssl_context)

            self._keys = _UrlKeys(settings.jwks_url, clock, fetch or download)

    def verify(self, token: str) -> TokenClaims:
        """The token's claims, or :class:`TokenError` naming the first problem found."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            raise TokenError("malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self._settings.algorithms:
            raise TokenError("algorithm not allowed")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("malformed")
        key = self._key_for(kid, alg)
        payload = self._decode(token, key)
        return self._claims(payload)

    def _key_for(self, kid: str | None, alg: str) -> _Key:
        keys = self._keys.get(unknown_kid=False)
        if kid is None:
            # Without a kid there is no saying which key was meant: only a lone key will do.
            if len(keys) == 1:
                if not _fits(keys[0], alg):
                    raise TokenError("algorithm not allowed")
                return keys[0]
            raise TokenError("unknown key id")
        named = [k for k in keys if k.kid == kid]
        if not named:
            named = [k for k in self._keys.get(unknown_kid=True) if k.kid == kid]
        if not named:
            raise TokenError("unknown key id")
        for key in named:
            if _fits(key, alg):
                return key
        raise TokenError("algorithm not allowed")

    def _decode(self, token: str, key: _Key) -> dict[str, Any]:
        options: Options = {
            "require": ["exp", "iss", "aud", "sub"],
            "verify_signature": True,
            "verify_iss": True,
            "verify_aud": True,
            "verify_sub": True,
            # PyJWT reads the system clock: time claims are checked below, by ours.
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "enforce_minimum_key_length": True,
        }
        try:
            payload = jwt.decode(
                token,
                key.public,
                algorithms=list(self._settings.algorithms),
                options=options,
                audience=self._settings.audience,
                issuer=self._settings.issuer,
            )
        except jwt.InvalidSignatureError:
            raise TokenError("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("algorithm not allowed") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong audience") from None
        except jwt.PyJWTError:
            raise TokenError("malformed") from None
        if not isinstance(payload, dict):
            raise TokenError("malformed")
        self._check_times(payload)
        return payload

    def _check_times(self, payload: dict[str, Any]) -> None:
        now = self._clock.now().timestamp()
        leeway = self._settings.leeway_seconds
        for claim in ("exp", "nbf", "iat"):
            if claim in payload and not _number(payload[claim]):
                raise TokenError("malformed")
        if payload["exp"] <= now - leeway:
            raise TokenError("expired")
        for claim in ("nbf", "iat"):
            if claim in payload and payload[claim] > now + leeway:
                raise TokenError("not yet valid")

    def _claims(self, payload: dict[str, Any]) -> TokenClaims:
        subject = payload["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenError("malformed")
        aud = payload["aud"]
        audience = (aud,) if isinstance(aud, str) else tuple(a for a in aud if isinstance(a, str))
        try:
            expires_at = datetime.fromtimestamp(payload["exp"], UTC)
        except (OverflowError, OSError, ValueError):
            raise TokenError("malformed") from None
        email = payload.get("email")
        return TokenClaims(
            subject=subject,
            issuer=payload["iss"],
            audience=audience,
            expires_at=expires_at,
            email=email if isinstance(email, str) else None,
            raw=payload,
        )
