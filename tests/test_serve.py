"""`mssante init --demo` then `mssante serve` as real processes on real sockets."""

import re
import signal
import socket
import ssl
import time

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from certs import client_context, load_certificates, server_context, verify_chain
from mssante import config as cfg
from mssante.app import open_database
from mssante.db import MIGRATIONS

from nodes import free_port_offset, http_get, mssante


def init_demo(data_dir, *extra):
    result = mssante(
        "init",
        "--demo",
        "--data-dir",
        str(data_dir),
        "--port-offset",
        str(free_port_offset()),
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return cfg.load(data_dir)


def edit(data_dir, old, new):
    path = data_dir / cfg.CONFIG_NAME
    body = path.read_text()
    assert old in body
    path.write_text(body.replace(old, new))


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_demo_node_is_healthy_within_10s_and_stops_on_sigterm(
    tmp_path, request, engine, start_node
):
    extra = ()
    if engine == "postgresql":
        extra = ("--database-url", request.getfixturevalue("postgres_url"))
    config = init_demo(tmp_path / "node", *extra)
    port = config.listeners.http.port

    started = time.monotonic()
    node = start_node(tmp_path / "node")
    try:
        node.wait_for(" ready ", timeout=10)
        status, body = http_get(port, "/healthz")
        assert (status, body) == (200, "ok\n")
        assert time.monotonic() - started < 10
        status, metrics = http_get(port, "/metrics")
        assert status == 200 and "mssante_ready 1" in metrics
        assert 'mssante_connections_total{listener="http"}' in metrics
        assert http_get(port, "/nowhere")[0] == 404
        status, xml = http_get(port, "/.well-known/autoconfig/mail/config-v1.1.xml")
        assert status == 200 and f"<port>{config.listeners.imaps.port}</port>" in xml
        with socket.create_connection(("127.0.0.1", config.listeners.imap.port), timeout=5) as s:
            assert s.recv(4096).startswith(b"* OK [CAPABILITY IMAP4rev1 IMAP4rev2 STARTTLS")
    finally:
        stopping = time.monotonic()
        code = node.stop(signal.SIGTERM)
    assert code == 0, "".join(node.lines)
    assert time.monotonic() - stopping < config.server.shutdown_grace_seconds
    assert any("stopped" in line for line in node.lines)
    with socket.socket() as s:  # the port is released (TIME_WAIT aside, as for any server)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()


@pytest.mark.slow
def test_in_flight_sessions_get_the_grace_period_then_are_cut(tmp_path, start_node):
    config = init_demo(tmp_path)
    with open(tmp_path / cfg.CONFIG_NAME, "a") as fh:
        fh.write("\n[server]\nshutdown_grace_seconds = 1.5\n")
    node = start_node(tmp_path)
    node.wait_for(" ready ")
    idle = socket.create_connection(("127.0.0.1", config.listeners.http.port))
    try:
        idle.sendall(b"GET /hea")  # a request that never completes
        _wait_open_http_sessions(config.listeners.http.port, 2)  # it, and the /metrics probe
        started = time.monotonic()
        code = node.stop(signal.SIGINT)
        elapsed = time.monotonic() - started
    finally:
        idle.close()
    assert code == 0
    assert 1.5 <= elapsed < 8, elapsed  # waited for the session, then cancelled it
    assert any("cancelled at the end of the grace period" in line for line in node.lines)


def _wait_open_http_sessions(port: int, count: int, timeout: float = 10.0) -> None:
    """Until the node has accepted ``count`` HTTP connections (a signal sent before
    it accepted the idle one would find no session in flight)."""
    pattern = re.compile(r'^mssante_connections_open\{listener="http"\} (\d+)', re.M)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(http_get(port, "/metrics")[1])
        if found and int(found.group(1)) >= count:
            return
        time.sleep(0.05)  # waiting for another process, not timing a behaviour
    raise AssertionError("the node never accepted the idle connection")


@pytest.mark.slow
def test_json_logs_are_one_object_per_line(tmp_path, start_node):
    init_demo(tmp_path)
    edit(tmp_path, 'format = "text"', 'format = "json"')
    node = start_node(tmp_path)
    node.wait_for('"ready"')
    assert node.stop() == 0
    events = node.json_lines()
    ready = next(e for e in events if e["event"] == "ready")
    assert {"ts", "level", "logger", "event"} <= set(ready)
    assert "http 127.0.0.1:" in str(ready["services"])
    assert len(events) == len(node.lines), "every line is one JSON object"


@pytest.mark.slow
def test_serve_refuses_an_out_of_date_schema_until_db_upgrade(tmp_path):
    config = init_demo(tmp_path)
    db = open_database(config)
    with db.transaction() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    db.dispose()

    refused = mssante("serve", "--data-dir", str(tmp_path))
    assert refused.returncode == 2
    assert "mssante db upgrade" in refused.stderr
    assert mssante("db", "status", "--data-dir", str(tmp_path)).returncode == 1

    # Put the version back (the tables are all there) and the node is current again.
    db = open_database(config)
    head = db.schema_status().head
    with db.transaction() as conn:
        conn.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": head})
    db.dispose()
    status = mssante("db", "status", "--data-dir", str(tmp_path))
    assert status.returncode == 0 and "up to date" in status.stdout


def test_db_upgrade_creates_the_schema_of_an_empty_database(tmp_path):
    init_demo(tmp_path)
    (tmp_path / "mssante.db").unlink()
    assert mssante("serve", "--data-dir", str(tmp_path)).returncode == 2
    upgraded = mssante("db", "upgrade", "--data-dir", str(tmp_path))
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert upgraded.returncode == 0 and f"empty -> {head}" in upgraded.stdout


@pytest.mark.slow
def test_a_busy_port_is_a_clear_failure(tmp_path):
    config = init_demo(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.listeners.http.port))
        taken.listen()
        result = mssante("serve", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "address already in use" in result.stderr.lower()


def test_init_refuses_an_initialised_directory_and_needs_a_domain(tmp_path):
    init_demo(tmp_path)
    again = mssante("init", "--demo", "--data-dir", str(tmp_path))
    assert again.returncode == 2 and "already initialised" in again.stderr
    missing = mssante("init", "--data-dir", str(tmp_path / "other"))
    assert missing.returncode == 2 and "--domain" in missing.stderr


def test_init_without_demo_makes_no_pki_and_private_files(tmp_path):
    result = mssante("init", "--domain", "CHU-Exemple.mssante.fr", "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    config = cfg.load(tmp_path)
    assert config.node.domain == "chu-exemple.mssante.fr"
    assert not (tmp_path / "pki").exists()
    assert (tmp_path / "keys" / "store.key").stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_two_nodes_sharing_a_ca_complete_a_mutual_tls_handshake(tmp_path):
    # covers: TS-1
    a = init_demo(tmp_path / "a", "--domain", "hopital-a.mssante.test")
    b = init_demo(
        tmp_path / "b",
        "--domain",
        "clinique-b.mssante.test",
        "--ca-dir",
        str(tmp_path / "a" / "pki" / "ca"),
    )
    assert not (tmp_path / "b" / "pki" / "ca").exists(), "b reuses a's CA, it has none of its own"
    chain = load_certificates(b.path(b.tls.cert_file))
    result = verify_chain(
        chain[0],
        intermediates=chain[1:],
        anchors=load_certificates(a.path(a.tls.ca_file)),
        at=chain[0].not_valid_before_utc,
        purpose="client",
        hostname="mx.clinique-b.mssante.test",
    )
    assert result.ok, result.detail

    server = server_context(
        a.path(a.tls.cert_file),
        a.path(a.tls.key_file),
        client_auth="required",
        anchors_file=a.path(a.tls.ca_file),
        crl_files=[a.path(f) for f in a.tls.crl_files],
    )
    client = client_context(
        anchors_file=b.path(b.tls.ca_file),
        cert_file=b.path(b.tls.cert_file),
        key_file=b.path(b.tls.key_file),
        crl_files=[b.path(f) for f in b.tls.crl_files],
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client_sock = socket.create_connection(listener.getsockname())
        server_sock, _ = listener.accept()
        tls_server = server.wrap_socket(
            server_sock, server_side=True, do_handshake_on_connect=False
        )
        tls_client = client.wrap_socket(
            client_sock, server_hostname="mx.hopital-a.mssante.test", do_handshake_on_connect=False
        )
        tls_server.setblocking(False)
        tls_client.setblocking(False)
        done = {"s": False, "c": False}
        deadline = time.monotonic() + 10
        while not all(done.values()) and time.monotonic() < deadline:
            for key, sock in (("c", tls_client), ("s", tls_server)):
                if done[key]:
                    continue
                try:
                    sock.do_handshake()
                    done[key] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
        assert all(done.values())
        assert tls_client.version() in ("TLSv1.2", "TLSv1.3")
        peer = tls_server.getpeercert()
        assert ("commonName", "mx.clinique-b.mssante.test") in [x[0] for x in peer["subject"]]
        tls_client.close()
        tls_server.close()
