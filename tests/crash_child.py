"""Run by tests/test_crash.py in a child process: store a message and index it,
SIGKILLing itself at the named step. Not a test module."""

import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from mssante import index
from mssante.db import Database
from mssante.store import SEGMENT, BlobStore

url, root, key_hex, step = sys.argv[1:]


def die_at(name: str) -> None:
    if name == step:
        os.kill(os.getpid(), signal.SIGKILL)


store = BlobStore(Path(root), bytes.fromhex(key_hex) if key_hex else None, checkpoint=die_at)
db = Database.open(url)
data = os.urandom(3 * SEGMENT + 5)
ref = store.put(data[i : i + 10000] for i in range(0, len(data), 10000))
with db.transaction() as conn:
    inbox = index.get_mailbox(conn, "dr.martin@demo.mssante.test", "INBOX")
    assert inbox is not None
    index.append(
        conn,
        inbox,
        ref,
        internal_date=datetime.now(UTC),
        delivery_key=f"crash-{step}:dr.martin@demo.mssante.test",
    )
    die_at("before-commit")
die_at("committed")
print("finished without being killed", file=sys.stderr)
sys.exit(3)
