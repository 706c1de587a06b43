"""`mssante certs issue|check|revoke|create-ca`: the PKI toolkit on the command line."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mssante import config as cfg
from mssante.errors import OperatorError

if TYPE_CHECKING:
    from cryptography import x509

    from certs import CertificateAuthority, Kind
    from mssante.cli import Commands

#: CLI kinds; "client" is the applicative (APP mailbox) certificate.
KINDS: dict[str, Kind] = {
    "server": "server",
    "client": "client-app",
    "client-app": "client-app",
    "client-personal": "client-personal",
}


class CertsCommandError(OperatorError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _ca(args: argparse.Namespace) -> CertificateAuthority:
    from certs import CAError, CertificateAuthority

    try:
        return CertificateAuthority.load(Path(args.ca_dir))
    except CAError as exc:
        raise CertsCommandError(str(exc)) from None


def cmd_create_ca(args: argparse.Namespace) -> int:
    from certs import CAError, CertificateAuthority

    try:
        ca = CertificateAuthority.create(Path(args.ca_dir), name=args.name, now=_now())
    except CAError as exc:
        raise CertsCommandError(str(exc)) from None
    print(f"created CA in {ca.directory}: give {ca.layout.root_cert} to peers and clients")
    return 0


def cmd_issue(args: argparse.Namespace) -> int:
    from certs import CertsError

    ca = _ca(args)
    try:
        issued = ca.issue(
            KINDS[args.kind],
            cn=args.cn,
            sans=args.san or ([args.cn] if args.kind == "server" else []),
            identifier=args.identifier,
            organization=args.org,
            days=args.days,
            now=_now(),
        )
        cert_path, key_path = ca.write_pem(issued, Path(args.out))
    except CertsError as exc:
        raise CertsCommandError(str(exc)) from None
    print(f"issued serial {issued.serial_hex}: {cert_path} (with chain), {key_path} (mode 0600)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from certs import CertsError, describe, load_certificates, load_crls, verify_chain

    try:
        chain = load_certificates(Path(args.pem))
        if not chain:
            raise CertsCommandError(f"{args.pem}: no certificate found")
        if args.ca_dir:
            ca = _ca(args)
            anchors: tuple[x509.Certificate, ...] = (ca.root,)
            intermediates = (*chain[1:], ca.intermediate)
            crls = [*load_crls(ca.layout.crl), *load_crls(ca.layout.root_crl)]
        else:
            config = cfg.load(cfg.resolve_data_dir(args.data_dir))
            anchors = load_certificates(config.path(config.tls.ca_file))
            intermediates = chain[1:]
            crls = [c for f in config.tls.crl_files for c in load_crls(config.path(f))]
    except CertsError as exc:
        raise CertsCommandError(str(exc)) from None
    print(describe(chain[0]))
    result = verify_chain(
        chain[0],
        intermediates=intermediates,
        anchors=anchors,
        crls=crls,
        at=_now(),
        purpose=args.purpose,
        hostname=args.hostname,
    )
    for warning in result.warnings:
        print(f"warning: {warning}")
    if result.ok:
        print(f"OK: valid for {args.purpose} use ({result.detail})")
        return 0
    assert result.reason is not None
    print(f"FAILED [{result.reason.value}]: {result.detail}")
    return 1


def cmd_revoke(args: argparse.Namespace) -> int:
    from certs import CertsError, load_certificates

    ca = _ca(args)
    try:
        if args.serial:
            target: int | x509.Certificate = int(args.serial.replace(":", ""), 16)
        elif args.pem:
            target = load_certificates(Path(args.pem))[0]
        else:
            raise CertsCommandError("certs revoke: give a PEM file or --serial HEX")
        entry = ca.revoke(target, reason=args.reason, now=_now())
    except (CertsError, ValueError) as exc:
        raise CertsCommandError(f"certs revoke: {exc}") from None
    print(f"revoked serial {entry.serial:x} ({entry.reason.value}); CRL: {ca.layout.crl}")
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    ca = _ca(args)
    now = _now()
    crl = ca.crl(now)
    ca.root_crl(now)
    print(f"published {ca.layout.crl} (next update {crl.next_update_utc})")
    return 0


def register(certs: Commands) -> None:
    p = certs.add("create-ca", cmd_create_ca, "create a root + intermediate CA (demo, tests)")
    p.add_argument("--ca-dir", required=True)
    p.add_argument("--name", default="MSSANTE DEMO", help="name used in the CA subjects")

    p = certs.add("issue", cmd_issue, "issue a server or client certificate from a CA directory")
    p.add_argument("--ca-dir", required=True)
    p.add_argument("--kind", required=True, choices=sorted(KINDS))
    p.add_argument("--cn", required=True, help="subject common name (the host name for servers)")
    p.add_argument("--san", action="append", help="DNS name or IP address (repeatable)")
    p.add_argument("--identifier", help="FINESS (server, client-app) or RPPS (client-personal)")
    p.add_argument("--org", help="organisation name (O)")
    p.add_argument("--days", type=int, help="validity in days (default: 3 years)")
    p.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX.pem, PREFIX.key")

    p = certs.add("crl", cmd_crl, "republish the CA's CRLs (run daily: peers refuse a stale CRL)")
    p.add_argument("--ca-dir", required=True)

    p = certs.add("check", cmd_check, "explain whether a certificate is valid, and why not")
    p.add_argument("pem", metavar="PEM", help="certificate (optionally followed by its chain)")
    p.add_argument("--ca-dir", help="check against this CA (default: the node's tls.ca_file)")
    p.add_argument("--purpose", choices=["server", "client"], default="server")
    p.add_argument("--hostname", help="also check the certificate matches this name")

    p = certs.add("revoke", cmd_revoke, "revoke a certificate and publish the new CRL")
    p.add_argument("pem", metavar="PEM", nargs="?", help="the certificate to revoke")
    p.add_argument("--ca-dir", required=True)
    p.add_argument("--serial", help="serial number in hex, instead of a PEM file")
    p.add_argument(
        "--reason",
        default="unspecified",
        help="RFC 5280 reason (key_compromise, superseded, cessation_of_operation, …)",
    )
