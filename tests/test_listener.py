"""The TCP/TLS listener: TLS connections cost little memory and still carry large payloads."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from pathlib import Path

from certs.tls import server_context
from mssante import config as cfg
from mssante.listener import TLS_READ_BUFFER, TcpListener
from mssante.metrics import Metrics

from nodes import mssante


async def test_tls_reads_in_small_steps_and_carries_large_payloads(tmp_path: Path) -> None:
    data = tmp_path / "node"
    assert mssante("init", "--demo", "--data-dir", str(data)).returncode == 0
    config = cfg.load(data)
    context = server_context(config.path(config.tls.cert_file), config.path(config.tls.key_file))
    payload = bytes(range(256)) * 16 * 1024  # 4 MiB, far more than one read

    async def digest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received = await reader.readexactly(len(payload))
        writer.write(hashlib.sha256(received).hexdigest().encode() + b"\n")
        await writer.drain()
        writer.close()

    listener = TcpListener("t", "127.0.0.1", 0, digest, metrics=Metrics(), ssl_context=context)
    await listener.start()
    try:
        # asyncio's default is a 256 KiB buffer per TLS connection, allocated up front.
        assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_BUFFER == 16 * 1024
        client = ssl.create_default_context(cafile=str(config.path(config.tls.ca_file)))
        client.check_hostname = False  # 127.0.0.1; the chain is still verified
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.bound_port, ssl=client)
        writer.write(payload)
        await writer.drain()
        answer = await reader.readline()
        assert answer.strip().decode() == hashlib.sha256(payload).hexdigest()
        writer.close()
    finally:
        await listener.stop(1.0)
