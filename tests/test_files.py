"""Crash-safe small-file writes (configuration, keys, CRLs)."""

import os
from pathlib import Path

import pytest

from mssante import files as atomic_module
from mssante.files import atomic_write


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def leftovers(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_sets_mode_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "secret.key"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    atomic_write(target, b"new", mode=0o600)
    assert target.read_bytes() == b"new" and mode(target) == 0o600
    assert leftovers(tmp_path) == []


def test_atomic_write_crash_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "crl.pem"
    target.write_bytes(b"old")

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(atomic_module.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []
