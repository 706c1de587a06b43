"""Mail client autoconfiguration: the document, and the HTTP listener serving it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from lxml import etree  # type: ignore[import-untyped]

from mssante import http
from mssante.autoconfig import PATHS, client_config
from mssante.config import Config, ListenerConfig, ListenersConfig, NodeConfig
from mssante.listener import TcpListener
from mssante.metrics import Metrics

CONFIG = Config(
    node=NodeConfig(
        domain="demo.mssante.test",
        hostname="mail.demo.mssante.test",
        extra_domains=["Hôpital.test", "autre.mssante.test"],
    ),
    listeners=ListenersConfig(
        imap=ListenerConfig(port=1143),
        imaps=ListenerConfig(port=1993),
        submission=ListenerConfig(port=1587),
        submissions=ListenerConfig(port=1465),
    ),
)


def parse(document: bytes) -> Any:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.fromstring(document, parser)


def servers(document: bytes) -> list[tuple[str, str, str, str, str, str, str]]:
    provider = parse(document).find("emailProvider")
    return [
        (
            server.tag,
            server.get("type"),
            server.findtext("hostname"),
            server.findtext("port"),
            server.findtext("socketType"),
            server.findtext("username"),
            server.findtext("authentication"),
        )
        for server in provider.iter("incomingServer", "outgoingServer")
    ]


def test_document_lists_domains_then_tls_first_servers() -> None:
    root = parse(client_config(CONFIG))
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    (provider,) = root.findall("emailProvider")
    assert provider.get("id") == "demo.mssante.test"
    assert [d.text for d in provider.findall("domain")] == [
        "demo.mssante.test",
        "autre.mssante.test",
        "xn--hpital-ixa.test",
    ]
    host, user, auth = "mail.demo.mssante.test", "%EMAILADDRESS%", "password-cleartext"
    assert servers(client_config(CONFIG)) == [
        ("incomingServer", "imap", host, "1993", "SSL", user, auth),
        ("incomingServer", "imap", host, "1143", "STARTTLS", user, auth),
        ("outgoingServer", "smtp", host, "1465", "SSL", user, auth),
        ("outgoingServer", "smtp", host, "1587", "STARTTLS", user, auth),
    ]


def test_default_ports_and_hostname_from_the_domain() -> None:
    config = Config(node=NodeConfig(domain="demo.mssante.test"))
    assert [(s[2], s[3], s[4]) for s in servers(client_config(config))] == [
        ("demo.mssante.test", "993", "SSL"),
        ("demo.mssante.test", "143", "STARTTLS"),
        ("demo.mssante.test", "465", "SSL"),
        ("demo.mssante.test", "587", "STARTTLS"),
    ]


def test_disabled_listeners_are_not_offered() -> None:
    listeners = dataclasses.replace(
        CONFIG.listeners,
        imap=ListenerConfig(enabled=False, port=1143),
        submission=ListenerConfig(enabled=False, port=1587),
    )
    config = dataclasses.replace(CONFIG, listeners=listeners)
    assert [(s[3], s[4]) for s in servers(client_config(config))] == [
        ("1993", "SSL"),
        ("1465", "SSL"),
    ]


def test_configured_text_is_escaped_not_spliced() -> None:
    """``node.hostname`` is free text: markup in it stays text."""
    hostile = 'x</hostname><port>1</port><!--"&'
    config = dataclasses.replace(CONFIG, node=dataclasses.replace(CONFIG.node, hostname=hostile))
    assert {s[2] for s in servers(client_config(config))} == {hostile}


@pytest.fixture
async def listener() -> AsyncIterator[TcpListener]:
    server = TcpListener(
        "http",
        "127.0.0.1",
        0,
        http.make_handler(http.autoconfig_routes(CONFIG)),
        metrics=Metrics(),
        stream_limit=http.MAX_HEAD,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(5)


async def fetch(port: int, request: bytes) -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return head, body


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("query", ["", "?emailaddress=alice%40demo.mssante.test"])
async def test_served_over_http(listener: TcpListener, path: str, query: str) -> None:
    request = f"GET {path}{query} HTTP/1.1\r\nHost: autoconfig.demo.mssante.test\r\n\r\n"
    head, body = await fetch(listener.bound_port, request.encode("ascii"))
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK"
    assert b"Content-Type: application/xml" in lines
    assert body == client_config(CONFIG)


async def test_head_has_no_body(listener: TcpListener) -> None:
    request = f"HEAD {PATHS[0]} HTTP/1.1\r\nHost: demo.mssante.test\r\n\r\n"
    head, body = await fetch(listener.bound_port, request.encode("ascii"))
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b""
    assert f"Content-Length: {len(client_config(CONFIG))}".encode() in head.split(b"\r\n")
