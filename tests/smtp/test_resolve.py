# covers: TS-1, TS-3
"""Where the delivery client connects: transport map, MX order, null/implicit MX, DNS errors.

DNS on the Internet cannot be used in tests, so the resolver is the one fake:
it answers with real dnspython rdata and raises real dnspython exceptions.
"""

from __future__ import annotations

import random

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from smtp.resolve import (
    MAX_MX,
    PermanentResolveError,
    Target,
    TemporaryResolveError,
    targets_for,
)

Answer = list[str] | Exception


class FakeResolver:
    """Answers (name, type) from a table; an absent entry is "no such record" (NoAnswer)."""

    def __init__(self, table: dict[tuple[str, str], Answer]) -> None:
        self.table = table
        self.queries: list[tuple[str, str]] = []

    async def resolve(self, qname: str, rdtype: str) -> list[dns.rdata.Rdata]:
        self.queries.append((qname, rdtype))
        answer = self.table.get((qname, rdtype), dns.resolver.NoAnswer())
        if isinstance(answer, Exception):
            raise answer
        kind = dns.rdatatype.from_text(rdtype)
        return [dns.rdata.from_text(dns.rdataclass.IN, kind, text) for text in answer]


def no_transport(domain: str) -> tuple[str, int] | None:
    return None


def timeout() -> Exception:
    return dns.resolver.LifetimeTimeout(timeout=5.0, errors=[])


async def test_transport_map_wins_and_dns_is_not_asked() -> None:
    resolver = FakeResolver({("peer.test", "MX"): ["10 mx.peer.test."]})
    asked: list[str] = []

    def transport(domain: str) -> tuple[str, int] | None:
        asked.append(domain)
        return ("10.0.0.7", 2525)

    targets = await targets_for("Peer.Test.", transport=transport, resolver=resolver)
    assert targets == [Target("10.0.0.7", 2525, None)]
    assert asked == ["peer.test"]
    assert resolver.queries == []


async def test_mx_hosts_come_by_preference_with_their_name_to_verify() -> None:
    resolver = FakeResolver(
        {("peer.test", "MX"): ["20 backup.peer.test.", "5 MX1.Peer.Test.", "10 mx2.peer.test."]}
    )
    targets = await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert targets == [
        Target("mx1.peer.test", 25, "mx1.peer.test"),
        Target("mx2.peer.test", 25, "mx2.peer.test"),
        Target("backup.peer.test", 25, "backup.peer.test"),
    ]


async def test_equal_preferences_are_shuffled_but_never_jump_a_preference() -> None:
    resolver = FakeResolver(
        {
            ("peer.test", "MX"): [
                "10 a.peer.test.",
                "10 b.peer.test.",
                "10 c.peer.test.",
                "20 z.peer.test.",
            ]
        }
    )
    orders = set()
    for seed in range(40):
        targets = await targets_for(
            "peer.test", transport=no_transport, resolver=resolver, rng=random.Random(seed)
        )
        hosts = [t.host for t in targets]
        assert sorted(hosts[:3]) == ["a.peer.test", "b.peer.test", "c.peer.test"]
        assert hosts[3] == "z.peer.test"
        orders.add(tuple(hosts))
    assert len(orders) > 1


async def test_duplicate_mx_hosts_are_tried_once_and_the_list_is_bounded() -> None:
    records = ["10 mx.peer.test.", "20 mx.peer.test."] + [
        f"{30 + i} m{i}.peer.test." for i in range(50)
    ]
    resolver = FakeResolver({("peer.test", "MX"): records})
    targets = await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert len(targets) == MAX_MX
    assert [t.host for t in targets[:2]] == ["mx.peer.test", "m0.peer.test"]


async def test_null_mx_is_permanent() -> None:
    resolver = FakeResolver({("nomail.test", "MX"): ["0 ."]})
    with pytest.raises(PermanentResolveError) as caught:
        await targets_for("nomail.test", transport=no_transport, resolver=resolver)
    assert caught.value.status == "5.1.10"
    assert resolver.queries == [("nomail.test", "MX")]  # no fallback to the address


async def test_null_mx_beside_real_mx_is_ignored() -> None:
    resolver = FakeResolver({("peer.test", "MX"): ["0 .", "10 mx.peer.test."]})
    targets = await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert targets == [Target("mx.peer.test", 25, "mx.peer.test")]


async def test_nxdomain_is_permanent() -> None:
    resolver = FakeResolver({("gone.test", "MX"): dns.resolver.NXDOMAIN()})
    with pytest.raises(PermanentResolveError) as caught:
        await targets_for("gone.test", transport=no_transport, resolver=resolver)
    assert caught.value.status == "5.1.2"


@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
async def test_no_mx_but_an_address_makes_the_domain_its_own_mx(rdtype: str) -> None:
    address = "192.0.2.10" if rdtype == "A" else "2001:db8::10"
    resolver = FakeResolver({("peer.test", rdtype): [address]})
    targets = await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert targets == [Target("peer.test", 25, "peer.test")]


async def test_no_mx_and_no_address_is_permanent() -> None:
    resolver = FakeResolver({})
    with pytest.raises(PermanentResolveError) as caught:
        await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert caught.value.status == "5.1.2"
    assert resolver.queries == [("peer.test", "MX"), ("peer.test", "A"), ("peer.test", "AAAA")]


async def test_address_lookup_timeout_without_any_answer_is_temporary() -> None:
    resolver = FakeResolver({("peer.test", "A"): timeout()})
    with pytest.raises(TemporaryResolveError):
        await targets_for("peer.test", transport=no_transport, resolver=resolver)


async def test_address_lookup_timeout_is_forgiven_when_the_other_family_answers() -> None:
    resolver = FakeResolver({("peer.test", "A"): timeout(), ("peer.test", "AAAA"): ["2001:db8::1"]})
    targets = await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert targets == [Target("peer.test", 25, "peer.test")]


@pytest.mark.parametrize(
    "error",
    [timeout(), dns.resolver.NoNameservers(), dns.resolver.NoResolverConfiguration()],
    ids=["timeout", "servfail", "no-config"],
)
async def test_dns_failures_are_temporary(error: Exception) -> None:
    resolver = FakeResolver({("peer.test", "MX"): error})
    with pytest.raises(TemporaryResolveError) as caught:
        await targets_for("peer.test", transport=no_transport, resolver=resolver)
    assert caught.value.status == "4.4.3"


async def test_internationalised_domain_is_looked_up_in_a_label_form() -> None:
    resolver = FakeResolver({("xn--hpital-ixa.test", "MX"): ["10 mx.xn--hpital-ixa.test."]})
    targets = await targets_for("Hôpital.test", transport=no_transport, resolver=resolver)
    assert targets == [Target("mx.xn--hpital-ixa.test", 25, "mx.xn--hpital-ixa.test")]
