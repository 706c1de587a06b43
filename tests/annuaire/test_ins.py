"""INS matricule (NIR/NIA), patient addresses and patient-space status."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire.ins import (
    InsError,
    PatientStatus,
    ins_key,
    parse_patient_address,
    patient_address,
    validate_ins,
)

DOMAIN = "patient.mssante.fr"
ANS_TEST_NIR = "279035121518989"  # the test NIR used throughout ANS examples


def ins(body: str) -> str:
    return body + ins_key(body)


bodies = st.tuples(
    st.sampled_from("123478"),
    st.text(alphabet="0123456789", min_size=4, max_size=4),  # year, month
    st.one_of(
        st.text(alphabet="0123456789", min_size=2, max_size=2),
        st.sampled_from(["2A", "2B", "2a", "2b"]),
    ),
    st.text(alphabet="0123456789", min_size=6, max_size=6),  # commune, order
).map("".join)


# --- the matricule ------------------------------------------------------------


# covers: INS-1
def test_the_ans_test_nir_is_valid():
    assert validate_ins(ANS_TEST_NIR) == ANS_TEST_NIR
    assert ins_key(ANS_TEST_NIR[:13]) == "89"


# covers: INS-1
def test_an_ans_address_example_with_a_wrong_key_is_refused():
    # `288091234567823@patient.mssante.fr` appears in ANS material, but its key is
    # 94: the key check is not relaxed for it.
    with pytest.raises(InsError, match=r"^INS key 23 does not match \(expected 94\)$"):
        validate_ins("288091234567823")


# covers: INS-1
@pytest.mark.parametrize(
    "body",
    [
        "1760175123456",
        "2991299001002",
        "3850199123045",
        "4000000000001",
        "7123456789012",
        "8990250600123",
    ],
)
def test_nir_and_nia_built_with_ins_key_validate(body):
    assert validate_ins(ins(body)) == ins(body)
    assert validate_ins(f" {ins(body)}\n") == ins(body)


# covers: INS-1
def test_corsica_reads_2a_as_19_and_2b_as_18():
    assert ins_key("185012A123456") == "66" == ins_key("1850119123456")
    assert ins_key("185012B123456") == "93" == ins_key("1850118123456")
    assert validate_ins("185012A12345666") == "185012A12345666"
    assert validate_ins("185012B12345693") == "185012B12345693"


# covers: INS-1
def test_lower_case_corsica_is_normalised():
    assert validate_ins("185012a12345666") == "185012A12345666"
    assert ins_key("185012b123456") == "93"


def test_corsican_key_is_not_the_key_of_20():
    with pytest.raises(InsError, match=r"expected 66"):
        validate_ins("185012A" + "123456" + ins_key("1850120123456"))


# covers: INS-1
def test_key_97_when_the_body_is_a_multiple_of_97():
    body = "1760175123033"
    assert int(body) % 97 == 0
    assert ins_key(body) == "97"
    assert validate_ins(body + "97") == body + "97"
    with pytest.raises(InsError, match=r"INS key 00 does not match \(expected 97\)"):
        validate_ins(body + "00")


# covers: INS-1
@pytest.mark.parametrize("length", [0, 13, 14, 16])
def test_wrong_length_is_refused(length):
    value = (ANS_TEST_NIR + "0")[:length]
    with pytest.raises(InsError, match=rf"^INS must be 15 characters, got {length}$"):
        validate_ins(value)


# covers: INS-1
@pytest.mark.parametrize(
    "value",
    [
        "A79035121518989",  # kind
        "2790351215189A9",  # key
        "27903512151B989",  # order
        "2790AB121518989",  # month/department boundary
        "27903AB21518989",  # department other than 2A/2B
        "279032C21518989",  # 2C is not Corsica
    ],
)
def test_letters_outside_the_corsican_department_are_refused(value):
    with pytest.raises(InsError, match=r"^INS contains letters outside the Corsican department$"):
        validate_ins(value)


@pytest.mark.parametrize("value", ["2790351215189-9", "27903512151898²", "٢79035121518989"])
def test_other_non_digits_are_refused(value):
    with pytest.raises(InsError, match=r"^INS must contain only digits"):
        validate_ins(value)


# covers: INS-1
def test_inner_spaces_are_refused_not_removed():
    with pytest.raises(InsError, match=r"^INS must not contain spaces$"):
        validate_ins("2 79 03 51 215 189 89")
    with pytest.raises(InsError, match=r"^INS must not contain spaces$"):
        validate_ins("27903512151\t8989")


# covers: INS-1
@pytest.mark.parametrize("kind", "0569")
def test_unknown_first_digit_is_refused(kind):
    value = kind + ANS_TEST_NIR[1:]  # the kind is checked before the key
    with pytest.raises(InsError, match=rf"^INS must start with 1 or 2 \(NIR\).*got {kind}$"):
        validate_ins(value)


def test_ins_key_checks_the_body():
    with pytest.raises(InsError, match=r"^INS body must be 13 characters, got 12$"):
        ins_key("279035121518")
    with pytest.raises(InsError, match="letters outside"):
        ins_key("27903X1215189")


def test_messages_do_not_repeat_the_matricule():
    with pytest.raises(InsError) as caught:
        validate_ins("279035121518988")
    assert "2790351215189" not in str(caught.value)


# covers: INS-1
@settings(max_examples=100)
@given(bodies)
def test_body_plus_its_key_validates_and_every_other_key_fails(body):
    key = ins_key(body)
    assert len(key) == 2
    assert 1 <= int(key) <= 97
    assert validate_ins(body + key) == body.upper() + key
    for other in range(100):
        if f"{other:02d}" != key:
            with pytest.raises(InsError, match="does not match"):
                validate_ins(f"{body}{other:02d}")


# --- patient addresses ----------------------------------------------------------


# covers: INS-1
def test_patient_address_round_trip():
    address = patient_address(ANS_TEST_NIR, DOMAIN)
    assert address == f"{ANS_TEST_NIR}@{DOMAIN}"
    assert parse_patient_address(address, DOMAIN) == ANS_TEST_NIR


def test_patient_address_normalises_its_parts():
    assert patient_address("185012a12345666", "Patient.MSSante.FR") == f"185012A12345666@{DOMAIN}"


def test_patient_address_refuses_a_bad_ins():
    with pytest.raises(InsError, match="does not match"):
        patient_address("279035121518988", DOMAIN)


# covers: INS-1
def test_another_domain_is_not_a_patient_address():
    assert parse_patient_address(f"{ANS_TEST_NIR}@medecin.mssante.fr", DOMAIN) is None
    assert parse_patient_address("dr.house@hopital.mssante.fr", DOMAIN) is None
    assert parse_patient_address(f"{ANS_TEST_NIR}@sub.{DOMAIN}", DOMAIN) is None
    assert parse_patient_address("postmaster", DOMAIN) is None
    assert parse_patient_address(f"x@{'a' * 70}.fr", DOMAIN) is None  # not even a domain


# covers: INS-1
@pytest.mark.parametrize(
    "local, message",
    [
        ("dr.house", "INS must be 15 characters, got 8"),
        ("", "INS must be 15 characters, got 0"),
        ("279035121518988", "INS key 88 does not match"),
        (" 279035121518989", "INS must not contain spaces"),
        ('"279035121518989"', "INS must be 15 characters, got 17"),
        ("27903AB21518989", "letters outside the Corsican department"),
    ],
)
def test_malformed_local_part_in_the_patient_domain_raises(local, message):
    with pytest.raises(InsError, match=message):
        parse_patient_address(f"{local}@{DOMAIN}", DOMAIN)


# covers: INS-1
def test_domain_comparison_ignores_case_and_idna_form():
    assert parse_patient_address(f"{ANS_TEST_NIR}@PATIENT.MSSante.fr", DOMAIN) == ANS_TEST_NIR
    assert parse_patient_address(f"{ANS_TEST_NIR}@{DOMAIN}", "Patient.MSSANTE.FR") == ANS_TEST_NIR
    unicode_domain = "patient.hôpital.test"
    ascii_domain = "patient.xn--hpital-ixa.test"
    assert parse_patient_address(f"{ANS_TEST_NIR}@{ascii_domain}", unicode_domain) == ANS_TEST_NIR
    shouted = f"{ANS_TEST_NIR}@PATIENT.HÔPITAL.test"
    assert parse_patient_address(shouted, ascii_domain) == ANS_TEST_NIR
    assert patient_address(ANS_TEST_NIR, unicode_domain) == f"{ANS_TEST_NIR}@{ascii_domain}"


# covers: INS-1
def test_corsican_letters_in_the_local_part_accepted_in_either_case():
    assert parse_patient_address(f"185012a12345666@{DOMAIN}", DOMAIN) == "185012A12345666"
    assert parse_patient_address(f"185012B12345693@{DOMAIN}", DOMAIN) == "185012B12345693"


def test_a_patient_domain_that_is_not_a_domain_is_a_configuration_error():
    with pytest.raises(ValueError, match="domain") as caught:
        parse_patient_address(f"{ANS_TEST_NIR}@{DOMAIN}", "bad..domain")
    assert not isinstance(caught.value, InsError)


# --- patient-space status ---------------------------------------------------------


# covers: INS-2
def test_patient_status_values_and_only_open_receives_mail():
    assert [s.value for s in PatientStatus] == ["not_created", "opposed", "open", "closed"]
    assert PatientStatus("open") is PatientStatus.OPEN
    assert PatientStatus.OPEN.receives_mail()
    for status in (PatientStatus.NOT_CREATED, PatientStatus.OPPOSED, PatientStatus.CLOSED):
        assert not status.receives_mail()
