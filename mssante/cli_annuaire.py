"""`mssante bal|whitelist|annuaire|patients …`: the directory on the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mssante import config as cfg
from mssante.errors import OperatorError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from annuaire.extraction import ExtractionSource
    from mssante.cli import Commands


class DirectoryCommandError(OperatorError):
    pass


def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


@contextmanager
def _transaction(args: argparse.Namespace) -> Iterator[tuple[cfg.Config, Connection]]:
    from mssante.app import open_database

    config = cfg.load(cfg.resolve_data_dir(args.data_dir))
    db = open_database(config)
    try:
        db.require_current()
        with db.transaction() as conn:
            yield config, conn
    finally:
        db.dispose()


def _refused(exc: Exception) -> DirectoryCommandError:
    return DirectoryCommandError(str(exc))


def _audit(
    conn: Connection,
    action: str,
    kind: str,
    target: str,
    outcome: str = "ok",
    **details: str | int,
) -> None:
    from mssante import audit

    audit.record(
        conn,
        at=_now(),
        actor=_actor(),
        action=action,
        target_kind=kind,
        target=target,
        outcome=outcome,
        details=details,
    )


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise DirectoryCommandError(f"cannot read {path}: {exc.strerror}") from None


def _fingerprint(pem: str) -> str:
    from annuaire.bal import certificate_fingerprint
    from certs import CertsError, load_certificates

    try:
        chain = load_certificates(Path(pem))
    except CertsError as exc:
        raise DirectoryCommandError(str(exc)) from None
    if not chain:
        raise DirectoryCommandError(f"{pem}: no certificate found")
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate_fingerprint(chain[0].public_bytes(Encoding.DER))


# --------------------------------------------------------------------------- bal

_IDENTIFIER_FLAGS = {
    "rpps": "RPPS",
    "adeli": "ADELI",
    "finess": "FINESS",
    "siret": "SIRET",
    "siren": "SIREN",
}
_DESCRIPTIVE = (
    "display_name",
    "facility_name",
    "service",
    "profession_code",
    "profession_label",
    "specialty_code",
    "specialty_label",
    "city",
    "postal_code",
)


def _identifiers(args: argparse.Namespace) -> dict[str, str | None]:
    values: dict[str, str | None] = {}
    for flag, kind in _IDENTIFIER_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        prefix = "person" if kind in ("RPPS", "ADELI") else "facility"
        if f"{prefix}_id" in values:
            raise DirectoryCommandError(f"give only one {prefix} identifier")
        values[f"{prefix}_id_type"], values[f"{prefix}_id"] = kind, value
    return values


def cmd_bal_add(args: argparse.Namespace) -> int:
    from annuaire import bal

    fields: dict[str, Any] = {
        k: getattr(args, k) for k in _DESCRIPTIVE if getattr(args, k) is not None
    }
    fields.update(_identifiers(args))
    spec = bal.BalSpec(
        address=args.address,
        bal_type=args.type,
        pharmacy_accepts_patient_initiation=args.pharmacy_accepts_patients,
        preferred_rank=args.preferred,
        liste_rouge=args.liste_rouge,
        **fields,
    )
    password = _read_secret(args.password_file) if args.password_file else None
    fingerprints = [_fingerprint(p) for p in args.cert or ()]
    with _transaction(args) as (_, conn):
        try:
            created = bal.add_bal(conn, spec, now=_now())
            if password is not None:
                bal.set_password(conn, created.address, password, now=_now())
            for fingerprint in fingerprints:
                bal.bind(conn, created.address, "certificate", fingerprint, now=_now())
            for identity in args.oauth or ():
                bal.bind(conn, created.address, "oauth", identity, now=_now())
            for member in args.member or ():
                bal.add_member(conn, created.address, member)
        except (bal.BalError, ValueError) as exc:
            raise _refused(exc) from None
        _audit(conn, "bal.add", "bal", created.address_key, type=created.bal_type)
    print(f"created {created.bal_type} mailbox {created.address}")
    return 0


def cmd_bal_list(args: argparse.Namespace) -> int:
    from annuaire import bal

    with _transaction(args) as (_, conn):
        rows = bal.list_bals(conn, domain=args.domain, bal_type=args.type)
    for row in rows:
        flags = " ".join(
            name
            for name, on in (
                ("liste-rouge", row.liste_rouge),
                ("pharmacy", row.pharmacy_accepts_patient_initiation),
                (f"preferred={row.preferred_rank}", row.preferred_rank is not None),
            )
            if on
        )
        print(f"{row.address}\t{row.bal_type}\t{row.display_name}\t{flags}".rstrip())
    return 0


def cmd_bal_show(args: argparse.Namespace) -> int:
    from annuaire import bal

    with _transaction(args) as (_, conn):
        try:
            found = bal.require_bal(conn, args.address)
            shown: dict[str, Any] = {k: v for k, v in asdict(found).items() if k != "id"}
            shown["members"] = bal.members(conn, found.address)
            shown["credentials"] = [f"{k}: {v}" for k, v in bal.credentials(conn, found.address)]
        except bal.BalError as exc:
            raise _refused(exc) from None
    for key, value in shown.items():
        if value not in (None, [], ""):
            print(f"{key}: {value}")
    return 0


def cmd_bal_set(args: argparse.Namespace) -> int:
    from annuaire import bal

    changes: dict[str, Any] = {
        k: getattr(args, k) for k in _DESCRIPTIVE if getattr(args, k) is not None
    }
    if args.liste_rouge is not None:
        changes["liste_rouge"] = args.liste_rouge == "yes"
    if args.pharmacy_accepts_patients is not None:
        changes["pharmacy_accepts_patient_initiation"] = args.pharmacy_accepts_patients == "yes"
    if args.preferred is not None:
        changes["preferred_rank"] = args.preferred or None
    if not changes:
        raise DirectoryCommandError("bal set: nothing to change")
    with _transaction(args) as (_, conn):
        try:
            updated = bal.update_bal(conn, args.address, changes, now=_now())
        except bal.BalError as exc:
            raise _refused(exc) from None
        _audit(conn, "bal.set", "bal", updated.address_key, fields=",".join(sorted(changes)))
    print(f"updated {updated.address}")
    return 0


def cmd_bal_remove(args: argparse.Namespace) -> int:
    from annuaire import bal

    with _transaction(args) as (_, conn):
        try:
            removed = bal.remove_bal(conn, args.address, purge=args.purge)
        except bal.BalError as exc:
            raise _refused(exc) from None
        _audit(conn, "bal.remove", "bal", removed.address_key, purge=int(args.purge))
    print(f"removed {removed.address}")
    return 0


def cmd_bal_passwd(args: argparse.Namespace) -> int:
    from annuaire import bal

    password = _read_secret(args.password_file)
    with _transaction(args) as (_, conn):
        try:
            bal.set_password(conn, args.address, password, now=_now())
        except bal.BalError as exc:
            raise _refused(exc) from None
        _audit(conn, "bal.passwd", "bal", bal.require_bal(conn, args.address).address_key)
    print(f"password set for {args.address}")
    return 0


def cmd_bal_bind(args: argparse.Namespace) -> int:
    from annuaire import bal

    if not args.cert and not args.oauth:
        raise DirectoryCommandError("bal bind: give --cert PEM or --oauth 'ISSUER SUBJECT'")
    fingerprint = _fingerprint(args.cert) if args.cert else None
    with _transaction(args) as (_, conn):
        try:
            if fingerprint:
                bal.bind(conn, args.address, "certificate", fingerprint, now=_now())
            if args.oauth:
                bal.bind(conn, args.address, "oauth", args.oauth, now=_now())
        except bal.BalError as exc:
            raise _refused(exc) from None
        _audit(conn, "bal.bind", "bal", bal.require_bal(conn, args.address).address_key)
    print(f"bound to {args.address}" + (f": certificate {fingerprint}" if fingerprint else ""))
    return 0


def cmd_member(args: argparse.Namespace) -> int:
    from annuaire import bal

    with _transaction(args) as (_, conn):
        try:
            if args.member_action == "add":
                bal.add_member(conn, args.address, args.member)
            else:
                bal.remove_member(conn, args.address, args.member)
        except bal.BalError as exc:
            raise _refused(exc) from None
        _audit(
            conn,
            f"bal.member.{args.member_action}",
            "bal",
            bal.require_bal(conn, args.address).address_key,
        )
    print(
        f"{args.member} {'added to' if args.member_action == 'add' else 'removed from'} "
        f"{args.address}"
    )
    return 0


# --------------------------------------------------------------------------- whitelist


def cmd_whitelist_update(args: argparse.Namespace) -> int:
    from annuaire import trust
    from annuaire.dn import DNError
    from annuaire.fetch import FetchError, read_source
    from annuaire.whitelist_xml import WhitelistError

    config = cfg.load(cfg.resolve_data_dir(args.data_dir))
    anchors = config.path(config.whitelist.ca_file or config.tls.ca_file)
    try:
        data = read_source(args.source, anchors_file=anchors)
        with _transaction(args) as (config, conn):
            generation = trust.import_list(
                conn,
                data,
                source=args.source,
                now=_now(),
                max_shrink_percent=config.whitelist.max_shrink_percent,
                checksum=args.checksum,
            )
            _audit(
                conn,
                "whitelist.update",
                "whitelist",
                str(generation.id),
                entries=generation.entry_count,
            )
    except (FetchError, trust.WhitelistRefused, WhitelistError, DNError) as exc:
        # The refused import rolled back; record the refusal on its own.
        with _transaction(args) as (_, conn):
            _audit(conn, "whitelist.update", "whitelist", "-", outcome="refused", reason=str(exc))
        raise DirectoryCommandError(
            f"whitelist refused, the list in force is kept: {exc}"
        ) from None
    kind = (
        "domain-only list (private lab: no DN pairing)"
        if generation.domain_only
        else "national list"
    )
    print(
        f"whitelist generation {generation.id} in force: {generation.entry_count} entries, "
        f"{generation.domain_count} domains, {kind}"
        + (", file was truncated after its last complete entry" if generation.truncated else "")
    )
    return 0


def cmd_whitelist_check(args: argparse.Namespace) -> int:
    from annuaire import trust

    with _transaction(args) as (_, conn):
        pairs = trust.pairs_for(conn, args.domain)
        paired = trust.pair_matches(conn, args.domain, args.dn) if args.dn else None
    if not pairs:
        print(f"{args.domain}: not in the trust space")
        return 1
    for pair in pairs:
        print(f"{pair.domain}\t{pair.dn or '(domain-only)'}")
    if paired is not None:
        print(f"DN {'paired with' if paired else 'NOT paired with'} {args.domain}")
        return 0 if paired else 1
    return 0


def cmd_whitelist_list(args: argparse.Namespace) -> int:
    from annuaire import trust

    with _transaction(args) as (_, conn):
        generation = trust.active_generation(conn)
        pairs = trust.all_pairs(conn)
    if generation is None:
        print("no whitelist imported: nothing is in the trust space", file=sys.stderr)
        return 1
    print(
        f"# generation {generation.id}, imported {generation.imported_at.isoformat()}, "
        f"generated {generation.generated_at.isoformat() if generation.generated_at else '?'}, "
        f"{generation.entry_count} entries",
    )
    for pair in pairs:
        print(f"{pair.domain}\t{pair.dn or '(domain-only)'}")
    return 0


def cmd_whitelist_self_entry(args: argparse.Namespace) -> int:
    from annuaire import RoutingContext, trust
    from annuaire.dn import dn_from_x509
    from annuaire.whitelist_xml import render_entries, render_whitelist
    from certs import CertsError, load_certificates

    config = cfg.load(cfg.resolve_data_dir(args.data_dir))
    try:
        leaf = load_certificates(config.path(config.tls.cert_file))[0]
    except (CertsError, IndexError) as exc:
        raise DirectoryCommandError(f"cannot read the node certificate: {exc}") from None
    domains = set(config.local_domains)
    if config.node.serves_patient_domain:
        domains.add(RoutingContext.from_config(config).patient_domain)
    entries = trust.self_entries(
        sorted(domains),
        dn_from_x509(leaf.subject),
        description=args.description or f"MSSanté operator {config.hostname}",
        contact=args.contact or f"postmaster@{config.node.domain}",
        now=_now().replace(microsecond=0),
    )
    data = (
        render_whitelist(entries, _now().replace(microsecond=0))
        if args.whole
        else render_entries(entries)
    )
    sys.stdout.write(data.decode("utf-8"))
    return 0


# --------------------------------------------------------------------------- annuaire


def _progress_bar(source: ExtractionSource) -> Callable[[int], None]:
    """A one-line progress bar on stderr, from the bytes read of the file."""

    def show(count: int) -> None:
        total = source.total_bytes or 0
        share = min(1.0, source.bytes_read / total) if total else 0.0
        bar = "#" * int(share * 30)
        print(
            f"\r  [{bar:<30}] {share:4.0%} {count:>9,} records", end="", file=sys.stderr, flush=True
        )

    return show


def cmd_annuaire_import(args: argparse.Namespace) -> int:
    from annuaire import directory
    from annuaire.extraction import HeaderError, open_extraction

    on_terminal = sys.stderr.isatty()
    with _transaction(args) as (_, conn):
        try:
            with open_extraction(Path(args.file)) as lines:
                progress = _progress_bar(lines) if on_terminal else None
                stats = directory.import_extraction(conn, lines, progress=progress)
        except (HeaderError, ValueError, OSError) as exc:
            raise DirectoryCommandError(f"{args.file}: {exc}") from None
        _audit(
            conn,
            "annuaire.import",
            "directory",
            "national",
            added=stats.added,
            removed=stats.removed,
        )
    if on_terminal:
        print(file=sys.stderr)
    print(
        f"{stats.records} records: {stats.added} added, {stats.updated} updated, "
        f"{stats.unchanged} unchanged, {stats.removed} removed, "
        f"{stats.duplicates} duplicate lines, "
        f"{len(stats.malformed)} malformed"
    )
    for bad in stats.malformed[: args.show_malformed]:
        print(f"  line {bad.line_number}: {bad.reason}")
    if len(stats.malformed) > args.show_malformed:
        print(f"  … {len(stats.malformed) - args.show_malformed} more malformed lines")
    return 0


def cmd_annuaire_search(args: argparse.Namespace) -> int:
    from annuaire import directory

    with _transaction(args) as (_, conn):
        result = directory.search(
            conn,
            " ".join(args.query),
            profession=args.profession,
            city=args.city,
            bal_type=args.type,
            limit=args.limit,
            offset=args.offset,
        )
    if args.json:
        print(
            json.dumps(
                {"results": [asdict(h) for h in result.hits], "has_more": result.has_more},
                ensure_ascii=False,
            )
        )
        return 0
    for hit in result.hits:
        name = " ".join(filter(None, (hit.first_name, hit.last_name))) or hit.organisation or ""
        where = " ".join(filter(None, (hit.postal_code, hit.city)))
        print(
            f"{hit.address}\t{hit.bal_type}\t{name}\t{hit.profession or ''}\t{where}\t[{hit.match}]"
        )
    if result.has_more:
        print(f"… more results: --offset {args.offset + args.limit}")
    return 0


def cmd_annuaire_export(args: argparse.Namespace) -> int:
    from annuaire import bal, directory
    from annuaire.extraction import format_extraction

    with _transaction(args) as (_, conn):
        rows = [b for b in bal.list_bals(conn) if not b.liste_rouge]
    out = open(args.out, "w", encoding="utf-8", newline="") if args.out else sys.stdout  # noqa: SIM115
    try:
        for line in format_extraction(directory.extraction_record(b) for b in rows):
            out.write(line)
    finally:
        if args.out:
            out.close()
    if args.out:
        print(f"exported {len(rows)} mailboxes to {args.out}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- patients


def cmd_patients_import(args: argparse.Namespace) -> int:
    from annuaire import patients

    try:
        text = Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryCommandError(f"cannot read {args.file}: {exc}") from None
    with _transaction(args) as (_, conn):
        try:
            report = patients.import_patients(conn, text, now=_now())
        except patients.PatientError as exc:
            raise _refused(exc) from None
        _audit(conn, "patients.import", "patients", Path(args.file).name, imported=report.imported)
    print(f"{report.imported} patients imported, {len(report.errors)} refused")
    for error in report.errors:
        print(f"  {error}")
    return 0 if not report.errors else 1


def cmd_patients_show(args: argparse.Namespace) -> int:
    from annuaire import patients
    from annuaire.ins import InsError

    with _transaction(args) as (_, conn):
        try:
            patient = patients.get_patient(conn, args.ins)
        except InsError as exc:
            raise _refused(exc) from None
    print(f"ins: {patient.ins}\nstatus: {patient.status.value}")
    for key in ("first_name", "last_name", "notification_email"):
        if getattr(patient, key):
            print(f"{key}: {getattr(patient, key)}")
    print(f"password: {'set' if patient.has_password else 'not set'}")
    return 0


def cmd_patients_set_status(args: argparse.Namespace) -> int:
    from annuaire import patients
    from annuaire.ins import InsError
    from mssante.logs import pseudonym

    with _transaction(args) as (_, conn):
        try:
            patient = patients.upsert_patient(
                conn,
                args.ins,
                now=_now(),
                status=args.status,
                first_name=args.first_name,
                last_name=args.last_name,
                notification_email=args.email,
            )
        except (InsError, patients.PatientError) as exc:
            raise _refused(exc) from None
        _audit(
            conn,
            "patients.set_status",
            "patient",
            pseudonym(patient.ins),
            status=patient.status.value,
        )
    print(f"patient space status: {patient.status.value}")
    return 0


def cmd_patients_passwd(args: argparse.Namespace) -> int:
    from annuaire import patients
    from annuaire.ins import InsError
    from mssante.logs import pseudonym

    password = _read_secret(args.password_file)
    with _transaction(args) as (_, conn):
        try:
            patients.set_password(conn, args.ins, password, now=_now())
        except (InsError, patients.PatientError) as exc:
            raise _refused(exc) from None
        _audit(conn, "patients.passwd", "patient", pseudonym(args.ins.upper()))
    print("patient password set")
    return 0


# --------------------------------------------------------------------------- parser


def _descriptive(p: argparse.ArgumentParser) -> None:
    p.add_argument("--display-name")
    p.add_argument("--facility-name", help="raison sociale of the facility")
    p.add_argument("--service", help="service de rattachement")
    p.add_argument("--profession-code")
    p.add_argument("--profession-label")
    p.add_argument("--specialty-code", help="savoir-faire code")
    p.add_argument("--specialty-label")
    p.add_argument("--city")
    p.add_argument("--postal-code")


def register(commands: Commands) -> None:
    bal_cmds = commands.group("bal", "mailboxes (BAL) this node hosts")
    p = bal_cmds.add("add", cmd_bal_add, "create a BAL (address and type are permanent)")
    p.add_argument("address")
    p.add_argument("--type", required=True, choices=["PER", "ORG", "APP", "CAB"])
    for flag in _IDENTIFIER_FLAGS:
        p.add_argument(f"--{flag}", metavar="ID", help=f"{flag.upper()} identifier")
    _descriptive(p)
    p.add_argument(
        "--password-file", help="file holding the password (passwords only where enabled)"
    )
    p.add_argument("--cert", action="append", metavar="PEM", help="bind a client certificate")
    p.add_argument(
        "--oauth", action="append", metavar="'ISSUER SUBJECT'", help="bind an OAuth identity"
    )
    p.add_argument(
        "--member", action="append", metavar="ADDRESS", help="PER BAL given access (ORG/APP)"
    )
    p.add_argument(
        "--pharmacy-accepts-patients", action="store_true", help="patients may write first"
    )
    p.add_argument("--preferred", type=int, metavar="RANK", help="1 = the person's preferred BAL")
    p.add_argument("--liste-rouge", action="store_true", help="hidden from export and search")

    p = bal_cmds.add("list", cmd_bal_list, "list hosted BALs")
    p.add_argument("--domain")
    p.add_argument("--type", choices=["PER", "ORG", "APP", "CAB"])

    p = bal_cmds.add("show", cmd_bal_show, "show one BAL, its members and credentials")
    p.add_argument("address")

    p = bal_cmds.add("set", cmd_bal_set, "change a BAL's description and flags")
    p.add_argument("address")
    _descriptive(p)
    p.add_argument("--liste-rouge", choices=["yes", "no"])
    p.add_argument("--pharmacy-accepts-patients", choices=["yes", "no"])
    p.add_argument("--preferred", type=int, metavar="RANK", help="0 clears the rank")

    p = bal_cmds.add("remove", cmd_bal_remove, "delete a BAL (refused while it holds mail)")
    p.add_argument("address")
    p.add_argument("--purge", action="store_true", help="also delete its messages")

    p = bal_cmds.add("passwd", cmd_bal_passwd, "set a BAL's password (Argon2id)")
    p.add_argument("address")
    p.add_argument("--password-file", required=True)

    p = bal_cmds.add("bind", cmd_bal_bind, "bind a client certificate or an OAuth identity")
    p.add_argument("address")
    p.add_argument("--cert", metavar="PEM")
    p.add_argument("--oauth", metavar="'ISSUER SUBJECT'")

    member = bal_cmds.group("member", "people with access to an ORG/APP BAL")
    for action in ("add", "remove"):
        p = member.add(action, cmd_member, f"{action} a member")
        p.add_argument("address")
        p.add_argument("member", help="the person's PER BAL address")
        p.set_defaults(member_action=action)

    wl = commands.group("whitelist", "the MSSanté trust space")
    p = wl.add("update", cmd_whitelist_update, "import the national list (file or https URL)")
    p.add_argument("source", metavar="FILE|URL")
    p.add_argument("--checksum", metavar="HEX", help="published SHA-256 of the file")
    p = wl.add("check", cmd_whitelist_check, "is DOMAIN in the trust space (exit 0) or not (1)")
    p.add_argument("domain")
    p.add_argument("--dn", help="also check this operator certificate DN is paired with it")
    wl.add("list", cmd_whitelist_list, "the pairs in force")
    p = wl.add("self-entry", cmd_whitelist_self_entry, "print our own Domaine entries (XML)")
    p.add_argument("--contact", help="contact printed in the entries")
    p.add_argument("--description")
    p.add_argument("--whole", action="store_true", help="a complete file, not just the entries")

    an = commands.group("annuaire", "the national directory extraction and search")
    p = an.add(
        "import", cmd_annuaire_import, "import Extraction_Correspondance_MSSante (txt or zip)"
    )
    p.add_argument("file")
    p.add_argument("--show-malformed", type=int, default=20, metavar="N")
    p = an.add(
        "search", cmd_annuaire_search, "search by name, identifier, address, profession, city"
    )
    p.add_argument("query", nargs="*")
    p.add_argument("--profession")
    p.add_argument("--city", help="city name or postal code prefix")
    p.add_argument("--type", choices=["PER", "ORG", "APP", "CAB"])
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p = an.add(
        "export", cmd_annuaire_export, "our BALs in the extraction format (liste rouge left out)"
    )
    p.add_argument("--out", metavar="FILE")

    pt = commands.group("patients", "patient spaces (MSS-C)")
    p = pt.add(
        "import",
        cmd_patients_import,
        "import a CSV: ins,status[,first_name,last_name,notification_email]",
    )
    p.add_argument("file")
    p = pt.add("show", cmd_patients_show, "show a patient space")
    p.add_argument("ins")
    p = pt.add("set-status", cmd_patients_set_status, "create or update a patient space")
    p.add_argument("ins")
    p.add_argument("status", choices=["not_created", "opposed", "open", "closed"])
    p.add_argument("--first-name")
    p.add_argument("--last-name")
    p.add_argument("--email", help="personal notification e-mail")
    p = pt.add(
        "passwd", cmd_patients_passwd, "set a patient's password (stand-in for the national IdP)"
    )
    p.add_argument("ins")
    p.add_argument("--password-file", required=True)
