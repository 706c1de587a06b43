"""Directory (annuaire): who we host, who we trust, where mail goes.

Mailboxes (BAL PER/ORG/APP/CAB) with their members and credentials, the
patient-space registry (INS), the national trust-space whitelist, the national
directory extraction and its search, and :func:`route`, the one question the
SMTP server and the queue ask: where does this recipient go?

Other packages import from here; the submodules are the directory's own.
"""

from annuaire.addresses import (
    AddressError,
    address_key,
    normalise_address,
    normalise_domain,
    split_address,
)
from annuaire.bal import Bal, BalError, BalSpec, bals_for, get_bal, may_open, verify_password
from annuaire.conversations import conversation_state, set_conversation
from annuaire.directory import accepts_patient_initiation
from annuaire.dn import DN, DNError, dn_from_x509, parse_dn
from annuaire.ins import InsError, PatientStatus, parse_patient_address, validate_ins
from annuaire.patients import (
    Patient,
    get_patient,
    last_notified,
    record_notification,
    verify_patient_password,
)
from annuaire.routing import (
    TEST_RESPONDER,
    Bridge,
    LocalMailbox,
    PatientMailbox,
    Refused,
    Remote,
    Responder,
    Route,
    RoutingContext,
    route,
)
from annuaire.trust import active_generation, is_listed, pair_matches

__all__ = [
    "DN",
    "TEST_RESPONDER",
    "AddressError",
    "Bal",
    "BalError",
    "BalSpec",
    "Bridge",
    "DNError",
    "InsError",
    "LocalMailbox",
    "Patient",
    "PatientMailbox",
    "PatientStatus",
    "Refused",
    "Remote",
    "Responder",
    "Route",
    "RoutingContext",
    "accepts_patient_initiation",
    "active_generation",
    "address_key",
    "bals_for",
    "conversation_state",
    "dn_from_x509",
    "get_bal",
    "get_patient",
    "is_listed",
    "last_notified",
    "may_open",
    "normalise_address",
    "normalise_domain",
    "pair_matches",
    "parse_dn",
    "parse_patient_address",
    "record_notification",
    "route",
    "set_conversation",
    "split_address",
    "validate_ins",
    "verify_password",
    "verify_patient_password",
]
