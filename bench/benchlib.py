"""Helpers shared by the benchmark scripts (run as `python bench/NAME.py`)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path


def work_dir() -> Path:
    """Scratch space on the repository's disk (what fsync costs there), git-ignored."""
    work = Path(__file__).resolve().parent / ".work"
    work.mkdir(exist_ok=True)
    return work


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

    def cpu(self) -> float | None:
        """User + system CPU seconds of the server process so far."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mib(self, key: str = "VmRSS") -> float | None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        found = re.search(rf"^{key}:\s+(\d+) kB", status, re.MULTILINE)
        return int(found.group(1)) / 1024 if found else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def mssante(*args: str) -> str:
    made = subprocess.run(
        [sys.executable, "-m", "mssante", *args], capture_output=True, text=True, timeout=300
    )
    if made.returncode != 0:
        raise RuntimeError(f"mssante {shlex.join(args)}: {made.stderr}")
    return made.stdout
