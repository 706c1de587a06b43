"""Durable-accept cost of the message store, against the raw fsync floor.

    .venv/bin/python bench/store_bench.py [--count N] [--size BYTES] [--postgres URL]

Prints messages per second for: the physical floor (write + fsync + rename +
directory fsync with plain os calls), BlobStore.put without and with
encryption, and the whole accept path (encrypted put + mailbox append + commit)
on SQLite (WAL, synchronous=FULL) and optionally PostgreSQL. Ratios are against
the floor: what our code costs above what the disk forces. Not a test.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from mssante import index
from mssante.db import Database
from mssante.store import BlobStore

from benchlib import work_dir


def floor(root: Path, payloads: list[bytes]) -> None:
    """The least any durable write can do: one file, fsynced, renamed, dir fsynced."""
    root.mkdir()
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i, data in enumerate(payloads):
            tmp = root / f"{i}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, data)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, root / str(i))
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def accept_path(db: Database, store: BlobStore, payloads: list[bytes]) -> None:
    with db.transaction() as conn:
        inbox = index.ensure_default_mailboxes(conn, "bench@demo.mssante.test", now=_now())[0]
    for i, data in enumerate(payloads):
        ref = store.put(data)
        with db.transaction() as conn:
            index.append(conn, inbox, ref, internal_date=_now(), delivery_key=f"bench-{i}")


def _now() -> datetime:
    return datetime.now(UTC)


def timed(label: str, count: int, run: Callable[[], None], baseline: float | None) -> float:
    start = time.perf_counter()
    run()
    rate = count / (time.perf_counter() - start)
    ratio = f"{rate / baseline:6.2f}x floor" if baseline else "   (floor)"
    print(f"{label:<44} {rate:10.0f} msg/s  {ratio}")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--postgres", default=os.environ.get("MSSANTE_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    payloads = [os.urandom(args.size) for _ in range(args.count)]
    key = os.urandom(32)
    print(f"{args.count} messages of {args.size} bytes, one durable write each\n")
    with tempfile.TemporaryDirectory(dir=work_dir()) as tmp:
        root = Path(tmp)
        base = timed(
            "floor: write+fsync+rename+fsync(dir)",
            args.count,
            lambda: floor(root / "floor", payloads),
            None,
        )
        timed(
            "BlobStore.put, plain",
            args.count,
            lambda: [BlobStore(root / "plain").put(p) for p in payloads],
            base,
        )
        store = BlobStore(root / "enc", key)
        timed(
            "BlobStore.put, AES-256-GCM", args.count, lambda: [store.put(p) for p in payloads], base
        )
        engines = [("SQLite", f"sqlite:///{root / 'bench.db'}")]
        if args.postgres:
            engines.append(("PostgreSQL", args.postgres))
        for name, url in engines:
            db = Database.open(url)
            db.upgrade()
            timed(
                f"accept path (put + append + commit), {name}",
                args.count,
                lambda db=db, n=name: accept_path(db, BlobStore(root / f"acc-{n}", key), payloads),
                base,
            )
            db.dispose()
        big = os.urandom(1 << 20)
        start = time.perf_counter()
        with store.writer() as writer:
            for _ in range(50):
                writer.write(big)
            ref = writer.commit()
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        total = sum(len(c) for c in store.open(ref.sha256))
        read_s = time.perf_counter() - start
        print(
            f"\n50 MB message, encrypted: write {50 / write_s:.0f} MB/s, "
            f"verified read {total / (1 << 20) / read_s:.0f} MB/s"
        )


if __name__ == "__main__":
    main()
