"""The node's HTTP listener: ``/healthz``, ``/metrics`` and the packages' JSON routes.

Deliberately tiny: one bounded request per connection, GET/HEAD only, then
close. :func:`parse_request_head` is the sans-IO part; routes are async
functions of the query parameters returning a :class:`Response`, keyed by an
exact path or a pattern with ``{name}`` segments (captured into the
parameters); the asyncio handler only moves bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from mssante import autoconfig
from mssante.config import Config
from mssante.listener import ConnectionHandler

log = logging.getLogger("mssante.http")

MAX_HEAD = 8192
READ_TIMEOUT = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
    500: "Internal Server Error",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    503: "Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)


Route = Callable[[dict[str, str]], Awaitable["Response"]]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    def encode(self, *, head_only: bool = False) -> bytes:
        head = (
            f"HTTP/1.1 {self.status} {_REASONS[self.status]}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            "Cache-Control: no-store\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")
        return head if head_only else head + self.body


def parse_request_head(head: bytes) -> Request | Response:
    """Parse a request head (up to the blank line); a Response means "refuse"."""
    try:
        request_line = head.split(b"\r\n", 1)[0].decode("ascii")
        method, target, version = request_line.split(" ")
    except (UnicodeDecodeError, ValueError):
        return Response(400, b"malformed request line\n")
    if not version.startswith("HTTP/1."):
        return Response(400, b"HTTP/1.x only\n")
    if method not in ("GET", "HEAD"):
        return Response(405, b"GET or HEAD only\n")
    path, _, query = target.partition("?")
    try:
        params = urllib.parse.parse_qs(query, max_num_fields=20, strict_parsing=False)
    except ValueError:
        return Response(400, b"too many query parameters\n")
    return Request(method, path, {k: v[-1][:512] for k, v in params.items()})


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


async def respond(request: Request, routes: dict[str, Route]) -> Response:
    """Run the route of an exact path, else of the first ``{name}`` pattern it matches.

    A pattern's captured segments join the query parameters (and win over them).
    """
    params = request.query
    route = routes.get(request.path)
    if route is None:
        for pattern, candidate in routes.items():
            if "{" in pattern and (captured := match_path(pattern, request.path)) is not None:
                route, params = candidate, {**request.query, **captured}
                break
    if route is None:
        return Response(404, b"not found\n")
    try:
        return await route(params)
    except Exception:
        log.exception("route failed", extra={"fields": {"path": request.path}})
        return Response(500, b"internal error\n")


def make_handler(routes: dict[str, Route]) -> ConnectionHandler:
    """The connection handler; its listener must use ``stream_limit=MAX_HEAD``."""

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
            response = await respond(response, routes)
        writer.write(response.encode(head_only=head_only))
        await writer.drain()

    return handle
