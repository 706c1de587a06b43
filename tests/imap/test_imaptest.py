# covers: TS-4
"""Dovecot's imaptest scripts (shared/conformance/imaptest) against our server, over STARTTLS.

The gate: no script fails. Scripts needing an extension we do not offer are
skipped by the runner and listed in the test output; the counts are printed
so the closing notes can compare them with Dovecot's (69 passed, 1 failed,
2 skipped).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import PASSWORD, ImapNode, start_node

RUNNER = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "imaptest"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImapNode]:
    node = start_node(tmp_path_factory.mktemp("imaptest"))
    try:
        yield node
    finally:
        node.stop()


@pytest.mark.skipif(not RUNNER.is_dir(), reason=f"the imaptest corpus is not at {RUNNER}")
def test_no_imaptest_script_fails(node: ImapNode, tmp_path: Path) -> None:
    user = node.new_user("imaptest")
    out = tmp_path / "results.json"
    result = subprocess.run(
        [
            sys.executable, str(RUNNER / "run_imaptest.py"), "--host", "127.0.0.1",
            "--port", str(node.ports["imap"]), "--starttls", "--cafile", str(node.ca_file),
            "--sni", "demo.mssante.test", "--user", user, "--password", PASSWORD,
            "--timeout", "10", "--json", str(out),
        ],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    report = json.loads(out.read_text())
    summary = report["summary"]
    print(
        f"imaptest: {summary['passed']} passed, {summary['failed']} failed, "
        f"{summary['skipped']} skipped"
    )
    failed = [r for r in report["results"] if r["status"] == "FAIL"]
    assert not failed, result.stdout[-4000:]
    assert summary["passed"] >= 63, "a script that passed before no longer runs"
