"""Helpers to run real `mssante` processes in tests (not a test module)."""

from __future__ import annotations

import json
import os
import queue
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from annuaire.identifiers import luhn_key
from mssante.datadir import DEMO_PORTS


def rpps(n: int) -> str:
    """A valid RPPS number (Luhn key included) for test BALs."""
    body = f"10{n:08d}"
    return body + str(luhn_key(body))


def mssante(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mssante", *args], capture_output=True, text=True, timeout=timeout
    )


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_offset() -> int:
    """An offset at which every demo port is free on 127.0.0.1."""
    highest = max(DEMO_PORTS.values())
    for _ in range(200):
        # Every port must stay a valid TCP port (a bind() past 65535 raises OverflowError).
        offset = random.randrange(8000, 65535 - highest, 10)
        if all(_free(port + offset) for port in DEMO_PORTS.values()):
            return offset
    raise RuntimeError("no free demo port range")


def add_config(file: Path, extra: str) -> None:
    """Append TOML to a configuration, merging into tables it already has."""
    text = file.read_text()
    for block in re.split(r"(?m)^(?=\[)", extra.strip()):
        header, _, body = block.partition("\n")
        if header.startswith("[") and f"\n{header}\n" in f"\n{text}":
            text = text.replace(f"{header}\n", f"{header}\n{body.strip()}\n", 1)
        else:
            text += "\n" + block.strip() + "\n"
    file.write_text(text)


def http_get(port: int, path: str) -> tuple[int, str]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


@dataclass
class Node:
    """A `mssante serve` child process and what it printed.

    A thread reads its stderr into a queue: reading lines with select() on the
    pipe would miss lines already buffered by an earlier readline().
    """

    data_dir: Path
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @classmethod
    def start(cls, data_dir: Path) -> Node:
        process = subprocess.Popen(
            [sys.executable, "-m", "mssante", "serve", "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        node = cls(data_dir, process)
        threading.Thread(target=node._pump, daemon=True).start()
        return node

    def _pump(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, needle: str, timeout: float = 10.0) -> str:
        """Read the log until a line contains ``needle`` (or the process ends)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"no {needle!r} in log:\n{''.join(self.lines)}")

    def drain(self) -> list[str]:
        """Every line printed so far (without waiting for more)."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                return self.lines
            if line is None:
                self._queue.put(None)
                return self.lines
            self.lines.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        while (line := self._queue.get(timeout=timeout)) is not None:
            self.lines.append(line)
        self._queue.put(None)
        return code

    def json_lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]
