"""``route(address)``: the one answer the SMTP server and the queue ask of the directory.

Where does mail for this recipient go? To a BAL we host, to a patient space of
the patient domain we serve, to the envoi-en-Y bridge, to another operator of
the trust space, or nowhere, with the SMTP code and text to give the sender.
The order matters and is the documented rule:

1. syntax (5.1.3),
2. the bridge address,
3. the patient domain: ``reponse.automatique-test`` is the MSSC-TEST-1
   responder; any other local part must be a valid INS (5.1.3); any valid
   INS routes to its patient space, whatever its status (the MSS-C policies
   decide what a closed or unknown space means for the sender) — on the
   node that serves the patient domain; elsewhere it continues as a remote
   domain of the trust space,
4. our local domains: a hosted BAL, else unknown user (5.1.1),
5. a domain of the trust space: remote delivery,
6. anything else: outside the trust space (5.7.1).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from annuaire import bal as bals
from annuaire import trust
from annuaire.addresses import AddressError, address_key, normalise_domain, split_address
from annuaire.ins import InsError, PatientStatus, parse_patient_address
from annuaire.patients import get_patient
from mssante.config import Config


@dataclass(frozen=True)
class RoutingContext:
    local_domains: frozenset[str]  # normalised (lower-case A-labels)
    patient_domain: str
    bridge_address: str | None = None  # address_key of the Y bridge, if enabled
    #: This node hosts the patient spaces; else patient mail is remote like any other.
    serves_patients: bool = True

    @classmethod
    def from_config(cls, config: Config) -> RoutingContext:
        bridge = config.node.bridge_address
        return cls(
            local_domains=config.local_domains,
            patient_domain=normalise_domain(config.node.patient_domain),
            bridge_address=address_key(bridge) if bridge else None,
            serves_patients=config.node.serves_patient_domain,
        )


@dataclass(frozen=True)
class LocalMailbox:
    address: str  # address_key of the BAL
    bal_type: str


@dataclass(frozen=True)
class PatientMailbox:
    ins: str
    status: PatientStatus


@dataclass(frozen=True)
class Responder:
    """The MSSC-TEST-1 automatic responder of the patient domain."""

    address: str


@dataclass(frozen=True)
class Bridge:
    address: str


@dataclass(frozen=True)
class Remote:
    domain: str


@dataclass(frozen=True)
class Refused:
    code: int  # SMTP reply code
    status: str  # enhanced status code
    reason: str  # human text for the reply

    def reply(self) -> str:
        return f"{self.code} {self.status} {self.reason}"


Route = LocalMailbox | PatientMailbox | Responder | Bridge | Remote | Refused

#: Local part of the MSSC-TEST-1 responder in the patient domain.
TEST_RESPONDER = "reponse.automatique-test"


def route(conn: Connection, address: str, context: RoutingContext) -> Route:
    try:
        _, domain = split_address(address)
        key = address_key(address)
    except AddressError as exc:
        return Refused(553, "5.1.3", f"Bad recipient address syntax: {exc}")
    if context.bridge_address is not None and key == context.bridge_address:
        return Bridge(key)
    if domain == context.patient_domain:
        if key.partition("@")[0] == TEST_RESPONDER:
            if context.serves_patients:
                return Responder(key)
        else:
            try:
                ins = parse_patient_address(address, context.patient_domain)
            except InsError:
                return Refused(
                    550, "5.1.3", "Invalid patient address: the local part must be a valid INS"
                )
            assert ins is not None
            if context.serves_patients:
                return PatientMailbox(ins, get_patient(conn, ins).status)
    if domain in context.local_domains:
        found = bals.get_bal(conn, key)
        if found is None:
            return Refused(550, "5.1.1", "No such mailbox here")
        return LocalMailbox(found.address_key, found.bal_type)
    if trust.is_listed(conn, domain):
        return Remote(domain)
    return Refused(550, "5.7.1", f"Domain {domain} is not in the MSSanté trust space")
