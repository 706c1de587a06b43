"""`mssante transport …` and `mssante queue …`: the SMTP side on the command line."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

from mssante.cli_annuaire import DirectoryCommandError, _audit, _now, _transaction

if TYPE_CHECKING:
    from mssante.cli import Commands


# --------------------------------------------------------------------------- transport


def cmd_transport_set(args: argparse.Namespace) -> int:
    from smtp import transport

    with _transaction(args) as (_, conn):
        try:
            transport.set_transport(conn, args.domain, args.target, now=_now())
        except transport.TransportError as exc:
            raise DirectoryCommandError(str(exc)) from None
        _audit(conn, "transport.set", "domain", args.domain, destination=args.target)
    print(f"{args.domain} -> {args.target}")
    return 0


def cmd_transport_list(args: argparse.Namespace) -> int:
    from smtp import transport

    with _transaction(args) as (_, conn):
        rows = transport.table(conn)
    for domain, host, port in rows:
        shown = f"[{host}]" if ":" in host else host
        print(f"{domain}\t{shown}:{port}")
    if not rows:
        print("(no transport map entries: delivery uses DNS MX records)")
    return 0


def cmd_transport_remove(args: argparse.Namespace) -> int:
    from smtp import transport

    with _transaction(args) as (_, conn):
        if not transport.remove(conn, args.domain):
            raise DirectoryCommandError(f"no transport map entry for {args.domain}")
        _audit(conn, "transport.remove", "domain", args.domain)
    return 0


# --------------------------------------------------------------------------- queue


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_queue_list(args: argparse.Namespace) -> int:
    from smtp import queue

    with _transaction(args) as (_, conn):
        entries = queue.list_entries(conn)
    for entry in entries:
        sender = entry.sender or "<>"
        print(
            f"{entry.queue_id}  {_when(entry.received_at)}  {entry.size:>9}  {entry.origin:<11}"
            f"  {sender}"
        )
        for rcpt, attempts, next_at, status, _ in entry.recipients:
            detail = f"  ({status})" if status else ""
            print(f"    {rcpt}  attempts={attempts}  next={_when(next_at)}{detail}")
    print(f"-- {len(entries)} message(s), {sum(len(e.recipients) for e in entries)} recipient(s)")
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    from smtp import queue

    with _transaction(args) as (_, conn):
        entry = queue.show(conn, args.queue_id)
    if entry is None:
        raise DirectoryCommandError(f"no queued message {args.queue_id}")
    print(f"queue id:    {entry.queue_id}")
    print(f"received:    {_when(entry.received_at)} via {entry.origin}")
    print(f"sender:      {entry.sender or '<>'}")
    print(f"size:        {entry.size}")
    for rcpt, attempts, next_at, status, owner in entry.recipients:
        print(f"recipient:   {rcpt}")
        print(f"  attempts:  {attempts}, next {_when(next_at)}")
        if status:
            print(f"  last:      {status}")
        if owner:
            print(f"  leased by: {owner}")
    return 0


def cmd_queue_retry(args: argparse.Namespace) -> int:
    from smtp import queue

    if not args.all and not args.queue_id:
        raise DirectoryCommandError("give a queue id, or --all")
    with _transaction(args) as (_, conn):
        count = queue.retry_now(conn, None if args.all else args.queue_id, now=_now())
        if not count and not args.all:
            raise DirectoryCommandError(f"no queued message {args.queue_id}")
        _audit(conn, "queue.retry", "queue", args.queue_id or "*", rows=count)
    print(f"{count} recipient(s) due now")
    return 0


def cmd_queue_delete(args: argparse.Namespace) -> int:
    from smtp import queue

    with _transaction(args) as (_, conn):
        if not queue.delete_message(conn, args.queue_id):
            raise DirectoryCommandError(f"no queued message {args.queue_id}")
        _audit(conn, "queue.delete", "queue", args.queue_id)
    print(f"deleted {args.queue_id} (no DSN sent)")
    return 0


# --------------------------------------------------------------------------- dkim


def cmd_dkim_record(args: argparse.Namespace) -> int:
    from mssante import config as cfg
    from smtp import dkim

    config = cfg.load(cfg.resolve_data_dir(args.data_dir))
    key = dkim.load_key(
        config.path(config.smtp.dkim_key_file),
        domain=config.node.domain,
        selector=config.smtp.dkim_selector,
    )
    print(f'{dkim.record_name(key)}. IN TXT "{dkim.dns_record(key)}"')
    return 0


def cmd_dkim_generate(args: argparse.Namespace) -> int:
    from mssante import config as cfg
    from smtp import dkim

    config = cfg.load(cfg.resolve_data_dir(args.data_dir))
    record = dkim.generate_key(config.path(config.smtp.dkim_key_file), kind=args.kind)
    name = f"{config.smtp.dkim_selector}._domainkey.{config.node.domain}"
    print(f'{name}. IN TXT "{record}"')
    return 0


def register(commands: Commands) -> None:
    dk = commands.group("dkim", "the DKIM key of the notification smarthost")
    dk.add("record", cmd_dkim_record, "print the DNS TXT record to publish for the key")
    p = dk.add("generate", cmd_dkim_generate, "make the key smtp.dkim_key_file names")
    p.add_argument("--kind", choices=["rsa", "ed25519"], default="rsa")

    tr = commands.group("transport", "the static transport map (overrides DNS MX per domain)")
    p = tr.add("set", cmd_transport_set, "deliver DOMAIN to HOST:PORT")
    p.add_argument("domain")
    p.add_argument("target", metavar="HOST:PORT")
    tr.add("list", cmd_transport_list, "show the map")
    p = tr.add("remove", cmd_transport_remove, "go back to DNS MX for DOMAIN")
    p.add_argument("domain")

    qu = commands.group("queue", "messages waiting for delivery")
    qu.add("list", cmd_queue_list, "every queued message and its recipients")
    p = qu.add("show", cmd_queue_show, "one queued message (envelope only, never content)")
    p.add_argument("queue_id")
    p = qu.add("retry", cmd_queue_retry, "make a message (or --all) due now")
    p.add_argument("queue_id", nargs="?")
    p.add_argument("--all", action="store_true")
    p = qu.add("delete", cmd_queue_delete, "drop a message without a DSN")
    p.add_argument("queue_id")
