"""The patient-space registry (INS-2) on both engines."""

import pytest

from annuaire import patients
from annuaire.ins import InsError, PatientStatus

from factories import NOW, ins


def test_unknown_ins_is_a_space_not_created(db):
    # covers: INS-2
    with db.read() as conn:
        patient = patients.get_patient(conn, ins(5))
    assert patient.status is PatientStatus.NOT_CREATED
    assert not patient.status.receives_mail()


def test_status_and_identity_are_kept_and_only_open_receives(db):
    # covers: INS-2
    with db.transaction() as conn:
        patients.upsert_patient(
            conn,
            ins(1),
            now=NOW,
            status="open",
            first_name="Léa",
            last_name="Dupont",
            notification_email="lea@Example.ORG",
        )
        patients.upsert_patient(conn, ins(1), now=NOW, status="closed")
        patient = patients.get_patient(conn, ins(1))
    assert patient.status is PatientStatus.CLOSED and not patient.status.receives_mail()
    assert (patient.first_name, patient.last_name) == ("Léa", "Dupont")
    assert patient.notification_email == "lea@example.org"
    assert PatientStatus.OPEN.receives_mail()


def test_bad_status_and_bad_ins_are_refused(db):
    with db.transaction() as conn:
        with pytest.raises(patients.PatientError, match="status must be one of"):
            patients.upsert_patient(conn, ins(1), now=NOW, status="active")
        with pytest.raises(InsError):
            patients.upsert_patient(conn, "123", now=NOW, status="open")


def test_csv_import_reports_bad_lines_without_echoing_the_ins(db):
    good, bad_key = ins(1), ins(2)[:-2] + ("00" if ins(2)[-2:] != "00" else "01")
    text = (
        "ins;status;first_name;last_name;notification_email\n"
        f"{good};open;Léa;Dupont;lea@example.org\n"
        f"{bad_key};open;X;Y;\n"
        f"{ins(3)};deleted;X;Y;\n"
    )
    with db.transaction() as conn:
        report = patients.import_patients(conn, text, now=NOW)
        assert patients.get_patient(conn, good).status is PatientStatus.OPEN
    assert report.imported == 1
    assert [e.split(":")[0] for e in report.errors] == ["line 3", "line 4"]
    assert all(bad_key not in e and ins(3) not in e for e in report.errors)


def test_passwords_only_for_known_patients(db):
    with db.transaction() as conn:
        with pytest.raises(patients.PatientError, match="unknown patient"):
            patients.set_password(conn, ins(7), "a long enough secret", now=NOW)
        patients.upsert_patient(conn, ins(7), now=NOW, status="open")
        patients.set_password(conn, ins(7), "a long enough secret", now=NOW)
        assert patients.get_patient(conn, ins(7)).has_password
