# covers: TS-4
"""JWT access-token verification with real keys: every refusal reason, rotation, alg confusion."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import itertools
import json
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from certs import CertificateAuthority, client_context, server_context
from mssante.clock import FakeClock
from mssante.oauth import (
    REASONS,
    JwksError,
    OAuthConfigError,
    OAuthSettings,
    TokenClaims,
    TokenError,
    TokenVerifier,
    fetch_https,
)

ISSUER = "https://auth.esante.gouv.fr/auth/realms/esante-wallet"
AUDIENCE = "mssante-operator-demo"
RPPS = "810001234567"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def rsa_key2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str | None, **extra: Any) -> dict[str, Any]:
    public = key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return data


_MTIMES = itertools.count(1_700_000_000, 10)


def write_jwks(path: Path, *keys: dict[str, Any], raw: bytes | None = None) -> None:
    """Atomic rewrite (a new inode), with a distinct mtime even on coarse clocks."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(raw if raw is not None else json.dumps({"keys": list(keys)}).encode())
    os.replace(tmp, path)
    stamp = next(_MTIMES)
    os.utime(path, (stamp, stamp))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [
            b64url(json.dumps(header).encode()),
            b64url(json.dumps(claims).encode()),
            b64url(signature),
        ]
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def jwks_path(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(rsa_key, "k1"), jwk(ec_key, "e1"), {"kty": "oct", "k": "c2VjcmV0"})
    return path


@pytest.fixture
def verifier(jwks_path: Path, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=jwks_path), clock)


@pytest.fixture
def mint(clock: FakeClock) -> Callable[..., str]:
    def make(
        key: Any,
        kid: str | None = "k1",
        alg: str = "RS256",
        drop: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        now = int(clock.now().timestamp())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": f"f:550B{RPPS}",
            "exp": now + 600,
            "iat": now,
            "nbf": now,
            "email": "dr.house@hopital.mssante.fr",
            "preferred_username": RPPS,
        }
        body.update(claims)
        for name in drop:
            body.pop(name)
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(body, key, algorithm=alg, headers=headers)

    return make


def reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as info:
        verifier.verify(token)
    assert info.value.reason in REASONS
    assert str(info.value) == info.value.reason
    return info.value.reason


# -- accepted tokens ------------------------------------------------------------


def test_valid_token_yields_claims(verifier, mint, rsa_key, clock):
    token = mint(rsa_key)
    claims = verifier.verify(token)
    assert isinstance(claims, TokenClaims)
    assert claims.subject == f"f:550B{RPPS}"
    assert claims.issuer == ISSUER
    assert claims.audience == (AUDIENCE,)
    assert claims.expires_at == clock.now() + timedelta(seconds=600)
    assert claims.expires_at.tzinfo is not None
    assert claims.email == "dr.house@hopital.mssante.fr"
    assert claims.raw["preferred_username"] == RPPS
    assert "preferred_username" not in repr(claims)


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_rsa_algorithms(verifier, mint, rsa_key, alg):
    assert verifier.verify(mint(rsa_key, alg=alg)).subject


def test_ec_token_and_audience_list(verifier, mint, ec_key):
    token = mint(ec_key, kid="e1", alg="ES256", aud=["other", AUDIENCE], email=None)
    claims = verifier.verify(token)
    assert claims.audience == ("other", AUDIENCE)
    assert claims.email is None


def test_eddsa_when_configured(tmp_path, clock, mint):
    key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(key, "ed"))
    settings = OAuthSettings(ISSUER, AUDIENCE, jwks_file=path, algorithms=("EdDSA",))
    assert TokenVerifier(settings, clock).verify(mint(key, kid="ed", alg="EdDSA")).subject


# -- every refusal reason ---------------------------------------------------------


def test_expired_with_leeway_by_the_injected_clock(verifier, mint, rsa_key, clock):
    token = mint(rsa_key)
    clock.advance(600 + 29)
    assert verifier.verify(token).subject  # within the 30 s leeway
    clock.advance(1)
    assert reason(verifier, token) == "expired"


def test_not_yet_valid(verifier, mint, rsa_key, clock):
    now = int(clock.now().timestamp())
    assert reason(verifier, mint(rsa_key, nbf=now + 31)) == "not yet valid"
    assert reason(verifier, mint(rsa_key, iat=now + 31)) == "not yet valid"
    assert verifier.verify(mint(rsa_key, nbf=now + 30, iat=now + 30)).subject
    early = mint(rsa_key, nbf=now + 120)
    clock.advance(100)
    assert verifier.verify(early).subject


def test_bad_signature(verifier, mint, rsa_key, rsa_key2):
    assert reason(verifier, mint(rsa_key2, kid="k1")) == "bad signature"
    header, payload, signature = mint(rsa_key).split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["sub"] = "someone-else"
    tampered = ".".join([header, b64url(json.dumps(forged).encode()), signature])
    assert reason(verifier, tampered) == "bad signature"


def test_wrong_issuer_and_audience(verifier, mint, rsa_key):
    assert reason(verifier, mint(rsa_key, iss="https://evil.example/")) == "wrong issuer"
    assert reason(verifier, mint(rsa_key, iss=ISSUER + "/")) == "wrong issuer"
    assert reason(verifier, mint(rsa_key, aud="another-service")) == "wrong audience"
    assert reason(verifier, mint(rsa_key, aud=["a", "b"])) == "wrong audience"


def test_unknown_key_id(verifier, mint, rsa_key):
    assert reason(verifier, mint(rsa_key, kid="nope")) == "unknown key id"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abc",
        "a.b.c",
        "a.b",
        "x" * 20_000,
        unsigned({"alg": "RS256", "kid": 7}, {"sub": "x"}),
    ],
)
def test_malformed_tokens(verifier, token):
    assert reason(verifier, token) == "malformed"


@pytest.mark.parametrize("claim", ["exp", "iss", "aud", "sub"])
def test_required_claims(verifier, mint, rsa_key, claim):
    assert reason(verifier, mint(rsa_key, drop=(claim,))) == "malformed"


@pytest.mark.parametrize(
    "claims",
    [{"exp": "tomorrow"}, {"nbf": "now"}, {"iat": True}, {"exp": 1e300}, {"sub": ""}, {"sub": 42}],
)
def test_badly_typed_claims(verifier, mint, rsa_key, claims):
    assert reason(verifier, mint(rsa_key, **claims)) == "malformed"


def test_alg_none_is_refused(verifier, mint, rsa_key):
    body = jwt.decode(mint(rsa_key), options={"verify_signature": False})
    assert reason(verifier, unsigned({"alg": "none", "kid": "k1"}, body)) == "algorithm not allowed"
    assert reason(verifier, unsigned({"alg": "None"}, body)) == "algorithm not allowed"
    assert reason(verifier, unsigned({"kid": "k1"}, body)) == "algorithm not allowed"


def test_hs256_signed_with_the_public_key_is_refused(verifier, mint, rsa_key):
    """The classic confusion: the RSA public key PEM used as an HMAC secret."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    body = jwt.decode(mint(rsa_key), options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    signing_input = ".".join(unsigned(header, body).split(".")[:2])
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    assert reason(verifier, f"{signing_input}.{b64url(mac)}") == "algorithm not allowed"


def test_symmetric_jwk_is_never_used(tmp_path, clock, mint, rsa_key):
    path = tmp_path / "jwks.json"
    write_jwks(path, {"kty": "oct", "kid": "s", "k": b64url(b"shared-secret"), "alg": "HS256"})
    verifier = TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), clock)
    token = jwt.encode({"sub": "x"}, b"shared-secret" * 3, algorithm="HS256", headers={"kid": "s"})
    assert reason(verifier, token) == "algorithm not allowed"
    assert reason(verifier, mint(rsa_key, kid="s")) == "keys unavailable"  # no usable key


def test_algorithm_outside_the_configured_list(verifier, mint, rsa_key):
    assert reason(verifier, mint(rsa_key, alg="RS512")) == "algorithm not allowed"


def test_alg_must_match_the_key_type_and_the_jwk_alg(tmp_path, clock, mint, rsa_key, ec_key):
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(rsa_key, "k1", alg="PS256"), jwk(ec_key, "e1"))
    verifier = TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), clock)
    assert verifier.verify(mint(rsa_key, alg="PS256")).subject
    assert reason(verifier, mint(rsa_key, alg="RS256")) == "algorithm not allowed"
    assert reason(verifier, mint(ec_key, kid="k1", alg="ES256")) == "algorithm not allowed"
    assert reason(verifier, mint(rsa_key, kid="e1", alg="RS256")) == "algorithm not allowed"


def test_key_id_is_required_unless_the_set_has_one_key(tmp_path, clock, mint, rsa_key, ec_key):
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(rsa_key, "k1"))
    verifier = TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), clock)
    assert verifier.verify(mint(rsa_key, kid=None)).subject
    write_jwks(path, jwk(rsa_key, "k1"), jwk(ec_key, "e1"))
    assert reason(verifier, mint(rsa_key, kid=None)) == "unknown key id"


# -- key sources ------------------------------------------------------------------


def test_kid_rotation_by_rewriting_the_file(tmp_path, clock, mint, rsa_key, rsa_key2):
    path = tmp_path / "jwks.json"
    write_jwks(path, jwk(rsa_key, "2025"))
    verifier = TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), clock)
    old, new = mint(rsa_key, kid="2025"), mint(rsa_key2, kid="2026")
    assert verifier.verify(old).subject
    assert reason(verifier, new) == "unknown key id"
    write_jwks(path, jwk(rsa_key, "2025"), jwk(rsa_key2, "2026"))
    assert verifier.verify(old).subject and verifier.verify(new).subject
    write_jwks(path, jwk(rsa_key2, "2026"))
    assert reason(verifier, old) == "unknown key id"
    assert verifier.verify(new).subject


def test_missing_or_broken_file(tmp_path, clock, mint, rsa_key):
    path = tmp_path / "jwks.json"
    verifier = TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), clock)
    with pytest.raises(TokenError) as info:
        verifier.verify(mint(rsa_key))
    assert info.value.reason == "keys unavailable" and info.value.temporary
    write_jwks(path, raw=b"{not json")
    assert reason(verifier, mint(rsa_key)) == "keys unavailable"
    write_jwks(path, jwk(rsa_key, "k1"))
    assert verifier.verify(mint(rsa_key)).subject
    write_jwks(path, raw=b'{"keys": "nope"}')  # a bad rewrite keeps the last good keys
    assert verifier.verify(mint(rsa_key)).subject


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_unusable_jwks_entries_are_skipped(tmp_path, clock, mint, rsa_key):
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = RSAAlgorithm.to_jwk(rsa_key, as_dict=True) | {"kid": "priv"}
    path = tmp_path / "jwks.json"
    write_jwks(
        path,
        jwk(weak, "weak"),
        private,
        jwk(rsa_key, "enc", use="enc"),
        jwk(rsa_key, "odd", alg="HS256"),
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        jwk(rsa_key, "k1"),
    )
    verifier = TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), clock)
    assert verifier.verify(mint(rsa_key)).subject
    for kid in ("priv", "enc", "odd", "broken"):
        assert reason(verifier, mint(rsa_key, kid=kid)) == "unknown key id"
    assert reason(verifier, mint(weak, kid="weak")) == "unknown key id"


class FakeIssuer:
    """A JWKS URL in memory: counts downloads, can fail, keys can rotate."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.down = False

    def __call__(self, url: str) -> bytes:
        assert url == "https://idp.example/jwks"
        self.calls += 1
        if self.down:
            raise JwksError("connection refused")
        return json.dumps({"keys": self.keys}).encode()


def url_verifier(issuer: FakeIssuer, clock: FakeClock) -> TokenVerifier:
    settings = OAuthSettings(ISSUER, AUDIENCE, jwks_url="https://idp.example/jwks")
    return TokenVerifier(settings, clock, fetch=issuer)


def test_url_keys_are_cached_and_refetched_at_most_every_five_minutes(
    clock, mint, rsa_key, rsa_key2
):
    issuer = FakeIssuer(jwk(rsa_key, "k1"))
    verifier = url_verifier(issuer, clock)
    assert verifier.verify(mint(rsa_key)).subject
    assert verifier.verify(mint(rsa_key)).subject
    assert issuer.calls == 1
    issuer.keys.append(jwk(rsa_key2, "k2"))
    rotated = mint(rsa_key2, kid="k2")
    clock.advance(299)
    assert reason(verifier, rotated) == "unknown key id"
    assert issuer.calls == 1  # token spam cannot make us hammer the issuer
    clock.advance(1)
    assert verifier.verify(rotated).subject  # an unknown kid, five minutes on: download
    assert issuer.calls == 2
    clock.advance(60)
    assert reason(verifier, mint(rsa_key2, kid="k3")) == "unknown key id"
    assert verifier.verify(rotated).subject and verifier.verify(mint(rsa_key)).subject
    assert issuer.calls == 2


def test_url_keys_refresh_hourly_so_a_withdrawn_key_stops_working(clock, mint, rsa_key, rsa_key2):
    issuer = FakeIssuer(jwk(rsa_key, "k1"), jwk(rsa_key2, "k2"))
    verifier = url_verifier(issuer, clock)
    assert verifier.verify(mint(rsa_key)).subject
    issuer.keys = [jwk(rsa_key2, "k2")]
    clock.advance(3599)
    assert verifier.verify(mint(rsa_key)).subject
    clock.advance(1)
    assert reason(verifier, mint(rsa_key)) == "unknown key id"
    assert issuer.calls == 2


def test_issuer_outage(clock, mint, rsa_key):
    issuer = FakeIssuer(jwk(rsa_key, "k1"))
    issuer.down = True
    verifier = url_verifier(issuer, clock)
    assert reason(verifier, mint(rsa_key)) == "keys unavailable"
    assert reason(verifier, mint(rsa_key)) == "keys unavailable"
    assert issuer.calls == 1  # retried after 30 s, not on every token
    issuer.down = False
    clock.advance(30)
    assert verifier.verify(mint(rsa_key)).subject
    issuer.down = True
    clock.advance(3600)
    assert verifier.verify(mint(rsa_key)).subject  # stale keys beat no keys
    assert issuer.calls == 3


# -- settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"jwks_url": "http://idp.example/jwks"},
        {"jwks_url": "file:///etc/passwd"},
        {"jwks_url": "https:///no-host"},
        {},
        {"jwks_url": "https://idp.example/jwks", "jwks_file": Path("jwks.json")},
        {"jwks_file": Path("jwks.json"), "algorithms": ("RS256", "HS256")},
        {"jwks_file": Path("jwks.json"), "algorithms": ("none",)},
        {"jwks_file": Path("jwks.json"), "algorithms": ()},
        {"jwks_file": Path("jwks.json"), "leeway_seconds": -1},
    ],
)
def test_unsafe_settings_are_refused_at_construction(kwargs):
    with pytest.raises(OAuthConfigError):
        OAuthSettings(ISSUER, AUDIENCE, **kwargs)


def test_issuer_and_audience_are_required():
    with pytest.raises(OAuthConfigError):
        OAuthSettings("", AUDIENCE, jwks_file=Path("j"))
    with pytest.raises(OAuthConfigError):
        OAuthSettings(ISSUER, "", jwks_file=Path("j"))


def test_fetch_https_refuses_plain_http():
    with pytest.raises(OAuthConfigError):
        fetch_https("http://idp.example/jwks")


# -- real https ---------------------------------------------------------------------


class _Issuer(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path == "/jwks":
            payload = self.body
        elif self.path == "/big":
            payload = b" " * (2 * 1024 * 1024)
        elif self.path == "/to-http":
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:1/jwks")
            self.end_headers()
            return
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def https_issuer(
    tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey
) -> Iterator[tuple[str, Any]]:
    now = datetime.now(UTC)
    directory = tmp_path_factory.mktemp("idp")
    ca = CertificateAuthority.create(directory / "ca", now=now)
    cert, key = ca.write_pem(
        ca.issue("server", cn="localhost", sans=["localhost"], now=now), directory / "idp"
    )
    _Issuer.body = json.dumps({"keys": [jwk(rsa_key, "k1")]}).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Issuer)
    server.socket = server_context(cert, key).wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield (
            f"https://localhost:{server.server_address[1]}",
            client_context(anchors_file=ca.layout.root_cert),
        )
    finally:
        server.shutdown()


def test_keys_downloaded_over_https(https_issuer, clock, mint, rsa_key):
    base, context = https_issuer
    settings = OAuthSettings(ISSUER, AUDIENCE, jwks_url=f"{base}/jwks")
    verifier = TokenVerifier(settings, clock, ssl_context=context)
    assert verifier.verify(mint(rsa_key)).subject


def test_https_download_is_bounded_and_stays_on_https(https_issuer):
    base, context = https_issuer
    with pytest.raises(JwksError, match="larger than"):
        fetch_https(f"{base}/big", context=context)
    with pytest.raises(JwksError, match="redirect"):
        fetch_https(f"{base}/to-http", context=context)
    with pytest.raises(JwksError, match="Not Found"):
        fetch_https(f"{base}/missing", context=context)
    with pytest.raises(JwksError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch_https(f"{base}/jwks")  # the system trust store does not know the demo CA


@pytest.fixture(scope="module")
def fuzz_verifier(tmp_path_factory: pytest.TempPathFactory, rsa_key: Any) -> TokenVerifier:
    path = tmp_path_factory.mktemp("fuzz") / "jwks.json"
    write_jwks(path, jwk(rsa_key, "k1"))
    return TokenVerifier(OAuthSettings(ISSUER, AUDIENCE, jwks_file=path), FakeClock())


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jku"]),
        st.none() | st.integers() | st.text(max_size=8) | st.sampled_from(["RS256", "k1"]),
    ),
    claims=st.dictionaries(
        st.sampled_from(["iss", "aud", "sub", "exp", "nbf", "iat"]),
        st.none() | st.integers() | st.floats() | st.text(max_size=8) | st.lists(st.text()),
    ),
    signature=st.binary(max_size=300),
)
def test_verify_only_ever_raises_token_errors(fuzz_verifier, header, claims, signature):
    for token in (unsigned(header, claims, signature), unsigned(header, claims)[:-3]):
        try:
            fuzz_verifier.verify(token)
        except TokenError as exc:
            assert exc.reason in REASONS
