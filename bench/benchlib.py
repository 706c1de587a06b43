"""Helpers shared by the benchmark scripts (run as `python bench/NAME.py`)."""

from __future__ import annotations

import os
import re
import shlex
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path


def client_context() -> ssl.SSLContext:
    """TLS ≥ 1.2 without verification: every server here has a throwaway certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


TESTS = Path(__file__).resolve().parent.parent / "tests"


def use_test_helpers(*subdirs: str) -> None:
    """Make the test suite's helper modules (``nodes``, ``operators``, ``cdagen``) importable.

    Our packages are imported first: ``tests/`` has folders named like them
    (``tests/certs``, ``tests/smtp``…) that would otherwise be taken for
    namespace packages of those names.
    """
    import mssante.app  # noqa: F401  (annuaire, certs, cda, imap, smtp… through it)

    for path in (TESTS, *(TESTS / sub for sub in subdirs)):
        if str(path) not in sys.path:
            sys.path.append(str(path))


def work_dir() -> Path:
    """Scratch space on the repository's disk (what fsync costs there), git-ignored."""
    work = Path(__file__).resolve().parent / ".work"
    work.mkdir(exist_ok=True)
    return work


def run_dir(name: str) -> Path:
    """A fresh directory for one run of a benchmark, ``bench/.work/NAME-<time>``.

    World-traversable: Postfix's and Dovecot's unprivileged processes reach
    their own directories through it.
    """
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = work_dir() / f"{name}-{stamp}"
    work.mkdir(parents=True)
    work.chmod(0o755)
    return work


def empty_queue(data: Path) -> None:
    """Delete every queued message of the node in ``data`` (between runs)."""
    from sqlalchemy import delete

    from mssante import config as cfg
    from mssante.app import Runtime
    from mssante.schema import queue_messages

    runtime = Runtime.open(cfg.load(data))
    try:
        with runtime.db.transaction() as conn:
            conn.execute(delete(queue_messages))  # recipients go with them (cascade)
    finally:
        runtime.db.dispose()


class Server:
    """A ``mssante serve`` child process, its log in a file, its CPU and memory from /proc."""

    def __init__(self, data: Path) -> None:
        self.log_path = data / "serve.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mssante", "serve", "--data-dir", str(data)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mssante serve exited:\n{self.log_path.read_text()}")
            if re.search(r"\bready\b", self.log_path.read_text()):
                return
            time.sleep(0.1)
        raise RuntimeError(f"mssante serve not ready after {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU of ``pids`` and of their reaped children (a daemon's master reaps
    its workers), from /proc: the difference of two readings is the work done in between."""
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def mssante(*args: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "mssante", *args], capture_output=True, text=True, timeout=300
    )
    if made.returncode != 0:
        raise RuntimeError(f"mssante {shlex.join(args)}: {made.stderr[-2000:]}")
    return made.stdout
