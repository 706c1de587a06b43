"""Mail addresses as the directory stores and compares them.

An address keeps its local part as written and gets its domain lower-cased and
IDNA-encoded (A-labels). Lookups use :func:`address_key`, which also folds the
local part: two mailboxes that differ only by case would be a trap for senders,
so the directory treats them as the same address (a decision, documented in
docs/annuaire.md).
"""

from __future__ import annotations

import re

MAX_LOCAL = 64
MAX_ADDRESS = 254
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_FORBIDDEN = re.compile(r"[\s<>()\[\],;:\\\"@\x00-\x1f\x7f]")


class AddressError(ValueError):
    """Not a usable mail address; the message says why."""


def normalise_domain(domain: str) -> str:
    """Lower-case A-label form of a DNS domain, or AddressError."""
    text = domain.strip().rstrip(".")
    try:
        ascii_domain = text.encode("idna").decode("ascii").lower() if text else ""
    except UnicodeError:
        raise AddressError(f"domain {domain!r} is not a valid internationalised name") from None
    labels = ascii_domain.split(".")
    if (
        len(ascii_domain) > 253
        or len(labels) < 2
        or not all(_DOMAIN_LABEL.match(x) for x in labels)
    ):
        raise AddressError(f"domain {domain!r} is not a valid DNS name")
    return ascii_domain


def split_address(address: str) -> tuple[str, str]:
    """(local part as written, normalised domain)."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    if not at or not local:
        raise AddressError(f"{address!r} is not an address (local@domain)")
    if len(local.encode("utf-8")) > MAX_LOCAL:
        raise AddressError(f"local part of {address!r} is longer than {MAX_LOCAL} octets")
    if (
        _LOCAL_FORBIDDEN.search(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        raise AddressError(f"local part of {address!r} has characters not allowed in an address")
    domain = normalise_domain(domain)
    if len(local) + 1 + len(domain) > MAX_ADDRESS:
        raise AddressError(f"{address!r} is longer than {MAX_ADDRESS} characters")
    return local, domain


def normalise_address(address: str) -> str:
    """``local@domain`` with the local part as written and the domain normalised."""
    local, domain = split_address(address)
    return f"{local}@{domain}"


def address_key(address: str) -> str:
    """The form lookups compare: local part case-folded too."""
    local, domain = split_address(address)
    return f"{local.lower()}@{domain}"
