"""Valid identifiers for directory tests, built with their check digits (not a test module)."""

from __future__ import annotations

from datetime import UTC, datetime

from annuaire.identifiers import luhn_key
from annuaire.ins import ins_key

NOW = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def rpps(n: int) -> str:
    body = f"10{n:08d}"
    return body + str(luhn_key(body))


def finess(n: int) -> str:
    body = f"75{n:06d}"
    return body + str(luhn_key(body))


def ins(n: int) -> str:
    body = f"18{(n % 12) + 1:02d}75{n % 1000:03d}{n % 997:03d}{n % 10}"[:13]
    body = body.ljust(13, "0")
    return body + ins_key(body)
