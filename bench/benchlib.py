"""Helpers shared by the benchmark scripts (run as `python bench/NAME.py`)."""

from __future__ import annotations

from pathlib import Path


def work_dir() -> Path:
    """Scratch space on the repository's disk (what fsync costs there), git-ignored."""
    work = Path(__file__).resolve().parent / ".work"
    work.mkdir(exist_ok=True)
    return work
