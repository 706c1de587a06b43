"""Mailboxes (BAL) on both engines: validation, immutability, members, credentials."""

import pytest
from sqlalchemy import select

from annuaire import bal, directory
from mssante import index
from mssante.schema import bal_credentials
from mssante.store import BlobRef

from factories import NOW, finess, rpps

DOMAIN = "chu-exemple.mssante.fr"


def per(local: str = "marie.martin", n: int = 1, **extra) -> bal.BalSpec:
    return bal.BalSpec(
        f"{local}@{DOMAIN}",
        "PER",
        display_name="Marie MARTIN",
        person_id_type="RPPS",
        person_id=rpps(n),
        **extra,
    )


def org(local: str = "cardiologie", **extra) -> bal.BalSpec:
    return bal.BalSpec(
        f"{local}@{DOMAIN}",
        "ORG",
        display_name="Cardiologie",
        facility_id_type="FINESS",
        facility_id=finess(1),
        **extra,
    )


def test_a_per_bal_is_created_with_its_imap_mailboxes_and_directory_entry(db):
    # covers: ANN-1
    with db.transaction() as conn:
        created = bal.add_bal(
            conn,
            per(profession_code="10", profession_label="Médecin", city="Lyon", postal_code="69003"),
            now=NOW,
        )
    assert created.address == f"marie.martin@{DOMAIN}"
    assert created.bal_type == "PER" and created.person_id_type == "RPPS"
    with db.read() as conn:
        assert {m.name for m in index.list_mailboxes(conn, created.address_key)} >= {
            "INBOX",
            "Sent",
        }
        hits = directory.search(conn, "martin").hits
    assert [h.address for h in hits] == [created.address]
    assert hits[0].profession == "Médecin" and hits[0].source == "local"


def test_domain_is_normalised_and_lookups_ignore_case(db):
    with db.transaction() as conn:
        created = bal.add_bal(
            conn,
            bal.BalSpec(
                "Dr.Durand@HÔPITAL-Exemple.MSSante.fr",
                "PER",
                person_id_type="RPPS",
                person_id=rpps(2),
            ),
            now=NOW,
        )
        a_label = "hôpital-exemple.mssante.fr".encode("idna").decode()
        assert created.address == f"Dr.Durand@{a_label}"
        assert bal.get_bal(conn, "dr.durand@hôpital-exemple.mssante.fr") == created
        with pytest.raises(bal.BalError, match="already exists"):
            bal.add_bal(
                conn,
                bal.BalSpec(
                    "DR.DURAND@hôpital-exemple.mssante.fr",
                    "PER",
                    person_id_type="RPPS",
                    person_id=rpps(3),
                ),
                now=NOW,
            )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (bal.BalSpec(f"x@{DOMAIN}", "PER"), "person identifier"),
        (
            bal.BalSpec(f"x@{DOMAIN}", "ORG", person_id_type="RPPS", person_id=rpps(1)),
            "facility identifier",
        ),
        (bal.BalSpec(f"x@{DOMAIN}", "APP"), "facility identifier"),
        (bal.BalSpec(f"x@{DOMAIN}", "CAB"), "person or a facility"),
        (bal.BalSpec(f"x@{DOMAIN}", "XYZ"), "PER, ORG, APP, CAB"),
        (
            bal.BalSpec(f"x@{DOMAIN}", "PER", person_id_type="RPPS", person_id="10000000001"),
            "check digit",
        ),
        (
            bal.BalSpec(f"x@{DOMAIN}", "PER", person_id_type="FINESS", person_id=finess(1)),
            "RPPS, ADELI",
        ),
        (
            bal.BalSpec(
                f"x@{DOMAIN}", "PER", person_id_type="RPPS", person_id=rpps(1), preferred_rank=0
            ),
            "rank",
        ),
        (
            bal.BalSpec("no-at-sign", "PER", person_id_type="RPPS", person_id=rpps(1)),
            "local@domain",
        ),
    ],
)
def test_invalid_bals_are_refused_with_a_reason(db, spec, message):
    # covers: ANN-1
    with db.transaction() as conn, pytest.raises(ValueError, match=message):
        bal.add_bal(conn, spec, now=NOW)


def test_address_and_type_never_change(db):
    # covers: ANN-3
    with db.transaction() as conn:
        bal.add_bal(conn, per(), now=NOW)
        for field in ("address", "bal_type", "person_id"):
            with pytest.raises(bal.BalError, match="cannot change"):
                bal.update_bal(conn, f"marie.martin@{DOMAIN}", {field: "x"}, now=NOW)
        updated = bal.update_bal(
            conn,
            f"marie.martin@{DOMAIN}",
            dict(display_name="Dr Marie Martin", preferred_rank=1),
            now=NOW,
        )
    assert updated.display_name == "Dr Marie Martin" and updated.preferred_rank == 1
    assert updated.bal_type == "PER"


def test_liste_rouge_hides_a_bal_from_search_and_back(db):
    # covers: ANN-3
    with db.transaction() as conn:
        bal.add_bal(conn, per(liste_rouge=True), now=NOW)
        assert directory.search(conn, "martin").hits == ()
        bal.update_bal(conn, f"marie.martin@{DOMAIN}", dict(liste_rouge=False), now=NOW)
        assert len(directory.search(conn, "martin").hits) == 1
        bal.update_bal(conn, f"marie.martin@{DOMAIN}", dict(liste_rouge=True), now=NOW)
        assert directory.search(conn, "martin").hits == ()


def test_members_open_org_mailboxes_and_only_people_can_be_members(db):
    with db.transaction() as conn:
        bal.add_bal(conn, per(), now=NOW)
        bal.add_bal(conn, per("jean.dupont", n=2), now=NOW)
        bal.add_bal(conn, org(), now=NOW)
        bal.add_member(conn, f"cardiologie@{DOMAIN}", f"Marie.Martin@{DOMAIN}")
        bal.add_member(conn, f"cardiologie@{DOMAIN}", f"marie.martin@{DOMAIN}")  # idempotent
        assert bal.members(conn, f"cardiologie@{DOMAIN}") == [f"marie.martin@{DOMAIN}"]
        assert bal.may_open(conn, f"cardiologie@{DOMAIN}", f"marie.martin@{DOMAIN}")
        assert not bal.may_open(conn, f"cardiologie@{DOMAIN}", f"jean.dupont@{DOMAIN}")
        assert bal.may_open(conn, f"jean.dupont@{DOMAIN}", f"jean.dupont@{DOMAIN}")
        assert not bal.may_open(conn, f"nobody@{DOMAIN}", f"jean.dupont@{DOMAIN}")
        with pytest.raises(bal.BalError, match="has no members"):
            bal.add_member(conn, f"marie.martin@{DOMAIN}", f"jean.dupont@{DOMAIN}")
        bal.add_bal(conn, org("urgences"), now=NOW)
        with pytest.raises(bal.BalError, match="not a personal"):
            bal.add_member(conn, f"cardiologie@{DOMAIN}", f"urgences@{DOMAIN}")
        bal.remove_member(conn, f"cardiologie@{DOMAIN}", f"marie.martin@{DOMAIN}")
        assert not bal.may_open(conn, f"cardiologie@{DOMAIN}", f"marie.martin@{DOMAIN}")


def test_passwords_are_argon2id_and_verified(db):
    with db.transaction() as conn:
        bal.add_bal(conn, per(), now=NOW)
        with pytest.raises(bal.BalError, match="12 characters"):
            bal.set_password(conn, f"marie.martin@{DOMAIN}", "short", now=NOW)
        bal.set_password(conn, f"marie.martin@{DOMAIN}", "correct horse battery", now=NOW)
        stored = conn.execute(select(bal_credentials.c.value)).scalar_one()
        assert stored.startswith("$argon2id$")
        assert bal.verify_password(conn, f"MARIE.MARTIN@{DOMAIN}", "correct horse battery")
        assert not bal.verify_password(conn, f"marie.martin@{DOMAIN}", "wrong horse battery")
        assert not bal.verify_password(conn, f"ghost@{DOMAIN}", "correct horse battery")
        assert ("password", "(argon2id hash)") in bal.credentials(conn, f"marie.martin@{DOMAIN}")


def test_certificates_and_oauth_identities_bind_to_bals(db):
    fingerprint = "AB:" * 31 + "CD"
    with db.transaction() as conn:
        bal.add_bal(
            conn,
            org(
                "dpi",
            ),
            now=NOW,
        )
        bal.bind(conn, f"dpi@{DOMAIN}", "certificate", fingerprint, now=NOW)
        bal.bind(conn, f"dpi@{DOMAIN}", "certificate", fingerprint, now=NOW)
        bal.bind(
            conn, f"dpi@{DOMAIN}", "oauth", "https://auth.esante.gouv.fr 810001234567", now=NOW
        )
        assert [b.address for b in bal.bals_for(conn, "certificate", fingerprint.lower())] == [
            f"dpi@{DOMAIN}"
        ]
        assert bal.bals_for(conn, "oauth", "https://auth.esante.gouv.fr 810001234567")
        with pytest.raises(bal.BalError, match="64 hex"):
            bal.bind(conn, f"dpi@{DOMAIN}", "certificate", "not-a-fingerprint", now=NOW)


def test_removing_a_bal_that_holds_mail_needs_purge(db):
    with db.transaction() as conn:
        created = bal.add_bal(conn, per(), now=NOW)
        inbox = index.get_mailbox(conn, created.address_key, "INBOX")
        index.append(conn, inbox, BlobRef("ab" * 32, 10), internal_date=NOW)
        with pytest.raises(bal.BalError, match="--purge"):
            bal.remove_bal(conn, created.address)
        bal.remove_bal(conn, created.address, purge=True)
        assert bal.get_bal(conn, created.address) is None
        assert index.list_mailboxes(conn, created.address_key) == []
        assert directory.search(conn, "martin").hits == ()
