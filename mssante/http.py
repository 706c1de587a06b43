"""The operations HTTP listener: ``GET /healthz`` and ``GET /metrics``.

Deliberately tiny: one bounded request per connection, GET/HEAD only, then
close. :func:`parse_request_head` is the sans-IO part; :func:`respond` picks
the answer; the asyncio handler only moves bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from mssante.listener import ConnectionHandler

MAX_HEAD = 8192
READ_TIMEOUT = 10.0

_REASONS = {
    200: "OK",
    400: "Bad Request",
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
    return Request(method, target.split("?", 1)[0])


def respond(request: Request, *, ready: bool, metrics: Callable[[], str]) -> Response:
    if request.path == "/healthz":
        return Response(200, b"ok\n") if ready else Response(503, b"not ready\n")
    if request.path == "/metrics":
        return Response(200, metrics().encode("utf-8"), "text/plain; version=0.0.4; charset=utf-8")
    return Response(404, b"not found\n")


def make_handler(is_ready: Callable[[], bool], metrics: Callable[[], str]) -> ConnectionHandler:
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
            response = respond(response, ready=is_ready(), metrics=metrics)
        writer.write(response.encode(head_only=head_only))
        await writer.drain()

    return handle
