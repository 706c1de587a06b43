# covers: Y-3, Y-6, Y-7
"""`mssante dmp …` as an operator runs it: a real data directory, real processes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cda import store as dmp
from cda.codes import VISIBILITY_OID, Visibility
from cda.document import parse_cda
from cda.xdm import read_xdm
from mssante import config as cfg
from mssante.app import Runtime
from mssante.schema import audit_log

from cdagen import AUTHOR_PS_ID, DOC_ROOT, INS, SET_ROOT, make_cda
from nodes import mssante

SECRET_TITLE = "Bilan tres confidentiel"
INVISIBLE = frozenset({Visibility.INVISIBLE_PATIENT})


@pytest.fixture
def node(tmp_path: Path) -> Path:
    data = tmp_path / "node"
    result = mssante("init", "--demo", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    return data


def deposit(
    data_dir: Path,
    name: str,
    *,
    version: int = 1,
    visibility: frozenset[Visibility] = frozenset(),
    **kwargs: Any,
) -> tuple[dmp.DepositResult, bytes]:
    """Deposit a CDA of set ``name`` (its version ``version``) straight into the store."""
    data = make_cda(
        doc_id=(DOC_ROOT, f"{name}.v{version}"),
        set_id=(SET_ROOT, name),
        version=str(version),
        **kwargs,
    )
    header = parse_cda(data, test_mode=True)
    runtime = Runtime.open(cfg.load(data_dir))
    try:
        with runtime.db.transaction() as conn:
            result = dmp.deposit(
                conn,
                runtime.store,
                header,
                data,
                visibility=visibility,
                author=AUTHOR_PS_ID,
                now=datetime.now(UTC),
                test_mode=True,
            )
    finally:
        runtime.db.dispose()
    return result, data


def added(data_dir: Path, name: str, **kwargs: Any) -> tuple[int, bytes]:
    result, data = deposit(data_dir, name, **kwargs)
    assert result.document_id is not None and result.kind in ("deposited", "replaced"), result
    return result.document_id, data


def run(node: Path, *args: str) -> Any:
    return mssante("dmp", *args, "--data-dir", str(node))


def ok(node: Path, *args: str) -> str:
    result = run(node, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return str(result.stdout)


def fails(node: Path, *args: str, code: int, words: str) -> None:
    result = run(node, *args)
    assert result.returncode == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr


def listed(node: Path, *args: str) -> dict[int, list[str]]:
    out = ok(node, "list", "--ins", INS, *args)
    rows = [line.split("\t") for line in out.splitlines() if not line.startswith("(")]
    return {int(row[0]): row[1:] for row in rows}


def test_list_show_and_versions(node: Path) -> None:
    plain, _ = added(node, "a", title=SECRET_TITLE)
    hidden, _ = added(node, "b", visibility=INVISIBLE)
    newer, _ = added(node, "a", version=2, title=SECRET_TITLE)

    rows = listed(node)
    assert sorted(rows) == [hidden, newer]
    assert rows[newer][:3] == ["current", "v2", "11490-0"]
    assert rows[newer][4:] == ["-", SECRET_TITLE]
    assert rows[hidden][4] == "INVISIBLE_PATIENT"
    assert datetime.strptime(rows[hidden][3], "%Y-%m-%d")
    assert sorted(listed(node, "--view", "patient")) == [newer]
    every = listed(node, "--all")
    assert sorted(every) == [plain, hidden, newer] and every[plain][0] == "superseded"

    shown = ok(node, "show", str(plain))
    assert f"unique_id: {DOC_ROOT}^a.v1" in shown
    assert f"superseded_by: {newer}" in shown and f"title: {SECRET_TITLE}" in shown
    # The hidden document is shown to the operator all the same.
    assert "visibility: INVISIBLE_PATIENT" in ok(node, "show", str(hidden))
    fails(node, "show", "9999", code=1, words="no DMP document 9999")


def test_export_writes_an_xdm_package(node: Path, tmp_path: Path) -> None:
    document_id, data = added(node, "a", visibility=INVISIBLE, title=SECRET_TITLE)
    out = tmp_path / "export.zip"
    assert "wrote" in ok(node, "export", str(document_id), "--out", str(out))

    package = read_xdm(out.read_bytes())
    (subset,) = package.submission_sets
    (entry,) = subset.entries
    assert not subset.findings
    assert entry.hash == hashlib.sha1(data, usedforsecurity=False).hexdigest()
    assert subset.documents[entry.id] == data
    assert entry.unique_id == f"{DOC_ROOT}^a.v1" and entry.ins == INS
    assert entry.title == SECRET_TITLE
    assert entry.type_code is not None and entry.type_code.code == "11490-0"
    flags = {c.code for c in entry.confidentiality if c.system == VISIBILITY_OID}
    assert flags == {"INVISIBLE_PATIENT"}
    fails(node, "export", "9999", "--out", str(tmp_path / "x.zip"), code=1, words="9999")
    assert not (tmp_path / "x.zip").exists()


def test_set_visibility_changes_the_patient_view(node: Path) -> None:
    hidden, _ = added(node, "b", visibility=INVISIBLE)
    plain, _ = added(node, "c")
    assert sorted(listed(node, "--view", "patient")) == [plain]

    fails(node, "set-visibility", str(hidden), "--masked-ps", "yes", code=1, words="not both")
    fails(node, "set-visibility", str(plain), "--invisible-patient", "yes", code=1, words="only at")
    fails(node, "set-visibility", str(hidden), code=2, words="give --invisible-patient")
    fails(node, "set-visibility", "9999", "--masked-ps", "no", code=1, words="no DMP document")

    out = ok(node, "set-visibility", str(hidden), "--invisible-patient", "no")
    assert out.strip() == f"document {hidden}: -"
    assert sorted(listed(node, "--view", "patient")) == [hidden, plain]

    ok(node, "set-visibility", str(plain), "--masked-ps", "yes", "--invisible-legal-reps", "yes")
    assert sorted(listed(node)) == [hidden]
    assert listed(node, "--view", "patient")[plain][4] == "INVISIBLE_REPRESENTANTS_LEGAUX,MASQUE_PS"


def test_opposition_blocks_deposits_and_the_trail_shows_it(node: Path) -> None:
    assert ok(node, "oppose", INS).strip() == "now opposed to deposits"
    assert ok(node, "oppose", INS).strip() == "already opposed to deposits"
    refused, _ = deposit(node, "a", title=SECRET_TITLE)
    assert refused.kind == "refused" and refused.ack_code == dmp.ACK_OTHER
    assert ok(node, "unoppose", INS).strip() == "now accepting deposits"
    document_id, _ = added(node, "a", title=SECRET_TITLE)
    ok(node, "list", "--ins", INS)
    ok(node, "show", str(document_id))

    trail = ok(node, "trail", "--ins", INS).splitlines()
    events = [line.split(" ")[2:4] for line in trail]
    assert events == [
        ["dmp.opposition", "opposed"],
        ["dmp.deposit", "refused"],
        ["dmp.opposition", "lifted"],
        ["dmp.deposit", "deposited"],
        ["dmp.read", "ok"],
        ["dmp.read", "ok"],
    ]
    assert trail[0].split(" ")[1].startswith("cli:")
    assert trail[3].split(" ")[1] == AUTHOR_PS_ID
    # Neither the INS nor the title is written to the audit log.
    runtime = Runtime.open(cfg.load(node))
    try:
        with runtime.db.read() as conn:
            rows = conn.execute(select(audit_log)).all()
    finally:
        runtime.db.dispose()
    text = "\n".join(str(tuple(row)) for row in rows)
    assert INS not in text and SECRET_TITLE not in text and "\n".join(trail).count(INS) == 0


def test_invalid_ins_is_a_usage_error(node: Path) -> None:
    for args in (
        ("list", "--ins", "123"),
        ("trail", "--ins", INS[:-2] + "00"),
        ("oppose", "1234567890123AB"),
        ("unoppose", "x"),
    ):
        fails(node, *args, code=2, words="invalid INS")
