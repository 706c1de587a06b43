"""Where to connect for a remote domain: the operator's transport map, then DNS MX.

The transport map wins because the trust space often lives on private
networks (or two nodes on one machine) where DNS says nothing useful; those
targets carry no TLS name, so the peer is identified by its certificate DN
paired with the domain in the whitelist (the chain is still verified).

DNS follows RFC 5321 §5.1: MX records by preference (shuffled among equal
preferences to spread load), the domain itself as an implicit MX when it has
no MX but has an address, and RFC 7505 null MX as a permanent refusal. A
missing domain is permanent; a resolver that does not answer is temporary,
so the queue retries instead of bouncing on a DNS hiccup.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol, TypeAlias

import dns.asyncresolver
import dns.exception
import dns.name
import dns.resolver

__all__ = [
    "MAX_MX",
    "SMTP_PORT",
    "MxResolver",
    "PermanentResolveError",
    "ResolveError",
    "Target",
    "TemporaryResolveError",
    "Transport",
    "targets_for",
]

SMTP_PORT = 25
MAX_MX = 10
"""MX hosts tried at most: a hostile zone cannot make one delivery open hundreds of sessions."""

Transport: TypeAlias = Callable[[str], tuple[str, int] | None]
"""The operator's static map: domain -> (host, port), or None when DNS decides."""


@dataclass(frozen=True)
class Target:
    """One place to try; ``tls_name`` is the name to verify in the peer certificate.

    ``None`` means "no name check" (transport map: an IP or a private name
    chosen by the operator); the chain is verified and the DN pairing decides.
    """

    host: str
    port: int
    tls_name: str | None


class ResolveError(Exception):
    """No target for a domain; ``status`` is the RFC 3463 code to report."""

    def __init__(self, status: str, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class PermanentResolveError(ResolveError):
    """The domain cannot receive mail (NXDOMAIN, null MX, no address): bounce."""


class TemporaryResolveError(ResolveError):
    """DNS did not answer (timeout, SERVFAIL): retry later."""


class MxResolver(Protocol):
    """The part of ``dns.asyncresolver.Resolver`` we use; tests pass a fake.

    Implementations return an iterable of rdata (MX rdata have ``preference``
    and ``exchange``) and raise the ``dns.resolver`` exceptions
    (``NXDOMAIN``, ``NoAnswer``, ``NoNameservers``, ``LifetimeTimeout``).
    """

    async def resolve(self, qname: str, rdtype: str) -> Iterable[Any]: ...


@cache
def _default_resolver() -> dns.asyncresolver.Resolver:
    """Read ``/etc/resolv.conf`` once, not per delivery."""
    return dns.asyncresolver.Resolver()


def _normalise(domain: str) -> str:
    name = domain.strip().rstrip(".").lower()
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise PermanentResolveError("5.1.2", f"{domain!r} is not a valid domain") from None
    if not name:
        raise PermanentResolveError("5.1.2", "empty domain")
    return name


async def _query(resolver: MxResolver, name: str, rdtype: str) -> list[Any] | None:
    """The records, or None when the name exists without records of that type.

    Raises PermanentResolveError for a name that does not exist and
    TemporaryResolveError when the answer could not be obtained.
    """
    try:
        return list(await resolver.resolve(name, rdtype))
    except dns.resolver.NoAnswer:
        return None
    except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
        raise PermanentResolveError("5.1.2", f"domain {name} does not exist (NXDOMAIN)") from None
    except dns.name.NameTooLong:
        raise PermanentResolveError("5.1.2", f"{name} is not a valid domain name") from None
    except dns.exception.Timeout:
        raise TemporaryResolveError("4.4.3", f"DNS {rdtype} lookup for {name} timed out") from None
    except dns.resolver.NoNameservers:
        raise TemporaryResolveError(
            "4.4.3", f"DNS {rdtype} lookup for {name} failed (SERVFAIL or no server answered)"
        ) from None
    except dns.exception.DNSException as exc:
        raise TemporaryResolveError(
            "4.4.3", f"DNS {rdtype} lookup for {name} failed: {type(exc).__name__}"
        ) from None


def _order(records: list[Any], rng: random.Random | None) -> list[str]:
    """MX exchanges by preference, shuffled within a preference, duplicates dropped."""
    shuffle = rng.shuffle if rng is not None else random.shuffle
    by_preference: dict[int, list[str]] = {}
    for record in records:
        exchange = record.exchange.to_text(omit_final_dot=True).lower()
        by_preference.setdefault(int(record.preference), []).append(exchange)
    hosts: list[str] = []
    for preference in sorted(by_preference):
        group = by_preference[preference]
        shuffle(group)
        hosts.extend(host for host in group if host not in hosts)
    return hosts[:MAX_MX]


async def _implicit_mx(resolver: MxResolver, name: str) -> list[Target]:
    """RFC 5321 §5.1: no MX, but an A or AAAA record makes the domain its own MX."""
    temporary: TemporaryResolveError | None = None
    for rdtype in ("A", "AAAA"):
        try:
            if await _query(resolver, name, rdtype):
                return [Target(name, SMTP_PORT, name)]
        except TemporaryResolveError as exc:
            temporary = exc
    if temporary is not None:
        raise temporary
    raise PermanentResolveError("5.1.2", f"domain {name} has neither MX nor address records")


async def targets_for(
    domain: str,
    *,
    transport: Transport,
    resolver: MxResolver | None = None,
    rng: random.Random | None = None,
) -> list[Target]:
    """The targets to try in order for ``domain``, or a Permanent/TemporaryResolveError.

    ``rng`` only orders MX hosts of equal preference (tests pass a seeded one).
    """
    name = _normalise(domain)
    static = await asyncio.to_thread(transport, name)  # a table lookup: off the event loop
    if static is not None:
        host, port = static
        return [Target(host, port, None)]
    chosen = resolver if resolver is not None else _default_resolver()
    records = await _query(chosen, name, "MX")
    if records is None or not records:
        return await _implicit_mx(chosen, name)
    real = [r for r in records if r.exchange != dns.name.root]
    if not real:
        # RFC 7505: "0 ." (we also accept a non-zero preference) means "no mail here".
        raise PermanentResolveError("5.1.10", f"domain {name} accepts no mail (null MX)")
    return [Target(host, SMTP_PORT, host) for host in _order(real, rng)]
