"""`mssante init`: lay out a data directory a node can serve from.

``DIR/mssante.toml`` (written last, so a failed init can simply be re-run),
``DIR/keys/store.key``, ``DIR/blobs/``, the database schema, and with
``--demo`` a demo PKI: ``DIR/pki/ca/`` (root + intermediate) and the node's
server certificate in ``DIR/pki/server.pem|.key``. ``--ca-dir`` issues the
server certificate from another node's CA instead, so two nodes share a
trust space.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from certs import CertificateAuthority
from mssante import config as cfg
from mssante.db import Database
from mssante.errors import OperatorError
from mssante.files import atomic_write
from mssante.store import generate_key

DEMO_DOMAIN = "demo.mssante.test"

#: Demo listener ports (before ``--port-offset``), from the architecture contract.
DEMO_PORTS = {
    "mx": 2525,
    "submission": 2587,
    "submissions": 2465,
    "imap": 2143,
    "imaps": 2993,
    "http": 8025,
    "https": 8443,
}


class InitError(OperatorError):
    pass


@dataclass(frozen=True)
class InitOptions:
    data_dir: Path
    domain: str
    patient_domain: str = "patient.mssante.fr"
    demo: bool = False
    ca_dir: Path | None = None
    port_offset: int = 0
    database_url: str = ""


def init(options: InitOptions, *, now: datetime) -> cfg.Config:
    """Create the data directory; refuse to touch one that is already initialised."""
    data_dir = options.data_dir
    config_file = data_dir / cfg.CONFIG_NAME
    if config_file.exists():
        raise InitError(f"{config_file} exists: this data directory is already initialised")
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_file = data_dir / "keys" / "store.key"
    if not key_file.exists():
        generate_key(key_file)
    (data_dir / "blobs").mkdir(exist_ok=True, mode=0o700)
    if options.demo and not (data_dir / "keys" / "dkim.key").exists():
        from smtp.dkim import generate_key as generate_dkim_key

        generate_dkim_key(data_dir / "keys" / "dkim.key")

    hostname = f"mx.{options.domain}"
    ca_file: str | None = None
    crl_file: str | None = None
    if options.demo or options.ca_dir is not None:
        ca_dir = options.ca_dir.resolve() if options.ca_dir else data_dir / "pki" / "ca"
        (data_dir / "pki").mkdir(exist_ok=True, mode=0o700)
        ca = _demo_ca(ca_dir, own=options.ca_dir is None, now=now)
        issued = ca.issue(
            "server",
            cn=hostname,
            sans=[hostname, options.domain, "localhost", "127.0.0.1"],
            now=now,
        )
        ca.write_pem(issued, data_dir / "pki" / "server")
        # Pointing at the CA's own files means a revocation there reaches this node.
        ca_file = "pki/ca/root.pem" if options.ca_dir is None else str(ca_dir / "root.pem")
        crl_file = "pki/ca/crl.pem" if options.ca_dir is None else str(ca_dir / "crl.pem")

    text = render_config(options, hostname=hostname, ca_file=ca_file, crl_file=crl_file)
    atomic_write(config_file, text.encode("utf-8"))
    config = cfg.load(data_dir)  # what we wrote must be what serve accepts
    db = Database.open(config.database_url)
    try:
        db.upgrade()
    finally:
        db.dispose()
    return config


def _demo_ca(ca_dir: Path, *, own: bool, now: datetime) -> CertificateAuthority:
    if (ca_dir / "root.pem").exists() or not own:
        return CertificateAuthority.load(ca_dir)
    return CertificateAuthority.create(ca_dir, name="MSSANTE DEMO", now=now)


def render_config(
    options: InitOptions, *, hostname: str, ca_file: str | None, crl_file: str | None
) -> str:
    lines = [
        "# MSSanté operator node configuration: every key is described in",
        "# docs/configuration.md. Relative paths are relative to this directory.",
        "",
        "[node]",
        f'domain = "{options.domain}"',
        f'hostname = "{hostname}"',
        f'patient_domain = "{options.patient_domain}"',
        "",
        *(["[database]", f'url = "{options.database_url}"', ""] if options.database_url else []),
        "[store]",
        "encrypt = true",
        'key_file = "keys/store.key"',
        "",
    ]
    if ca_file is not None:
        lines += [
            "[tls]",
            'cert_file = "pki/server.pem"',
            'key_file = "pki/server.key"',
            f'ca_file = "{ca_file}"',
            f'crl_files = ["{crl_file}"]',
            "",
        ]
    if options.demo:
        for name, port in DEMO_PORTS.items():
            lines += [
                f"[listeners.{name}]",
                'host = "127.0.0.1"',
                f"port = {port + options.port_offset}",
                "",
            ]
    lines += ["[logging]", 'format = "text"', 'level = "info"', ""]
    return "\n".join(lines)
