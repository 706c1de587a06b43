"""Directory search latency on a large synthetic national extraction.

    .venv/bin/python bench/annuaire_search.py [--count 1000000] [--queries 300] [--postgres URL]

Generates COUNT synthetic mailboxes (fake people, valid identifiers), imports
them, then times each kind of search the API serves: exact identifier, exact
address, name prefix, two-word query, word + city filter, profession filter,
city filter alone. Prints p50/p95/p99 per kind; the goal is p99 under 50 ms on
1,000,000 entries.
Also prints the import rate. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from annuaire import directory
from annuaire.extraction import open_extraction, read_extraction
from annuaire.synthetic import write_synthetic_file
from mssante.db import Database

from benchlib import work_dir


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def sample_queries(path: Path, n: int, seed: int) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    records = []
    with open_extraction(path) as lines:
        for i, record in enumerate(read_extraction(lines)):
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


def run(url: str, path: Path, queries: dict[str, list[dict[str, str]]], count: int) -> None:
    db = Database.open(url)
    db.upgrade()
    start = time.perf_counter()
    with db.transaction() as conn, open_extraction(path) as lines:
        stats = directory.import_extraction(conn, lines)
    elapsed = time.perf_counter() - start
    print(
        f"  import: {stats.records} records in {elapsed:.0f} s ({stats.records / elapsed:,.0f}/s)"
    )
    for kind, params in queries.items():
        timings = []
        with db.read() as conn:
            for p in params:
                t = time.perf_counter()
                directory.search(
                    conn, p.get("q", ""), city=p.get("city"), profession=p.get("profession")
                )
                timings.append((time.perf_counter() - t) * 1000)
        print(
            f"  {kind:<12} p50 {statistics.median(timings):6.1f} ms   "
            f"p95 {percentile(timings, 95):6.1f} ms   p99 {percentile(timings, 99):6.1f} ms"
        )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--postgres", default=os.environ.get("MSSANTE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        written = write_synthetic_file(root / "extraction.txt", args.count, seed=11)
        took = time.perf_counter() - start
        print(f"{written.records:,} synthetic mailboxes written in {took:.0f} s")
        queries = sample_queries(written.path, args.queries, seed=5)
        print("SQLite (WAL):")
        run(f"sqlite:///{root / 'bench.db'}", written.path, queries, args.count)
        if args.postgres:
            print("PostgreSQL:")
            run(args.postgres, written.path, queries, args.count)


if __name__ == "__main__":
    main()
