# covers: TS-4
"""The server driven by aioimaplib, an asyncio client: login, append, fetch, IDLE pushes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aioimaplib
import pytest

from harness import PASSWORD, ImapNode, start_node

MESSAGE = b"From: a@hopital.test\r\nSubject: push\r\n\r\nbonjour\r\n"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapNode]:
    work: Path = tmp_path_factory.mktemp("aioimap")
    node = start_node(work)
    try:
        yield node
    finally:
        node.stop()


async def _client(node: ImapNode, user: str) -> aioimaplib.IMAP4_SSL:
    client = aioimaplib.IMAP4_SSL("127.0.0.1", node.ports["imaps"], ssl_context=node.context())
    await client.wait_hello_from_server()
    assert (await client.login(user, PASSWORD)).result == "OK"
    return client


async def _push_with(client: aioimaplib.IMAP4_SSL, word: bytes) -> bytes:
    """The first IDLE push holding ``word`` (others, like RECENT, may come first)."""
    while True:
        pushed = b" ".join(await asyncio.wait_for(client.wait_server_push(), 10))
        if word in pushed:
            return pushed


async def test_append_then_fetch_with_uid(node: ImapNode) -> None:
    user = node.new_user()
    client = await _client(node, user)
    appended = await client.append(MESSAGE, mailbox="INBOX", flags=r"(\Flagged)")
    assert appended.result == "OK"
    assert (await client.select("INBOX")).result == "OK"
    fetched = await client.uid("fetch", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert fetched.result == "OK"
    text = b" ".join(line for line in fetched.lines if isinstance(line, bytes | bytearray))
    assert b"\\Flagged" in text and b"Subject: push" in text
    await client.logout()


async def test_idle_pushes_exists_and_flag_changes(node: ImapNode) -> None:
    user = node.new_user()
    watcher = await _client(node, user)
    await watcher.select("INBOX")
    idle = await watcher.idle_start(timeout=60)
    await asyncio.to_thread(node.deliver, user, MESSAGE)
    assert b"1 EXISTS" in await _push_with(watcher, b"EXISTS")
    other = await _client(node, user)
    await other.select("INBOX")
    await other.store("1", "+FLAGS", r"(\Answered)")
    assert b"\\Answered" in await _push_with(watcher, b"FETCH")
    watcher.idle_done()
    assert (await asyncio.wait_for(idle, 10)).result == "OK"
    await other.logout()
    await watcher.logout()
