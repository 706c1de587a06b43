"""A running node: the search API over HTTP, and a new whitelist picked up without restart."""

import json
import time
import urllib.parse

import pytest

from annuaire.dn import parse_dn
from annuaire.whitelist_xml import WhitelistEntry, render_whitelist
from mssante import config as cfg

from factories import NOW, rpps
from nodes import free_port_offset, http_get, mssante


@pytest.fixture
def node(tmp_path, start_node):
    data = tmp_path / "node"
    result = mssante(
        "init", "--demo", "--data-dir", str(data), "--port-offset", str(free_port_offset())
    )
    assert result.returncode == 0, result.stderr
    with open(data / cfg.CONFIG_NAME, "a") as fh:
        fh.write("\n[whitelist]\nrefresh_seconds = 0.2\n")
    people = [
        ("durand.paul", "DURAND Paul", 1),
        ("durandal.marie", "DURANDAL Marie", 2),
        ("martin.anne", "MARTIN Anne", 3),
    ]
    for local, name, n in people:
        added = mssante(
            "bal",
            "add",
            f"{local}@demo.mssante.test",
            "--type",
            "PER",
            "--rpps",
            rpps(n),
            "--display-name",
            name,
            "--city",
            "Lyon",
            "--data-dir",
            str(data),
        )
        assert added.returncode == 0, added.stderr
    running = start_node(data)
    running.wait_for(" ready ", timeout=30)
    yield data, cfg.load(data).listeners.http.port, running
    assert running.stop() == 0


def search(port: int, **params: str) -> tuple[int, dict]:
    status, body = http_get(port, "/annuaire/search?" + urllib.parse.urlencode(params))
    return status, json.loads(body)


def test_search_api_ranks_and_paginates_over_http(node):
    # covers: ANN-2
    _, port, _ = node
    status, body = search(port, q="durand")
    assert status == 200
    assert [r["address"] for r in body["results"]] == [
        "durand.paul@demo.mssante.test",
        "durandal.marie@demo.mssante.test",
    ]
    assert body["results"][0]["match"] == "name" and body["has_more"] is False
    status, body = search(port, q=rpps(3))
    assert [r["address"] for r in body["results"]] == ["martin.anne@demo.mssante.test"]
    assert body["results"][0]["match"] == "identifier"
    status, body = search(port, city="lyon", limit="2")
    assert len(body["results"]) == 2 and body["has_more"] is True
    status, body = search(port, city="lyon", limit="2", offset="2")
    assert len(body["results"]) == 1 and body["has_more"] is False
    assert search(port, q="x", limit="1000")[0] == 400
    assert search(port, q="x", type="ZZZ")[0] == 400
    assert search(port)[0] == 400


def test_a_new_whitelist_is_seen_by_the_running_node_without_restart(node, tmp_path):
    # covers: TS-2
    data, port, running = node
    _, metrics = http_get(port, "/metrics")
    assert "mssante_whitelist_entries 0" in metrics
    listing = tmp_path / "liste.xml"
    entries = [WhitelistEntry(f"d{i}.mssante.fr", parse_dn("CN=x,C=FR")) for i in range(12)]
    listing.write_bytes(render_whitelist(entries, NOW))
    assert mssante("whitelist", "update", str(listing), "--data-dir", str(data)).returncode == 0
    running.wait_for("whitelist in force", timeout=10)
    deadline = time.monotonic() + 10
    while "mssante_whitelist_entries 12" not in metrics and time.monotonic() < deadline:
        _, metrics = http_get(port, "/metrics")
    assert "mssante_whitelist_entries 12" in metrics
    assert f"mssante_whitelist_generated_timestamp_seconds {int(NOW.timestamp())}" in metrics
