"""French health identifiers: Luhn keys, shapes, La Poste, national prefixed ids."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire.identifiers import (
    FACILITY_ID_TYPES,
    PERSON_ID_TYPES,
    IdentifierError,
    IdType,
    facility_national_id,
    luhn_key,
    luhn_valid,
    parse_national_id,
    person_national_id,
    split_national_id,
    validate,
    validate_adeli,
    validate_finess,
    validate_rpps,
    validate_siren,
    validate_siret,
)


def keyed(payload: str) -> str:
    """A valid number by construction: payload + its Luhn key."""
    return payload + str(luhn_key(payload))


def wrong_key(payload: str) -> str:
    return payload + str((luhn_key(payload) + 1) % 10)


LENGTHS: dict[IdType, int] = {"RPPS": 11, "ADELI": 9, "FINESS": 9, "SIREN": 9, "SIRET": 14}
VALID: dict[IdType, str] = {
    "RPPS": keyed("1000123456"),
    "ADELI": keyed("75123456"),
    "FINESS": keyed("13078604"),
    "SIREN": keyed("40248353"),
    "SIRET": keyed("4024835340001"),
}


# --- Luhn ---------------------------------------------------------------------


def test_luhn_on_textbook_values():
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert luhn_key("7992739871") == 3
    assert luhn_key("0") == 0


def test_luhn_valid_refuses_what_is_not_digits():
    assert not luhn_valid("")
    assert not luhn_valid("7992739871 3")
    assert not luhn_valid("²")  # str.isdigit() says yes; we do not
    assert not luhn_valid("٠")  # Arabic-Indic zero


def test_luhn_key_refuses_non_digits():
    with pytest.raises(ValueError, match="digits"):
        luhn_key("12A")
    with pytest.raises(ValueError, match="digits"):
        luhn_key("")


@settings(max_examples=200)
@given(st.text(alphabet="0123456789", min_size=1, max_size=20), st.data())
def test_luhn_key_makes_a_valid_number_and_any_single_digit_change_breaks_it(payload, data):
    number = keyed(payload)
    assert luhn_valid(number)
    position = data.draw(st.integers(0, len(number) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    assert not luhn_valid(number[:position] + replacement + number[position + 1 :])


# --- each identifier ----------------------------------------------------------


# covers: ANN-1
@pytest.mark.parametrize("kind", list(LENGTHS))
def test_valid_identifiers_built_with_luhn_key_validate_and_are_stripped(kind):
    assert validate(kind, VALID[kind]) == VALID[kind]
    assert validate(kind, f" \t{VALID[kind]}\n") == VALID[kind]


# covers: ANN-1
@pytest.mark.parametrize("kind", list(LENGTHS))
def test_bad_check_digit_is_refused_naming_the_value(kind):
    bad = wrong_key(VALID[kind][:-1])
    with pytest.raises(IdentifierError, match=rf"^{kind} {bad}: bad check digit$"):
        validate(kind, bad)


# covers: ANN-1
@pytest.mark.parametrize("kind", list(LENGTHS))
def test_wrong_length_is_refused_with_the_length_found(kind):
    n = LENGTHS[kind]
    unit = "characters" if kind == "FINESS" else "digits"
    for value in (VALID[kind][:-1], VALID[kind] + "0", ""):
        expected = rf"^{kind} must be {n} {unit}, got {len(value)}$"
        with pytest.raises(IdentifierError, match=expected):
            validate(kind, value)


# covers: ANN-1
@pytest.mark.parametrize("kind", list(LENGTHS))
def test_letters_and_inner_spaces_are_refused_not_fixed(kind):
    value = VALID[kind]
    for bad in ("X" + value[1:], value[:4] + " " + value[5:], value[:-1] + "²"):
        with pytest.raises(IdentifierError, match=rf"^{kind} must contain only digits"):
            validate(kind, bad)


def test_published_samples():
    assert validate_rpps("01234567897") == "01234567897"  # ANS documentation sample
    assert validate_finess("750712184") == "750712184"  # AP-HP legal entity
    assert validate_siren("356000000") == "356000000"  # La Poste


def test_the_dedicated_validators_match_the_dispatcher():
    assert validate_rpps(VALID["RPPS"]) == VALID["RPPS"]
    assert validate_adeli(VALID["ADELI"]) == VALID["ADELI"]
    assert validate_finess(VALID["FINESS"]) == VALID["FINESS"]
    assert validate_siren(VALID["SIREN"]) == VALID["SIREN"]
    assert validate_siret(VALID["SIRET"]) == VALID["SIRET"]


def test_unknown_kind_is_refused():
    with pytest.raises(IdentifierError, match="unknown identifier type 'NIR'"):
        validate("NIR", "1")  # type: ignore[arg-type]


def test_identifier_error_is_a_value_error():
    with pytest.raises(ValueError):
        validate_rpps("1")


# --- FINESS: Corsica --------------------------------------------------------------


# covers: ANN-1
@pytest.mark.parametrize("value", ["2A0000014", "2B0000019", " 2A1234567 "])
def test_corsican_finess_is_accepted_on_shape_alone(value):
    assert validate_finess(value) == value.strip()


@pytest.mark.parametrize("value", ["2a0000014", "2C0000014", "A20000014", "2A000001B", "20A000014"])
def test_other_letters_in_finess_are_refused(value):
    with pytest.raises(IdentifierError, match=r"FINESS must contain only digits.*2A or 2B"):
        validate_finess(value)


# --- SIRET: La Poste --------------------------------------------------------------


# covers: ANN-1
def test_la_poste_siret_uses_the_digit_sum_rule():
    value = "35600000000001"  # digit sum 15, not Luhn-valid
    assert not luhn_valid(value)
    assert validate_siret(value) == value


def test_la_poste_siret_with_a_digit_sum_not_multiple_of_5_is_refused_even_if_luhn_valid():
    value = keyed("3560000000012")
    assert luhn_valid(value)
    assert sum(map(int, value)) % 5 != 0
    with pytest.raises(IdentifierError, match="La Poste: digit sum must be a multiple of 5"):
        validate_siret(value)


def test_la_poste_head_office_follows_luhn():
    assert validate_siret("35600000000048") == "35600000000048"


def test_other_siret_keep_the_luhn_rule():
    value = "40248353400011"  # digit sum 35 but a bad Luhn key
    assert sum(map(int, value)) % 5 == 0
    assert not luhn_valid(value)
    with pytest.raises(IdentifierError, match="bad check digit"):
        validate_siret(value)


# --- national prefixed ids --------------------------------------------------------


# covers: ANN-1
def test_person_national_ids():
    assert PERSON_ID_TYPES == ("RPPS", "ADELI")
    assert person_national_id("RPPS", " 01234567897 ") == "801234567897"
    assert person_national_id("ADELI", VALID["ADELI"]) == "0" + VALID["ADELI"]


# covers: ANN-1
def test_facility_national_ids():
    assert FACILITY_ID_TYPES == ("FINESS", "SIRET", "SIREN")
    assert facility_national_id("FINESS", "750712184") == "1750712184"
    assert facility_national_id("SIRET", VALID["SIRET"]) == "3" + VALID["SIRET"]
    assert facility_national_id("SIREN", VALID["SIREN"]) == "2" + VALID["SIREN"]


def test_national_id_of_the_wrong_family_is_refused():
    with pytest.raises(IdentifierError, match="FINESS is not a person identifier type"):
        person_national_id("FINESS", "750712184")  # type: ignore[arg-type]
    with pytest.raises(IdentifierError, match="RPPS is not a facility identifier type"):
        facility_national_id("RPPS", "01234567897")  # type: ignore[arg-type]


def test_national_id_validates_the_identifier():
    with pytest.raises(IdentifierError, match="RPPS 01234567890: bad check digit"):
        person_national_id("RPPS", "01234567890")


# covers: ANN-1
@pytest.mark.parametrize("kind", list(LENGTHS))
def test_parse_national_id_round_trips(kind):
    national = (
        person_national_id(kind, VALID[kind])
        if kind in PERSON_ID_TYPES
        else facility_national_id(kind, VALID[kind])
    )
    assert parse_national_id(national) == (kind, VALID[kind])
    assert parse_national_id(f" {national} ") == (kind, VALID[kind])


def test_parse_national_id_accepts_corsican_finess():
    assert parse_national_id("12A0000014") == ("FINESS", "2A0000014")


def test_parse_national_id_reports_the_real_non_digit_certificate_value():
    with pytest.raises(IdentifierError) as caught:
        parse_national_id("10B0078671")
    message = str(caught.value)
    assert message.startswith("national id '10B0078671': FINESS must contain only digits")


@pytest.mark.parametrize("value", ["9" + "0" * 11, "4123", "X1"])
def test_parse_national_id_refuses_unknown_prefixes(value):
    with pytest.raises(IdentifierError, match=rf"unknown type prefix '{value[0]}'.*8=RPPS"):
        parse_national_id(value)


def test_parse_national_id_refuses_empty_and_bad_keys():
    with pytest.raises(IdentifierError, match="national id is empty"):
        parse_national_id("  ")
    with pytest.raises(IdentifierError, match="national id '801234567890': RPPS 01234567890: bad"):
        parse_national_id("801234567890")


def test_split_national_id_never_raises():
    assert split_national_id("10B0078671") == ("1", "0B0078671")
    assert split_national_id(" 801234567897 ") == ("8", "01234567897")
    assert split_national_id("") == ("", "")
    assert split_national_id("Z") == ("Z", "")
