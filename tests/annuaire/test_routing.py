"""route(): every outcome, table-driven, on both engines."""

import pytest

from annuaire import bal, patients, trust
from annuaire.dn import parse_dn
from annuaire.ins import PatientStatus
from annuaire.routing import (
    Bridge,
    LocalMailbox,
    PatientMailbox,
    Refused,
    Remote,
    RoutingContext,
    route,
)
from annuaire.whitelist_xml import WhitelistEntry, render_whitelist

from factories import NOW, finess, ins, rpps

CONTEXT = RoutingContext(
    local_domains=frozenset({"chu-exemple.mssante.fr", "clinique.mssante.fr"}),
    patient_domain="patient.mssante.fr",
    bridge_address="depot-dmp@chu-exemple.mssante.fr",
)
OPEN, CLOSED, UNKNOWN = ins(1), ins(2), ins(3)


@pytest.fixture
def directory_db(db):
    entries = [
        WhitelistEntry(
            "medecin.mssante.fr", parse_dn("CN=bus.mssante.fr,O=ANS,C=FR"), "Mailiz", "", "", NOW
        ),
        WhitelistEntry(
            "ch-autre.aura.mssante.fr", parse_dn("CN=mx.autre.fr,O=CH,C=FR"), "", "", "", NOW
        ),
    ]
    with db.transaction() as conn:
        trust.import_list(conn, render_whitelist(entries, NOW), source="test", now=NOW)
        bal.add_bal(
            conn,
            bal.BalSpec(
                "dr.martin@chu-exemple.mssante.fr", "PER", person_id_type="RPPS", person_id=rpps(1)
            ),
            now=NOW,
        )
        bal.add_bal(
            conn,
            bal.BalSpec(
                "dpi@clinique.mssante.fr", "APP", facility_id_type="FINESS", facility_id=finess(1)
            ),
            now=NOW,
        )
        patients.upsert_patient(conn, OPEN, status="open", now=NOW)
        patients.upsert_patient(conn, CLOSED, status="closed", now=NOW)
    return db


CASES = [
    ("Dr.Martin@CHU-exemple.mssante.fr", LocalMailbox("dr.martin@chu-exemple.mssante.fr", "PER")),
    ("dpi@clinique.mssante.fr", LocalMailbox("dpi@clinique.mssante.fr", "APP")),
    ("nobody@chu-exemple.mssante.fr", Refused(550, "5.1.1", "No such mailbox here")),
    ("depot-dmp@chu-exemple.mssante.fr", Bridge("depot-dmp@chu-exemple.mssante.fr")),
    (f"{OPEN}@patient.mssante.fr", PatientMailbox(OPEN, PatientStatus.OPEN)),
    (f"{CLOSED}@PATIENT.mssante.fr", PatientMailbox(CLOSED, PatientStatus.CLOSED)),
    (f"{UNKNOWN}@patient.mssante.fr", PatientMailbox(UNKNOWN, PatientStatus.NOT_CREATED)),
    ("123456789012345@patient.mssante.fr", "5.1.3"),
    ("jean.dupont@patient.mssante.fr", "5.1.3"),
    ("confrere@medecin.mssante.fr", Remote("medecin.mssante.fr")),
    ("x@CH-Autre.aura.mssante.fr", Remote("ch-autre.aura.mssante.fr")),
    ("someone@gmail.com", "5.7.1"),
    ("x@autre.mssante.fr", "5.7.1"),  # no implicit parent/child domains
    ("not an address", "5.1.3"),
    ("@chu-exemple.mssante.fr", "5.1.3"),
]


@pytest.mark.parametrize(("address", "expected"), CASES, ids=[c[0] for c in CASES])
def test_route(directory_db, address, expected):
    # covers: INS-1, INS-2, TS-2
    with directory_db.read() as conn:
        result = route(conn, address, CONTEXT)
    if isinstance(expected, str):
        assert isinstance(result, Refused) and result.status == expected, result
        assert OPEN not in result.reply()
    else:
        assert result == expected


def test_without_a_whitelist_nothing_is_remote(db):
    # covers: TS-2
    with db.read() as conn:
        result = route(conn, "confrere@medecin.mssante.fr", CONTEXT)
    assert isinstance(result, Refused) and result.reply().startswith("550 5.7.1")


def test_routing_context_from_the_node_configuration(tmp_path):
    from mssante import config as cfg

    (tmp_path / cfg.CONFIG_NAME).write_text(
        '[node]\ndomain = "CHU-Exemple.mssante.fr"\nextra_domains = ["clinique.mssante.fr"]\n'
        'patient_domain = "Patient.MSSante.fr"\n'
        'bridge_address = "Depot-DMP@chu-exemple.mssante.fr"\n'
    )
    context = RoutingContext.from_config(cfg.load(tmp_path))
    assert context == CONTEXT
