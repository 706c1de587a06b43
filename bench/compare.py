"""Side-by-side figures: ours against a reference server, in alternation, as a table.

A *contender* is a callable that runs one round of a workload against one
server and returns its figures (name → value). :func:`alternate` runs the
contenders A B A B … for the given number of rounds, so that slow drifts of
the machine (page cache, CPU frequency, a neighbour) hit both alike;
:func:`summarise` gives, per figure, each side's median and min–max and the
ratio ours/reference of the medians; :func:`markdown` and
:func:`write_section` put it in ``docs/benchmarks.md`` with the machine and
the exact command. Nothing here asserts anything: benchmarks are not tests.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

Figures = dict[str, float]
Contender = Callable[[], Figures]

REPORT = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Row:
    figure: str
    unit: str
    ours: Sequence[float]
    reference: Sequence[float]

    @property
    def ratio(self) -> float | None:
        """ours/reference of the medians; None when either side has no figure."""
        if not self.ours or not self.reference:
            return None
        ref = statistics.median(self.reference)
        return statistics.median(self.ours) / ref if ref else None


def alternate(
    rounds: int, ours: Contender, reference: Contender | None, *, log: Callable[[str], None] = print
) -> tuple[list[Figures], list[Figures]]:
    """Run ``ours`` and ``reference`` in alternation, ``rounds`` times each."""
    mine: list[Figures] = []
    theirs: list[Figures] = []
    for n in range(1, rounds + 1):
        mine.append(ours())
        log(f"  round {n}/{rounds} ours: {_brief(mine[-1])}")
        if reference is not None:
            theirs.append(reference())
            log(f"  round {n}/{rounds} reference: {_brief(theirs[-1])}")
    return mine, theirs


def _brief(figures: Figures) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in figures.items())


def summarise(
    ours: Sequence[Figures], reference: Sequence[Figures], units: Mapping[str, str]
) -> list[Row]:
    """One row per figure, in ``units``' order (figures absent on a side stay empty)."""
    return [
        Row(
            figure,
            unit,
            [f[figure] for f in ours if figure in f],
            [f[figure] for f in reference if figure in f],
        )
        for figure, unit in units.items()
    ]


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    median = statistics.median(values)
    if len(values) == 1:
        return _num(median)
    return f"{_num(median)} ({_num(min(values))}–{_num(max(values))})"


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def markdown(rows: Sequence[Row], reference_name: str | None) -> str:
    """The table: figure, ours and the reference as median (min–max), ratio ours/reference;
    ours alone when there is no reference server (``reference_name`` None)."""
    if reference_name is None:
        lines = ["| figure | unit | ours |", "| --- | --- | --- |"]
        lines += [f"| {row.figure} | {row.unit} | {_cell(row.ours)} |" for row in rows]
        return "\n".join(lines) + "\n"
    lines = [
        f"| figure | unit | ours | {reference_name} | ours / {reference_name} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        ratio = "n/a" if row.ratio is None else f"{row.ratio:.2f}×"
        lines.append(
            f"| {row.figure} | {row.unit} | {_cell(row.ours)} | {_cell(row.reference)} | {ratio} |"
        )
    return "\n".join(lines) + "\n"


def machine() -> str:
    """One line about the machine the figures come from."""
    memory = ""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"MemTotal:\s+(\d+)", meminfo).group(1))  # type: ignore[union-attr]
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, AttributeError, ValueError):
        pass
    cpu = ""
    try:
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = f" ({found.group(1).strip()})" if found else ""
    except OSError:
        pass
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPUs{cpu}{memory}, "
        f"Python {platform.python_version()}"
    )


def write_section(name: str, body: str, *, path: Path = REPORT) -> None:
    """Replace (or append) the section ``## name`` of the report with ``body``."""
    text = path.read_text(encoding="utf-8") if path.exists() else _HEADER
    marker = f"## {name}\n"
    section = f"{marker}\n{body.rstrip()}\n\n"
    start = text.find(marker)
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(marker))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text.rstrip() + "\n", encoding="utf-8")


_HEADER = """# Benchmarks against the reference servers

Written by `make bench` (see `bench/README.md`): each section is replaced by
its workload's last run. Figures are medians with (min–max) over alternating
rounds on one machine, and the ratio ours / reference of the medians: for
rates, above 1 is better for us; for latencies and memory, below 1 is. They
are not tests and assert nothing.
"""
