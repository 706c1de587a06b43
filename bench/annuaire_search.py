"""Directory import and search on a large synthetic national extraction.

    .venv/bin/python bench/annuaire_search.py [--count 1000000] [--rounds 3] [--queries 300]
        [--postgres ADMIN_URL] [--no-report]

Generates COUNT synthetic mailboxes in the national format (realistic fields,
fake people; cached under bench/.work by count and seed, so a rerun skips
it), then, ROUNDS times, imports it into a fresh node with
`mssante annuaire import` in a child process: lines per second (wall clock of
the child, start-up included), the child's peak RSS (wait4's ru_maxrss) and
its CPU time per line, which the load of a shared machine changes less than
the wall clock. Then one re-import of the same file into the last node (the
nightly case: nothing changes) and the search latency of each kind of query
the API serves (exact identifier, exact address, name prefix, two words,
word + city, profession, city alone): p50/p95/p99 over QUERIES queries.
Targets: import >= 100,000 lines/s in < 200 MB RSS; search p99 < 50 ms.
Writes the section "Directory import and search" of docs/benchmarks.md
(unless --no-report). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from annuaire import directory
from annuaire.extraction import open_extraction, read_extraction
from annuaire.synthetic import write_synthetic_file
from mssante.db import Database

import compare
from benchlib import mssante, work_dir

SEED = 11
IMPORT_TARGET = 100_000  # lines/s
RSS_TARGET = 200  # MiB
SEARCH_TARGET = 50  # ms, p99
_SUMMARY = re.compile(r"(\d+) records: (\d+) added, (\d+) updated, (\d+) unchanged")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def extraction_file(count: int, seed: int) -> Path:
    """The synthetic extraction, generated once per (count, seed) and kept."""
    path = work_dir() / f"extraction-{count}-{seed}.txt"
    if path.exists():
        print(f"{count:,} synthetic mailboxes: {path.name} (cached)")
        return path
    start = time.perf_counter()
    partial = path.with_suffix(".partial")
    write_synthetic_file(partial, count, seed=seed)
    partial.rename(path)
    print(f"{count:,} synthetic mailboxes written in {time.perf_counter() - start:.0f} s")
    return path


def sample_queries(path: Path, n: int, seed: int) -> dict[str, list[dict[str, str]]]:
    """Queries built from records drawn from the first 100,000 lines (the file is in
    random order, so they are as good as any and reading them is quick)."""
    rng = random.Random(seed)
    records = []
    with open_extraction(path) as lines:
        for i, record in enumerate(read_extraction(lines)):
            if i == 100_000:
                break
            if len(records) < 5000:
                records.append(record)
            elif rng.random() < 5000 / (i + 1):
                records[rng.randrange(5000)] = record
    picks = [rng.choice(records) for _ in range(n)]
    return {
        "identifier": [{"q": r.person_id or r.facility_id or r.address} for r in picks],
        "address": [{"q": r.address} for r in picks],
        "name prefix": [{"q": (r.last_name or r.organisation_name or "x")[:4]} for r in picks],
        "two words": [
            {"q": f"{r.first_name or ''} {r.last_name or ''}".strip() or "centre"} for r in picks
        ],
        "word + city": [
            {"q": (r.last_name or "martin")[:5], "city": r.city or "paris"} for r in picks
        ],
        "profession": [{"profession": r.profession_label or "medecin"} for r in picks],
        "city only": [{"city": r.city or "paris"} for r in picks],
    }


@contextmanager
def database_url(admin_url: str | None) -> Iterator[str | None]:
    """None for SQLite in the data directory; a fresh PostgreSQL database otherwise."""
    if admin_url is None:
        yield None
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"mssante_bench_{os.getpid()}_{time.monotonic_ns()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def init_node(data: Path, url: str | None) -> None:
    mssante("init", "--data-dir", str(data), "--demo", *(["--database-url", url] if url else []))


def import_once(data: Path, path: Path) -> dict[str, float]:
    """`mssante annuaire import` in a child: its wall time, peak RSS and CPU."""
    out = data / "import.out"
    command = [sys.executable, "-m", "mssante", "annuaire", "import", str(path)]
    with out.open("w") as stdout:
        start = time.perf_counter()
        child = subprocess.Popen(
            [*command, "--data-dir", str(data)], stdout=stdout, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    report = out.read_text()
    summary = _SUMMARY.search(report)
    if child.returncode != 0 or summary is None:
        raise RuntimeError(f"annuaire import failed ({child.returncode}):\n{report[-2000:]}")
    records = int(summary.group(1))
    return {
        "records": records,
        "added": int(summary.group(2)),
        "unchanged": int(summary.group(4)),
        "seconds": elapsed,
        "lines/s": records / elapsed,
        "peak RSS": usage.ru_maxrss / 1024,
        "CPU per line": (usage.ru_utime + usage.ru_stime) / records * 1e6,
    }


def search_latencies(
    url: str, queries: dict[str, list[dict[str, str]]]
) -> dict[str, tuple[float, float, float]]:
    db = Database.open(url)
    latencies = {}
    try:
        for kind, params in queries.items():
            timings = []
            with db.read() as conn:
                for p in params:
                    t = time.perf_counter()
                    directory.search(
                        conn, p.get("q", ""), city=p.get("city"), profession=p.get("profession")
                    )
                    timings.append((time.perf_counter() - t) * 1000)
            latencies[kind] = (
                statistics.median(timings),
                percentile(timings, 95),
                percentile(timings, 99),
            )
    finally:
        db.dispose()
    return latencies


def _span(values: list[float], fmt: str = "{:,.0f}") -> str:
    median = fmt.format(statistics.median(values))
    if len(values) == 1:
        return median
    return f"{median} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def run(
    engine: str, admin_url: str | None, path: Path, args: argparse.Namespace, root: Path
) -> str:
    """All rounds on one engine; the markdown table of its figures."""
    print(f"{engine}:")
    rounds: list[dict[str, float]] = []
    loads: list[float] = []
    for n in range(1, args.rounds + 1):
        last = n == args.rounds
        data = root / f"{engine}-{n}"
        with database_url(admin_url) as url:
            init_node(data, url)
            loads.append(os.getloadavg()[0])
            figures = import_once(data, path)
            rounds.append(figures)
            print(
                f"  round {n}/{args.rounds}: {figures['records']:,.0f} records in "
                f"{figures['seconds']:.1f} s = {figures['lines/s']:,.0f} lines/s, "
                f"peak RSS {figures['peak RSS']:.0f} MiB, "
                f"CPU {figures['CPU per line']:.0f} µs/line (load {loads[-1]:.1f})",
                flush=True,
            )
            if last:
                again = import_once(data, path)
                print(
                    f"  re-import (unchanged): {again['seconds']:.1f} s = "
                    f"{again['lines/s']:,.0f} lines/s, peak RSS {again['peak RSS']:.0f} MiB, "
                    f"{again['unchanged']:,.0f} unchanged",
                    flush=True,
                )
                queries = sample_queries(path, args.queries, seed=5)
                latencies = search_latencies(url or f"sqlite:///{data / 'mssante.db'}", queries)
                for kind, (p50, p95, p99) in latencies.items():
                    print(f"  {kind:<12} p50 {p50:6.1f} ms   p95 {p95:6.1f} ms   p99 {p99:6.1f} ms")
        if not last:
            subprocess.run(["rm", "-rf", str(data)], check=True)
    rate = [r["lines/s"] for r in rounds]
    rss = [r["peak RSS"] for r in rounds]
    cpu = [r["CPU per line"] for r in rounds]
    lines = [
        f"{engine}, {args.count:,} lines, {args.rounds} round(s) of a fresh import "
        f"(median (min–max)); 1-minute load average at each start: "
        f"{', '.join(f'{x:.1f}' for x in loads)}.",
        "",
        "| figure | unit | value | target |",
        "| --- | --- | --- | --- |",
        f"| import, fresh directory | lines/s | {_span(rate)} | ≥ {IMPORT_TARGET:,} |",
        f"| import, peak RSS of the process | MiB | {_span(rss)} | < {RSS_TARGET} |",
        f"| import, CPU time (all threads) | µs/line | {_span(cpu)} | |",
        f"| re-import of the same file | lines/s | {_span([again['lines/s']])} | |",
        f"| re-import, peak RSS | MiB | {_span([again['peak RSS']])} | < {RSS_TARGET} |",
    ]
    for kind, (p50, _, p99) in latencies.items():
        lines.append(f"| search {kind}, p50 | ms | {p50:.1f} | |")
        lines.append(f"| search {kind}, p99 | ms | {p99:.1f} | < {SEARCH_TARGET} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--postgres", help="an admin URL: each round gets a fresh database")
    parser.add_argument("--no-report", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    started = time.perf_counter()
    path = extraction_file(args.count, args.seed)
    tables = []
    with tempfile.TemporaryDirectory(dir=work_dir(), prefix="annuaire-") as tmp:
        tables.append(run("SQLite", None, path, args, Path(tmp)))
        if args.postgres:
            tables.append(run("PostgreSQL", args.postgres, path, args, Path(tmp)))
    took = time.perf_counter() - started
    print(f"total {took / 60:.1f} min")
    if args.no_report:
        return
    command = "python bench/annuaire_search.py " + shlex.join(sys.argv[1:])
    body = "\n".join(
        [
            f"Machine: {compare.machine()}. Command: `{command.strip()}` ({took / 60:.0f} min).",
            "The import is `mssante annuaire import` in a child process (wall clock from its",
            "start to its exit, peak RSS from wait4); the search is `directory.search` in the",
            "benchmark's process on the last round's directory. No reference server.",
            "",
            *tables,
        ]
    )
    compare.write_section("Directory import and search", body)
    print(f"written to {compare.REPORT}")


if __name__ == "__main__":
    main()
