"""The `mssante` command line (the stable contract of docs/architecture.md).

Exit codes: 0 success, 1 the operation failed, 2 bad usage or something the
operator must fix first (one line on stderr saying what). Commands import the
stack lazily so that `mssante --help` and configuration errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from mssante import __version__
from mssante import config as cfg
from mssante.errors import OperatorError

EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def data_dir(args: argparse.Namespace) -> Path:
    return cfg.resolve_data_dir(args.data_dir)


def load_config(args: argparse.Namespace) -> cfg.Config:
    return cfg.load(data_dir(args))


# --------------------------------------------------------------------------- commands


def cmd_init(args: argparse.Namespace) -> int:
    from mssante.clock import SystemClock
    from mssante.datadir import DEMO_DOMAIN, InitOptions, init

    if not args.domain and not args.demo:
        raise CommandError("init: --domain DOMAIN is required (or --demo)", EXIT_USAGE)
    if not 0 <= args.port_offset <= 60000:
        raise CommandError("init: --port-offset must be between 0 and 60000", EXIT_USAGE)
    options = InitOptions(
        data_dir=data_dir(args),
        domain=(args.domain or DEMO_DOMAIN).lower(),
        patient_domain=args.patient_domain,
        demo=args.demo,
        ca_dir=Path(args.ca_dir) if args.ca_dir else None,
        port_offset=args.port_offset,
        database_url=args.database_url or "",
    )
    config = init(options, now=SystemClock().now())
    print(f"initialised {config.data_dir} for {config.node.domain}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    from mssante import logs
    from mssante.app import Runtime, serve

    config = load_config(args)
    logs.setup(config.logging.format, config.logging.level)
    runtime = Runtime.open(config)
    try:
        asyncio.run(serve(runtime))
    except OSError as exc:  # a port already in use, a permission denied
        raise CommandError(f"serve: {exc}") from None
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from mssante.app import open_database

    db = open_database(load_config(args))
    try:
        before = db.schema_status().current
        status = db.upgrade()
    finally:
        db.dispose()
    print(f"schema {before or 'empty'} -> {status.current}")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from mssante.app import open_database

    db = open_database(load_config(args))
    try:
        status = db.schema_status()
    finally:
        db.dispose()
    state = "up to date" if status.up_to_date else "out of date: run `mssante db upgrade`"
    print(f"engine {db.dialect}, schema {status.current or 'empty'}, code {status.head}: {state}")
    return 0 if status.up_to_date else EXIT_FAILED


def cmd_store_gc(args: argparse.Namespace) -> int:
    from mssante.app import Runtime

    runtime = Runtime.open(load_config(args))
    try:
        report = runtime.collect_garbage()
    finally:
        runtime.db.dispose()
    print(
        f"removed {len(report.removed)} unreferenced blobs and {report.temporary_removed} "
        f"temporary files; kept {report.kept_young} younger than the grace period"
    )
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    from mssante import audit
    from mssante.app import open_database

    db = open_database(load_config(args))
    try:
        with db.read() as conn:
            entries = audit.query(
                conn, actor=args.actor, action=args.action, target=args.target, limit=args.limit
            )
    finally:
        db.dispose()
    for e in entries:
        details = " ".join(f"{k}={v}" for k, v in e.details.items())
        line = f"{e.at.isoformat()} {e.actor} {e.action} {e.target_kind}:{e.target} {e.outcome}"
        print(f"{line} {details}".rstrip())
    return 0


# --------------------------------------------------------------------------- parser

Handler = Callable[[argparse.Namespace], int]


class Commands:
    """Adds subcommands that all take ``--data-dir`` and name their handler."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self._sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(self, name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        parser = self._sub.add_parser(name, help=help, description=help)
        parser.add_argument(
            "--data-dir",
            metavar="DIR",
            help="data directory (default: $MSSANTE_DATA_DIR, else ./data)",
        )
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help: str) -> Commands:
        parser = self._sub.add_parser(name, help=help, description=help)
        return Commands(parser)


def build_parser() -> argparse.ArgumentParser:
    from mssante import cli_annuaire, cli_certs, cli_dmp, cli_smtp

    parser = argparse.ArgumentParser(prog="mssante", description="MSSanté operator node")
    parser.add_argument("--version", action="version", version=f"mssante {__version__}")
    commands = Commands(parser)

    p = commands.add("init", cmd_init, "create a data directory: configuration, keys, database")
    p.add_argument("--domain", help="mail domain this node hosts (required unless --demo)")
    p.add_argument("--patient-domain", default="patient.mssante.fr", help="MSS-C patient domain")
    p.add_argument("--demo", action="store_true", help="demo PKI and loopback demo ports")
    p.add_argument("--ca-dir", metavar="CA_DIR", help="issue this node's certificate from that CA")
    p.add_argument("--port-offset", type=int, default=0, metavar="N", help="shift every demo port")
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql+psycopg://user@host/db (default: SQLite in DIR/mssante.db)",
    )

    commands.add("serve", cmd_serve, "run every listener until SIGTERM/SIGINT")

    db = commands.group("db", "database schema")
    db.add("upgrade", cmd_db_upgrade, "migrate the database to this version's schema")
    db.add("status", cmd_db_status, "show the schema version")

    store = commands.group("store", "message store")
    store.add("gc", cmd_store_gc, "remove unreferenced blobs older than the grace period")

    audit = commands.group("audit", "audit log")
    p = audit.add("list", cmd_audit_list, "show audit entries, newest first")
    p.add_argument("--actor")
    p.add_argument("--action")
    p.add_argument("--target")
    p.add_argument("--limit", type=int, default=100)

    cli_certs.register(commands.group("certs", "PKI: issue, check and revoke certificates"))
    cli_annuaire.register(commands)
    cli_smtp.register(commands)
    cli_dmp.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as exc:
        print(f"mssante: {exc}", file=sys.stderr)
        return exc.code
    except OperatorError as exc:
        print(f"mssante: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
