"""The static transport map: deliver a domain to a fixed host:port instead of its DNS MX.

For private networks, tests and several nodes on one machine. Kept in the
database so every node of a cluster sees the same map and `serve` needs no
restart when it changes.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from annuaire import normalise_domain
from mssante.db import Database
from mssante.schema import transports

__all__ = ["TransportError", "lookup", "parse_target", "remove", "set_transport", "table"]


class TransportError(ValueError):
    """A bad domain or host:port, with a message for the command line."""


def parse_target(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6); the port defaults to 25."""
    host, port = text, 25
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise TransportError(f"{text!r}: unterminated [IPv6] address")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise TransportError(f"{text!r}: expected [address]:port")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, raw = text.split(":")
        port = _port(raw, text)
    if not host or any(c.isspace() for c in host):
        raise TransportError(f"{text!r}: expected host:port")
    return host, port


def _port(raw: str, text: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise TransportError(f"{text!r}: the port must be a number between 1 and 65535")
    return int(raw)


def set_transport(conn: Connection, domain: str, target: str, *, now: datetime) -> None:
    try:
        key = normalise_domain(domain)
    except ValueError as exc:
        raise TransportError(str(exc)) from None
    host, port = parse_target(target)
    exists = conn.execute(select(transports.c.domain).where(transports.c.domain == key)).first()
    values = {"host": host, "port": port, "updated_at": now}
    if exists:
        conn.execute(update(transports).where(transports.c.domain == key).values(**values))
    else:
        conn.execute(insert(transports).values(domain=key, **values))


def remove(conn: Connection, domain: str) -> bool:
    key = normalise_domain(domain)
    return bool(conn.execute(delete(transports).where(transports.c.domain == key)).rowcount)


def table(conn: Connection) -> list[tuple[str, str, int]]:
    rows = conn.execute(
        select(transports.c.domain, transports.c.host, transports.c.port).order_by(
            transports.c.domain
        )
    )
    return [(d, h, p) for d, h, p in rows]


def lookup(db: Database, domain: str) -> tuple[str, int] | None:
    """The delivery client's ``transport`` callable (read per delivery: no restart needed)."""
    with db.read() as conn:
        row = conn.execute(
            select(transports.c.host, transports.c.port).where(
                transports.c.domain == normalise_domain(domain)
            )
        ).first()
    return None if row is None else (row[0], row[1])
