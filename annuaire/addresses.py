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
MAX_DOMAIN_INPUT = 1024
_DOMAIN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL_FORBIDDEN = re.compile(r"[\s<>()\[\],;:\\\"@\x00-\x1f\x7f]")


class AddressError(ValueError):
    """Not a usable mail address; the message says why."""


def normalise_domain(domain: str) -> str:
    """Lower-case A-label form of a DNS domain (IDNA 2003), or AddressError saying why.

    The one domain rule of the directory: BALs, patient addresses, whitelist
    entries and routing all compare domains in this form.
    """
    name = domain.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise AddressError("empty domain")
    if len(name) > MAX_DOMAIN_INPUT:
        raise AddressError(f"domain longer than {MAX_DOMAIN_INPUT} characters")
    name = name.lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError(f"domain {domain!r} is not a valid internationalised name") from None
    labels = name.split(".")
    if len(name) > 253:
        raise AddressError(f"domain {domain!r} is longer than 253 characters")
    if len(labels) < 2:
        raise AddressError(f"domain {domain!r} needs at least two labels")
    bad = next((label for label in labels if not _DOMAIN_LABEL.match(label)), None)
    if bad is not None:
        raise AddressError(f"domain {domain!r} has an invalid label {bad!r}")
    for label in labels:
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                raise AddressError(f"domain {domain!r} has an invalid A-label {label!r}") from None
    if labels[-1].isdigit():
        raise AddressError(f"domain {domain!r} ends with a numeric label")
    return name


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
