"""The node's HTTP listeners: ``/healthz``, ``/metrics`` and the packages' JSON routes.

Deliberately tiny: one bounded request per connection, GET/HEAD only, then
close. :func:`parse_request_head` and :func:`parse_authorization` are the
sans-IO part; routes are async functions of the query parameters returning a
:class:`Response`, keyed by an exact path or a pattern with ``{name}``
segments (captured into the parameters); the asyncio handler only moves bytes.

:func:`make_handler` serves public routes (the plain listener).
:func:`make_authenticated_handler` serves routes that need a caller, on a TLS
listener only: every request must carry ``Authorization: Basic`` (a password)
or ``Bearer`` (an access token), checked by the node's one
:class:`~mssante.authn.Authenticator` with its throttle, and the route gets
the identity it opened; anything else is a 401 before any route runs.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from mssante import autoconfig, sasl
from mssante.authn import Attempt, Authenticator, Refusal
from mssante.config import Config
from mssante.listener import ConnectionHandler

log = logging.getLogger("mssante.http")

MAX_HEAD = 8192
READ_TIMEOUT = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    500: "Internal Server Error",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 field name
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    #: Header fields by lower-case name (the last wins). Out of ``repr`` and
    #: comparisons: ``Authorization`` holds a secret.
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)


Route = Callable[[dict[str, str]], Awaitable["Response"]]
#: A route of :func:`make_authenticated_handler`: ``(identity, params)``, the
#: identity being the address key the credentials opened.
AuthenticatedRoute = Callable[[str, dict[str, str]], Awaitable["Response"]]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    #: Extra header fields (``WWW-Authenticate``), written in order.
    headers: tuple[tuple[str, str], ...] = ()

    def encode(self, *, head_only: bool = False) -> bytes:
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers)
        head = (
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            f"{extra}"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        return head if head_only else head + self.body


def parse_request_head(head: bytes) -> Request | Response:
    """Parse a request head (up to the blank line); a Response means "refuse"."""
    lines = head.split(b"\r\n")
    try:
        request_line = lines[0].decode("ascii")
        method, target, version = request_line.split(" ")
    except (UnicodeDecodeError, ValueError):
        return Response(400, b"malformed request line\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon or not _TOKEN.fullmatch(name):  # also refuses obs-fold (RFC 9112 5.2)
            return Response(400, b"malformed header field\n")
        headers[name.lower()] = value.strip(" \t")
    if not version.startswith("HTTP/1."):
        return Response(400, b"HTTP/1.x only\n")
    if method not in ("GET", "HEAD"):
        return Response(405, b"GET or HEAD only\n")
    path, _, query = target.partition("?")
    try:
        params = urllib.parse.parse_qs(query, max_num_fields=20, strict_parsing=False)
    except ValueError:
        return Response(400, b"too many query parameters\n")
    return Request(method, path, {k: v[-1][:512] for k, v in params.items()}, headers)


def parse_authorization(value: str) -> sasl.Credentials | None:
    """The credentials of an ``Authorization`` field, None when it holds none we take.

    ``Basic`` (RFC 7617, UTF-8) gives a password, ``Bearer`` (RFC 6750) an
    access token; both are checked exactly as the SASL PLAIN and OAUTHBEARER
    ones. Nothing here quotes the value, so a refusal never echoes a secret.
    """
    scheme, _, rest = value.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(rest, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, colon, password = decoded.partition(":")
        if (
            not colon
            or not user
            or not password
            or len(user.encode("utf-8")) > sasl.MAX_IDENTITY
            or _CONTROL.search(user)
        ):
            return None
        return sasl.PasswordCredentials(user, None, password)
    if scheme.lower() == "bearer" and _B64TOKEN.fullmatch(rest):
        return sasl.BearerCredentials(None, rest, "HTTP-BEARER")
    return None


def json_response(status: int, payload: object) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(status, body, "application/json; charset=utf-8")


def builtin_routes(is_ready: Callable[[], bool], metrics: Callable[[], str]) -> dict[str, Route]:
    async def healthz(_: dict[str, str]) -> Response:
        return Response(200, b"ok\n") if is_ready() else Response(503, b"not ready\n")

    async def render_metrics(_: dict[str, str]) -> Response:
        return Response(200, metrics().encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")

    return {"/healthz": healthz, "/metrics": render_metrics}


def autoconfig_routes(config: Config) -> dict[str, Route]:
    """Mail client autoconfiguration; the ``emailaddress`` parameter changes nothing."""
    body = autoconfig.client_config(config)

    async def client_config(_: dict[str, str]) -> Response:
        return Response(200, body, "application/xml")

    return dict.fromkeys(autoconfig.PATHS, client_config)


R = TypeVar("R")


def match_path(pattern: str, path: str) -> dict[str, str] | None:
    """The ``{name}`` segments of ``pattern`` captured from ``path``, None if it differs.

    A captured segment is percent-decoded and never empty or holding a ``/``.
    """
    want, got = pattern.split("/"), path.split("/")
    if len(want) != len(got):
        return None
    captured: dict[str, str] = {}
    for expected, segment in zip(want, got, strict=True):
        if expected.startswith("{") and expected.endswith("}"):
            value = urllib.parse.unquote(segment)
            if not value or "/" in value:
                return None
            captured[expected[1:-1]] = value[:512]
        elif expected != segment:
            return None
    return captured


def find_route(routes: Mapping[str, R], request: Request) -> tuple[R, dict[str, str]] | None:
    """The route of an exact path, else of the first ``{name}`` pattern it matches.

    A pattern's captured segments join the query parameters (and win over them).
    """
    route = routes.get(request.path)
    if route is not None:
        return route, request.query
    for pattern, candidate in routes.items():
        if "{" in pattern and (captured := match_path(pattern, request.path)) is not None:
            return candidate, {**request.query, **captured}
    return None


async def _run(request: Request, call: Callable[[], Awaitable[Response]]) -> Response:
    try:
        return await call()
    except Exception:
        log.exception("route failed", extra={"fields": {"path": request.path}})
        return Response(500, b"internal error\n")


async def respond(request: Request, routes: dict[str, Route]) -> Response:
    """Run the route :func:`find_route` picks; 404 when none, 500 when it fails."""
    found = find_route(routes, request)
    if found is None:
        return Response(404, b"not found\n")
    route, params = found
    return await _run(request, lambda: route(params))


async def respond_as(
    identity: str, request: Request, routes: dict[str, AuthenticatedRoute]
) -> Response:
    """:func:`respond` for an authenticated caller: the route gets ``identity`` too."""
    found = find_route(routes, request)
    if found is None:
        return Response(404, b"not found\n")
    route, params = found
    return await _run(request, lambda: route(identity, params))


def challenge(auth: Authenticator, realm: str) -> Response:
    """The 401 of a request without valid credentials: the schemes the node accepts."""
    schemes = []
    if auth.password_auth:
        schemes.append(("WWW-Authenticate", f'Basic realm="{realm}", charset="UTF-8"'))
    if auth.tokens is not None:
        schemes.append(("WWW-Authenticate", f'Bearer realm="{realm}"'))
    return Response(
        401,
        b'{"error": "authentication required"}',
        "application/json; charset=utf-8",
        tuple(schemes),
    )


def make_handler(routes: dict[str, Route]) -> ConnectionHandler:
    """The public connection handler; its listener must use ``stream_limit=MAX_HEAD``."""

    async def answer(request: Request, _: asyncio.StreamWriter) -> Response:
        return await respond(request, routes)

    return _handler(answer)


def make_authenticated_handler(
    routes: dict[str, AuthenticatedRoute], auth: Authenticator, *, realm: str
) -> ConnectionHandler:
    """The handler of routes that need a caller; its listener must use TLS and ``MAX_HEAD``.

    No credential is ever read off a connection without TLS (403). A request
    without a usable ``Authorization``, or whose credentials ``auth`` refuses
    (wrong, locked out), gets the same 401 whatever its path.
    """

    def note(message: str, level: int = logging.INFO, **fields: object) -> None:
        log.log(level, message, extra={"fields": {"realm": realm, **fields}})

    async def answer(request: Request, writer: asyncio.StreamWriter) -> Response:
        if writer.get_extra_info("ssl_object") is None:
            return Response(403, b"TLS required\n")
        value = request.headers.get("authorization")
        credentials = parse_authorization(value) if value else None
        if credentials is None:
            return challenge(auth, realm)
        peer = writer.get_extra_info("peername")
        peer_ip = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        identity = await auth.authenticate(Attempt(credentials, peer_ip, None, False), note)
        if isinstance(identity, Refusal):
            return challenge(auth, realm)
        return await respond_as(identity, request, routes)

    return _handler(answer)


def _handler(
    answer: Callable[[Request, asyncio.StreamWriter], Awaitable[Response]],
) -> ConnectionHandler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
        except asyncio.LimitOverrunError:
            response: Request | Response = Response(431, b"request head too large\n")
        except TimeoutError:
            response = Response(408, b"request timeout\n")
        except asyncio.IncompleteReadError:
            return
        else:
            response = parse_request_head(head)
        if isinstance(response, Request):
            head_only = response.method == "HEAD"
            response = await answer(response, writer)
        writer.write(response.encode(head_only=head_only))
        await writer.drain()

    return handle
