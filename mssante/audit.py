"""The audit log: who did what to which mailbox or document, when, and how it ended.

Details are identifiers only (queue ids, message-id hashes, counts, codes).
Keys that would carry health data in clear are refused outright, so a careless
caller fails in tests instead of leaking a subject or an INS into the log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select

from mssante.schema import audit_log

#: Detail keys that name health data; use a hash or an opaque id instead.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"subject", "body", "attachment", "attachments", "filename", "ins", "nir", "text", "content"}
)

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target_kind: str
    target: str
    outcome: str
    details: Mapping[str, Scalar]


def record(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    target_kind: str,
    target: str,
    outcome: str = "ok",
    details: Mapping[str, Scalar] | None = None,
) -> int:
    """Append one audit entry in the caller's transaction; return its id."""
    details = dict(details or {})
    for key, value in details.items():
        if key.lower() in FORBIDDEN_DETAIL_KEYS:
            raise ValueError(f"audit detail {key!r} would carry health data: record an id or hash")
        if not isinstance(value, str | int | float | bool | type(None)):
            raise TypeError(f"audit detail {key!r} must be a scalar")
    return int(
        conn.execute(
            insert(audit_log)
            .values(
                at=at,
                actor=actor,
                action=action,
                target_kind=target_kind,
                target=target,
                outcome=outcome,
                details=json.dumps(details, sort_keys=True, ensure_ascii=False),
            )
            .returning(audit_log.c.id)
        ).scalar_one()
    )


def query(
    conn: Connection,
    *,
    actor: str | None = None,
    action: str | None = None,
    target_kind: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries matching every given criterion, newest first."""
    stmt = select(audit_log)
    filters: list[Any] = []
    if actor is not None:
        filters.append(audit_log.c.actor == actor)
    if action is not None:
        filters.append(audit_log.c.action == action)
    if target_kind is not None:
        filters.append(audit_log.c.target_kind == target_kind)
    if target is not None:
        filters.append(audit_log.c.target == target)
    if since is not None:
        filters.append(audit_log.c.at >= since)
    if until is not None:
        filters.append(audit_log.c.at < until)
    stmt = stmt.where(*filters).order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)
    return [
        AuditEntry(
            r.id, r.at, r.actor, r.action, r.target_kind, r.target, r.outcome, json.loads(r.details)
        )
        for r in conn.execute(stmt)
    ]
