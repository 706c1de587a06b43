"""docs/conformance.md stays true: every spec ID listed once, every claim cited by a test."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO.parent / "shared" / "spec" / "MSSANTE.md"
TABLE = REPO / "docs" / "conformance.md"
STATUSES = {"done", "partial", "planned"}
_ID = r"[A-Z]+(?:-[A-Z0-9]+)+"
ROW = re.compile(rf"^\| ({_ID}) \| (.+?) \| (\w+) \| (.*) \|$")
COVERS = re.compile(rf"#\s*covers:\s*({_ID}(?:\s*,\s*{_ID})*)")


def table() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        match = ROW.match(line)
        if match:
            ident, _, status, _ = match.groups()
            assert ident not in rows, f"{ident} listed twice"
            rows[ident] = status
    return rows


def cited() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (REPO / "tests").rglob("*.py"):
        for match in COVERS.finditer(path.read_text(encoding="utf-8")):
            for ident in filter(None, (i.strip() for i in match.group(1).split(","))):
                found.setdefault(ident, set()).add(str(path.relative_to(REPO)))
    return found


def test_every_status_is_known():
    assert table()
    assert set(table().values()) <= STATUSES


def test_every_spec_requirement_has_exactly_one_row():
    if not SPEC.exists():
        pytest.skip(f"the specification is not beside this checkout ({SPEC})")
    spec_ids = set(re.findall(r"^\* \*\*([A-Z]+(?:-[A-Z0-9]+)+)\*\*", SPEC.read_text(), re.M))
    assert spec_ids, "no requirement IDs found in the spec"
    assert set(table()) == spec_ids


def test_every_claimed_requirement_is_cited_by_a_test():
    citations = cited()
    uncited = [i for i, status in table().items() if status != "planned" and i not in citations]
    assert not uncited, f"marked done/partial but no test says '# covers: ID': {uncited}"


def test_tests_cite_only_known_requirements():
    unknown = sorted(set(cited()) - set(table()))
    assert not unknown, f"tests cite IDs that are not in docs/conformance.md: {unknown}"
