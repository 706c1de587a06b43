"""Kill -9 at every step of a write: no row may point at a missing or partial blob."""

import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from mssante import index
from mssante.schema import mailbox_messages
from mssante.store import WRITE_STEPS, BlobStore

CHILD = Path(__file__).with_name("crash_child.py")
STEPS = (*WRITE_STEPS, "before-commit", "committed")
KEY = bytes(range(32))


@pytest.mark.slow
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plain"])
def test_sigkill_at_each_write_step_leaves_no_dangling_row(db, tmp_path, encrypted):
    key = KEY if encrypted else None
    db_url = db.engine.url.render_as_string(hide_password=False)
    store = BlobStore(tmp_path / "blobs", key)
    now = datetime.now(UTC)
    with db.transaction() as conn:
        index.ensure_default_mailboxes(conn, "dr.martin@demo.mssante.test", now=now)

    for step in STEPS:
        child = subprocess.run(
            [sys.executable, str(CHILD), db_url, str(store.root), key.hex() if key else "", step],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert child.returncode == -signal.SIGKILL, (step, child.stderr)

        with db.read() as conn:
            rows = conn.execute(select(mailbox_messages)).all()
        mine = [r for r in rows if r.delivery_key == f"crash-{step}:dr.martin@demo.mssante.test"]
        assert len(mine) == (1 if step == "committed" else 0), step
        for row in rows:  # every row names a whole, verifiable blob
            assert len(store.read(row.blob_sha256)) == row.size

    # Everything a killed writer left behind is garbage, and only that goes.
    report = store.gc(
        {r.blob_sha256 for r in rows}, now=datetime.now(UTC) + timedelta(days=1), grace_seconds=0
    )
    # tmp-written, tmp-synced: a temporary file; renamed, dir-synced, before-commit: an orphan.
    assert report.temporary_removed == 2
    assert len(report.removed) == 3
    assert not list((store.root / "tmp").iterdir())
    assert sorted(store.iter_digests()) == sorted({r.blob_sha256 for r in rows})
    for row in rows:
        store.read(row.blob_sha256)
