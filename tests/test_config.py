"""Configuration: every bad file stops `serve` with one line naming file and key (exit 2)."""

import subprocess
import sys
from pathlib import Path

import pytest

from mssante import config as cfg

VALID = """\
[node]
domain = "demo.mssante.test"

[listeners.http]
port = 18025
"""

BAD = [
    # (what is wrong, TOML, key the message must name, words it must contain)
    (
        "unknown key",
        '[node]\ndomain = "demo.mssante.test"\ndomian = "x"\n',
        "node.domian",
        "unknown key",
    ),
    ("unknown section", '[node]\ndomain = "d.test"\n[smtpd]\nport = 25\n', "smtpd", "unknown key"),
    (
        "wrong type",
        '[node]\ndomain = "d.test"\n[listeners.http]\nport = "8025"\n',
        "listeners.http.port",
        "an integer",
    ),
    (
        "out of range",
        '[node]\ndomain = "d.test"\n[listeners.imap]\nport = 70000\n',
        "listeners.imap.port",
        "between 1 and 65535",
    ),
    (
        "bad choice",
        '[node]\ndomain = "d.test"\n[logging]\nformat = "xml"\n',
        "logging.format",
        '"text" or "json"',
    ),
    ("bad domain", '[node]\ndomain = "not a domain!"\n', "node.domain", "a DNS domain name"),
    ("missing domain", '[logging]\nlevel = "info"\n', "node.domain", "required"),
    (
        "password in URL",
        '[node]\ndomain = "d.test"\n[database]\nurl = "postgresql+psycopg://u:secret@db/mss"\n',
        "database.url",
        "password_file",
    ),
    (
        "bool as string",
        '[node]\ndomain = "d.test"\n[store]\nencrypt = "yes"\n',
        "store.encrypt",
        "true or false",
    ),
    (
        "hostname as bind address",
        '[node]\ndomain = "d.test"\n[listeners.mx]\nhost = "mx.d.test"\n',
        "listeners.mx.host",
        "an IP address",
    ),
    (
        "negative grace",
        '[node]\ndomain = "d.test"\n[server]\nshutdown_grace_seconds = -1\n',
        "server.shutdown_grace_seconds",
        "greater than or equal to 0",
    ),
    (
        "list expected",
        '[node]\ndomain = "d.test"\n[tls]\ncrl_files = "crl.pem"\n',
        "tls.crl_files",
        "a list of file paths",
    ),
    ("not TOML", "[node\ndomain = 1\n", "-", "valid TOML"),
    (
        "smarthost without port",
        '[node]\ndomain = "d.test"\n[notifications]\nsmarthost = "relay.example"\n',
        "notifications.smarthost",
        "host:port",
    ),
    (
        "notification url",
        '[node]\ndomain = "d.test"\n[notifications]\nurl = "javascript:alert(1)"\n',
        "notifications.url",
        "http(s) URL",
    ),
    (
        "negative retention",
        '[node]\ndomain = "d.test"\n[patients]\nretention_days = -1\n',
        "patients.retention_days",
        "greater than or equal to 0",
    ),
    (
        "bridge outside our domains",
        '[node]\ndomain = "d.test"\nbridge_address = "dmp@other.test"\n',
        "node.bridge_address",
        "node.domain or node.extra_domains",
    ),
    (
        "bridge clients without a bridge",
        '[node]\ndomain = "d.test"\n[dmp]\nbridge_clients = ["dpi@d.test"]\n',
        "dmp.bridge_clients",
        "node.bridge_address",
    ),
    (
        "bad bridge client",
        '[node]\ndomain = "d.test"\nbridge_address = "dmp@d.test"\n[dmp]\n'
        'bridge_clients = ["not an address"]\n',
        "dmp.bridge_clients",
        "addresses local@domain",
    ),
]


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / cfg.CONFIG_NAME).write_text(text)
    return tmp_path / cfg.CONFIG_NAME


@pytest.mark.parametrize(("case", "text", "key", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_stops_serve_with_one_line_and_exit_2(tmp_path, case, text, key, words):
    file = write(tmp_path, text)
    result = subprocess.run(
        [sys.executable, "-m", "mssante", "serve", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(file) in lines[0]
    assert f": {key}: " in lines[0]
    assert words in lines[0]


def test_missing_file_says_to_run_init(tmp_path):
    with pytest.raises(cfg.ConfigError, match="mssante init"):
        cfg.load(tmp_path)


def test_valid_file_fills_defaults_and_resolves_paths(tmp_path):
    write(tmp_path, VALID)
    config = cfg.load(tmp_path)
    assert config.node.domain == "demo.mssante.test"
    assert config.hostname == "demo.mssante.test"
    assert config.listeners.http.port == 18025
    assert config.listeners.mx.port == 25
    assert config.store.encrypt is True
    assert config.path(config.store.key_file) == tmp_path.resolve() / "keys" / "store.key"
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'mssante.db'}"


def test_unicode_domain_is_accepted(tmp_path):
    write(tmp_path, '[node]\ndomain = "hôpital-exemple.mssante.fr"\n')
    assert cfg.load(tmp_path).node.domain == "hôpital-exemple.mssante.fr"


def test_configuration_reference_in_docs_is_generated_from_the_schema():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert cfg.reference_markdown() in doc, "regenerate: python -m mssante.config > table"
    for key, *_ in cfg.reference_rows():
        assert f"`{key}`" in doc
