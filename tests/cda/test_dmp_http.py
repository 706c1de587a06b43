# covers: Y-4, Y-6
"""`GET /dmp/patients/{ins}/documents`: the views over HTTP on a running node."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cda import store as dmp
from cda.codes import Visibility
from cda.document import parse_cda
from mssante import config as cfg
from mssante import http
from mssante.app import Runtime

from cdagen import AUTHOR_PS_ID, DOC_ROOT, INS, SET_ROOT, make_cda
from nodes import add_config, free_port_offset, http_get, mssante


def test_pattern_routes_capture_segments() -> None:
    assert http.match_path("/dmp/patients/{ins}/documents", "/dmp/patients/1%202/documents") == {
        "ins": "1 2"
    }
    for path in ("/dmp/patients//documents", "/dmp/patients/a/b/documents", "/dmp/patients/a"):
        assert http.match_path("/dmp/patients/{ins}/documents", path) is None
    assert http.match_path("/dmp/patients/{ins}/documents", "/dmp/patients/a%2Fb/documents") is None


async def test_respond_passes_captured_segments_over_the_query() -> None:
    async def echo(params: dict[str, str]) -> http.Response:
        return http.json_response(200, params)

    routes = {"/x/{id}": echo, "/x/fixed": echo}
    answer = await http.respond(http.Request("GET", "/x/7", {"id": "0", "q": "1"}), routes)
    assert json.loads(answer.body) == {"id": "7", "q": "1"}
    answer = await http.respond(http.Request("GET", "/x/fixed", {"q": "1"}), routes)
    assert json.loads(answer.body) == {"q": "1"}
    assert (await http.respond(http.Request("GET", "/y/7"), routes)).status == 404


def deposit(runtime: Runtime, name: str, visibility: frozenset[Visibility]) -> int:
    data = make_cda(doc_id=(DOC_ROOT, name), set_id=(SET_ROOT, name), title=f"Document {name}")
    with runtime.db.transaction() as conn:
        result = dmp.deposit(
            conn,
            runtime.store,
            parse_cda(data, test_mode=True),
            data,
            visibility=visibility,
            author=AUTHOR_PS_ID,
            now=datetime.now(UTC),
            test_mode=True,
        )
    assert result.kind == "deposited" and result.document_id is not None
    return result.document_id


@pytest.fixture
def node(tmp_path: Path, start_node: Any) -> Any:
    data = tmp_path / "node"
    result = mssante(
        "init", "--demo", "--data-dir", str(data), "--port-offset", str(free_port_offset())
    )
    assert result.returncode == 0, result.stderr
    add_config(data / cfg.CONFIG_NAME, "[dmp]\nhttp_views = true\n")
    runtime = Runtime.open(cfg.load(data))
    try:
        ids = {
            "plain": deposit(runtime, "plain", frozenset()),
            "invisible": deposit(runtime, "invisible", frozenset({Visibility.INVISIBLE_PATIENT})),
            "masked": deposit(runtime, "masked", frozenset({Visibility.MASQUE_PS})),
        }
    finally:
        runtime.db.dispose()
    running = start_node(data)
    running.wait_for(" ready ", timeout=30)
    yield data, cfg.load(data).listeners.http.port, ids
    assert running.stop() == 0


def get(port: int, ins: str, **params: str) -> tuple[int, Any]:
    query = urllib.parse.urlencode(params)
    status, body = http_get(port, f"/dmp/patients/{ins}/documents?{query}")
    return status, json.loads(body)


def shown(port: int, **params: str) -> set[int]:
    status, body = get(port, INS, **params)
    assert status == 200, body
    return {d["id"] for d in body["documents"]}


def test_views_honour_visibility_over_http(node: Any) -> None:
    data_dir, port, ids = node
    assert shown(port, view="patient") == {ids["plain"], ids["masked"]}
    assert shown(port, view="professional") == {ids["plain"], ids["invisible"]}
    assert shown(port, view="professional", reader="810009876543") == {
        ids["plain"],
        ids["invisible"],
    }
    assert shown(port, view="professional", reader=AUTHOR_PS_ID) == set(ids.values())

    status, body = get(port, INS, view="patient")
    (first, *_) = body["documents"]
    assert body["view"] == "patient"
    assert first == {
        "id": ids["plain"],
        "unique_id": f"{DOC_ROOT}^plain",
        "set_id": f"{SET_ROOT}^plain",
        "version": 1,
        "status": "current",
        "type_code": "11490-0",
        "type_system": "2.16.840.1.113883.6.1",
        "title": "Document plain",
        "deposited_at": first["deposited_at"],
        "flags": [],
    }
    assert datetime.fromisoformat(first["deposited_at"]).tzinfo is not None
    masked = next(d for d in body["documents"] if d["id"] == ids["masked"])
    assert masked["flags"] == ["MASQUE_PS"]

    for bad in ("123", INS[:-2] + "00"):
        status, body = get(port, bad, view="patient")
        assert status == 400 and body["error"].startswith("invalid INS")
    for params in ({"view": "admin"}, {}):
        status, body = get(port, INS, **params)
        assert status == 400 and "view" in body["error"]

    # Every consultation is in the patient's trail (Y-6), by its reader.
    runtime = Runtime.open(cfg.load(data_dir))
    try:
        with runtime.db.read() as conn:
            reads = [e for e in dmp.audit_trail(conn, INS) if e.action == "dmp.read"]
    finally:
        runtime.db.dispose()
    assert [(e.actor, e.details["view"], e.details["count"]) for e in reads] == [
        ("http:anonymous", "patient", 2),
        ("http:anonymous", "professional", 2),
        ("810009876543", "professional", 2),
        (AUTHOR_PS_ID, "professional", 3),
        ("http:anonymous", "patient", 2),
    ]


def test_views_are_off_by_default(tmp_path: Path, start_node: Any) -> None:
    """No authentication yet: a node serves no record unless the operator asks."""
    data = tmp_path / "plain"
    made = mssante(
        "init", "--demo", "--data-dir", str(data), "--port-offset", str(free_port_offset())
    )
    assert made.returncode == 0, made.stderr
    running = start_node(data)
    running.wait_for(" ready ", timeout=30)
    status, _ = http_get(
        cfg.load(data).listeners.http.port, f"/dmp/patients/{INS}/documents?view=patient"
    )
    assert status == 404
    assert running.stop() == 0
