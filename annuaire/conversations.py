"""Conversation state per (professional address, patient INS): MSSC-INIT-1 and MSSC-FIN-1.

A professional's message opens (or reopens) the exchange; one with ``FIN``
closes it. A patient may write to a professional only while it is open. The
rules are in :mod:`policies.mssc`; this module only keeps the state.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from annuaire.addresses import address_key
from mssante.schema import conversations

__all__ = ["conversation_state", "set_conversation"]


def conversation_state(conn: Connection, professional: str, ins: str) -> bool | None:
    """True open, False closed, None never opened."""
    state = conn.execute(
        select(conversations.c.state).where(
            conversations.c.professional == address_key(professional),
            conversations.c.ins == ins,
        )
    ).scalar_one_or_none()
    return None if state is None else state == "open"


def set_conversation(
    conn: Connection, professional: str, ins: str, *, open: bool, now: datetime
) -> None:
    key = address_key(professional)
    state = "open" if open else "closed"
    changed = conn.execute(
        update(conversations)
        .where(conversations.c.professional == key, conversations.c.ins == ins)
        .values(
            state=state,
            updated_at=now,
            **({"opened_at": now} if open else {}),
        )
    ).rowcount
    if not changed:
        conn.execute(
            insert(conversations).values(
                professional=key, ins=ins, state=state, opened_at=now, updated_at=now
            )
        )
