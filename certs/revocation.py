"""The revocation register (``revoked.json``).

The register, not the CRL files, is the source of truth: CRLs are derived
from it and can be regenerated at any time, so a crash between updating the
register and rewriting a CRL loses nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography import x509

from .errors import CAError
from .formatting import format_time
from .layout import serial_hex

__all__ = [
    "CrlScope",
    "Revocation",
    "dump_revocations",
    "load_revocations",
    "parse_reason",
]

CrlScope: TypeAlias = Literal["intermediate", "root"]


@dataclass(frozen=True)
class Revocation:
    """One revoked serial and the CRL (whose issuer) it belongs to."""

    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags
    crl: CrlScope


def parse_reason(value: x509.ReasonFlags | str) -> x509.ReasonFlags:
    """Accept a ReasonFlags, its RFC value (``keyCompromise``) or its name (``key_compromise``)."""
    if isinstance(value, x509.ReasonFlags):
        reason = value
    else:
        by_text = {flag.value.lower(): flag for flag in x509.ReasonFlags}
        by_text.update({flag.name.lower(): flag for flag in x509.ReasonFlags})
        try:
            reason = by_text[value.strip().lower()]
        except KeyError:
            names = ", ".join(flag.value for flag in x509.ReasonFlags)
            raise CAError(f"unknown revocation reason {value!r}; expected one of {names}") from None
    if reason is x509.ReasonFlags.remove_from_crl:
        raise CAError("removeFromCRL only exists in delta CRLs, which this CA does not issue")
    return reason


def load_revocations(path: str | os.PathLike[str]) -> dict[int, Revocation]:
    """Read the register; a missing file means nothing was revoked."""
    file = Path(path)
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CAError(f"cannot read revocation register {file}: {exc}") from exc
    if not isinstance(raw, dict):
        raise CAError(f"{file}: expected a JSON object mapping serial to revocation")
    entries: dict[int, Revocation] = {}
    for key, item in raw.items():
        try:
            serial = int(key, 16)
            scope = item.get("crl", "intermediate")
            if scope not in ("intermediate", "root"):
                raise ValueError(f"crl must be 'intermediate' or 'root', not {scope!r}")
            revoked_at = datetime.fromisoformat(item["revoked_at"].replace("Z", "+00:00"))
            entries[serial] = Revocation(serial, revoked_at, parse_reason(item["reason"]), scope)
        except (AttributeError, KeyError, TypeError, ValueError, CAError) as exc:
            raise CAError(f"{file}: bad entry {key!r}: {exc}") from exc
    return entries


def dump_revocations(entries: Mapping[int, Revocation]) -> bytes:
    """Serialise the register, sorted by serial so diffs stay readable."""
    data = {
        serial_hex(entry.serial): {
            "revoked_at": format_time(entry.revoked_at),
            "reason": entry.reason.value,
            "crl": entry.crl,
        }
        for entry in sorted(entries.values(), key=lambda e: e.serial)
    }
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")
