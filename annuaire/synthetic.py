"""Synthetic national extractions: realistic shape, entirely fake content.

Everything here is SYNTHETIC and describes no real person or structure:
names are drawn from small lists of common French names and combined at
random, identifiers are generated numbers that merely carry a valid Luhn
key. It exists so tests and benchmarks exercise the importer on data shaped
like the ANS file (mix of mailbox types, repeated names, accents, Corsican
and overseas postal codes, duplicated addresses, empty fields) without ever
touching real personal data.

Generation streams: memory depends on the list sizes and ``domains``, not on
the number of records, so a million-line benchmark file is cheap to write.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import io
import os
import random
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from annuaire.extraction import DEFAULT_HEADER, ExtractionRecord, format_extraction

__all__ = ["SyntheticFile", "synthetic_extraction", "write_synthetic_file"]

ORG_SHARE = 0.15
DUPLICATE_SHARE = 0.0005
"""A mailbox listed once per structure it is attached to, as in the real file."""
LIBERAL_SHARE = 0.55
_DOUBLED = str.maketrans("0123456789", "0246813579")  # Luhn: 2*d with its digits summed


def _luhn_key(body: str) -> str:
    """Check digit making ``body + key`` pass Luhn (RPPS, ADELI, FINESS, SIREN, SIRET)."""
    digits = body[::-1]  # from the right: 1st, 3rd... digits are doubled
    total = sum(map(int, digits[0::2].translate(_DOUBLED) + digits[1::2]))
    return str(-total % 10)


def _luhn_valid(number: str) -> bool:
    """True when ``number`` is all digits and its last digit is its Luhn key."""
    return number.isdigit() and len(number) > 1 and _luhn_key(number[:-1]) == number[-1]


@functools.cache  # names come from the fixed lists below: bounded
def _slug(text: str) -> str:
    """ASCII, lower-case local-part form of a name ("Hélène" -> "helene")."""
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in plain if not unicodedata.combining(c)).lower()
    plain = plain.replace("'", "").replace(" ", "-")
    return "".join(c for c in plain if c.isalnum() or c in "-.")


def _cumulative(count: int, exponent: float = 0.8) -> tuple[float, ...]:
    """Zipf-like weights: a few values very common, a long tail (as real names)."""
    total, out = 0.0, []
    for rank in range(count):
        total += 1.0 / (rank + 1) ** exponent
        out.append(total)
    return tuple(out)


_FIRST_MALE = (
    "Jean", "Pierre", "Michel", "Philippe", "Nicolas", "François", "Thomas", "Julien",
    "Laurent", "Olivier", "Christophe", "Stéphane", "Jérôme", "Sébastien", "Antoine",
    "Jean-Pierre", "Frédéric", "Mathieu", "Benoît", "Rémi", "Loïc", "Gaël", "Hugo",
    "Karim", "Yann", "Cédric", "Mehdi", "Jean-François", "Hervé", "Joël",
)  # fmt: skip
_FIRST_FEMALE = (
    "Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Sophie", "Valérie",
    "Sandrine", "Céline", "Julie", "Camille", "Émilie", "Aurélie", "Hélène", "Léa",
    "Chloé", "Anne-Sophie", "Agnès", "Élodie", "Zoé", "Inès", "Maëlle", "Noémie",
    "Laëtitia", "Françoise", "Fatima", "Marie-Claire", "Bérénice", "Solène", "Anaïs",
)  # fmt: skip
_LAST = (
    "MARTIN", "BERNARD", "THOMAS", "PETIT", "ROBERT", "RICHARD", "DURAND", "DUBOIS",
    "MOREAU", "LAURENT", "SIMON", "MICHEL", "LEFEBVRE", "LEROY", "ROUX", "DAVID",
    "BERTRAND", "MOREL", "FOURNIER", "GIRARD", "BONNET", "DUPONT", "LAMBERT", "FONTAINE",
    "ROUSSEAU", "VINCENT", "MULLER", "LEFÈVRE", "FAURE", "ANDRÉ", "MERCIER", "BLANC",
    "GUÉRIN", "BOYER", "GARNIER", "CHEVALIER", "LEGRAND", "GAUTHIER", "GARCIA", "PERRIN",
    "ROBIN", "CLÉMENT", "MORIN", "HENRY", "ROUSSEL", "MASSON", "LE GOFF", "LE ROUX",
    "DA SILVA", "N'DIAYE", "NGUYEN", "HÉBERT", "MÉNARD", "BÉNARD", "PAOLI", "SANTONI",
    "CASANOVA", "PAYET", "HOARAU", "GRONDIN", "JEAN-BAPTISTE", "SAINT-LOUIS", "TRAORÉ",
    "KOWALSKI", "FERREIRA", "BRUNEAU", "COLLET", "PRÉVOST", "DESCHAMPS", "ÉTIENNE",
)  # fmt: skip

# (city as on the La Poste line, postal code, department, region slug)
_CITIES = (
    ("PARIS", "75013", "75", "idf"), ("LYON", "69003", "69", "ara"),
    ("MARSEILLE", "13005", "13", "paca"), ("TOULOUSE", "31059", "31", "occitanie"),
    ("LILLE", "59000", "59", "hdf"), ("BORDEAUX", "33000", "33", "nouvelle-aquitaine"),
    ("NANTES", "44000", "44", "pdl"), ("STRASBOURG", "67000", "67", "grand-est"),
    ("PARIS", "75014", "75", "idf"), ("MONTPELLIER", "34000", "34", "occitanie"),
    ("RENNES", "35000", "35", "bretagne"), ("NICE", "06000", "06", "paca"),
    ("GRENOBLE", "38000", "38", "ara"), ("CRETEIL", "94000", "94", "idf"),
    ("ROUEN", "76000", "76", "normandie"), ("DIJON", "21000", "21", "bfc"),
    ("SAINT-DENIS", "97400", "974", "reunion"), ("ANGERS", "49000", "49", "pdl"),
    ("TOURS", "37000", "37", "cvl"), ("REIMS", "51100", "51", "grand-est"),
    ("CLERMONT-FERRAND", "63000", "63", "ara"), ("SAINT-ETIENNE", "42000", "42", "ara"),
    ("BREST", "29200", "29", "bretagne"), ("AMIENS", "80000", "80", "hdf"),
    ("LIMOGES", "87000", "87", "nouvelle-aquitaine"), ("METZ", "57000", "57", "grand-est"),
    ("BESANCON", "25000", "25", "bfc"), ("CAEN", "14000", "14", "normandie"),
    ("ORLEANS", "45000", "45", "cvl"), ("NIMES", "30900", "30", "occitanie"),
    ("AJACCIO", "20000", "2A", "corse"), ("BASTIA", "20200", "2B", "corse"),
    ("POINTE-A-PITRE", "97110", "971", "guadeloupe"),
    ("FORT-DE-FRANCE", "97200", "972", "martinique"), ("CAYENNE", "97300", "973", "guyane"),
    ("SAINT-PIERRE", "97410", "974", "reunion"), ("MAMOUDZOU", "97600", "976", "mayotte"),
    ("VALENCE", "26000", "26", "ara"), ("PAU", "64000", "64", "nouvelle-aquitaine"),
    ("PORTO-VECCHIO", "20137", "2A", "corse"), ("PERPIGNAN", "66000", "66", "occitanie"),
    ("LE MANS", "72000", "72", "pdl"), ("QUIMPER", "29000", "29", "bretagne"),
    ("AVIGNON", "84000", "84", "paca"), ("POITIERS", "86000", "86", "nouvelle-aquitaine"),
)  # fmt: skip
_STREET_TYPES = ("RUE", "AVENUE", "BOULEVARD", "PLACE", "CHEMIN", "ALLEE", "ROUTE", "IMPASSE")
_STREET_NAMES = (
    "DE LA REPUBLIQUE", "VICTOR HUGO", "JEAN JAURES", "DU GENERAL DE GAULLE", "PASTEUR",
    "DES LILAS", "DE LA GARE", "GAMBETTA", "DU MARECHAL FOCH", "DES ECOLES", "DU MOULIN",
    "CLAUDE BERNARD", "DE L'HOPITAL", "SAINT-MARTIN", "DES TILLEULS", "AMBROISE PARE",
)  # fmt: skip
_SPECIALTIES_MD = (
    ("SM54", "Médecine générale (SM)"),
    ("SM53", "Spécialiste en Médecine générale (SM)"),
    ("SM26", "Qualifié en Médecine générale (SM)"),
    ("SM04", "Cardiologie et Maladies vasculaires (SM)"),
    ("SM40", "Pédiatrie (SM)"),
    ("SM42", "Psychiatrie (SM)"),
    ("SM02", "Anesthésie-réanimation (SM)"),
    ("SM20", "Gynécologie-obstétrique (SM)"),
    ("SM38", "Ophtalmologie (SM)"),
    ("SM15", "Dermatologie et vénéréologie (SM)"),
    ("SM44", "Radio-diagnostic (SM)"),
    ("SM18", "Gériatrie (SM)"),
    ("SM59", "Médecine d'urgence (SM)"),
)
_SPECIALTIES_DENTIST = (
    ("SCD01", "Orthopédie dento-faciale (SCD)"),
    ("SCD02", "Chirurgie orale (SCD)"),
)
_SPECIALTIES_NURSE = (
    ("SI06", "Infirmier(ère) de bloc opératoire (SI)"),
    ("SI08", "Infirmier(ère) puériculteur(trice)"),
)


@dataclass(frozen=True, slots=True)
class _Profession:
    code: str
    label: str
    share: float
    domain: str | None  # national domain used by liberal practitioners
    adeli: bool  # may still be identified by ADELI rather than RPPS
    specialties: tuple[tuple[str, str], ...]
    specialty_share: float


_PROFESSIONS = (
    _Profession("10", "Médecin", 0.40, "medecin.mssante.fr", False, _SPECIALTIES_MD, 0.97),
    _Profession("60", "Infirmier", 0.22, "infirmier.mssante.fr", True, _SPECIALTIES_NURSE, 0.1),
    _Profession("21", "Pharmacien", 0.10, "pharmacien.mssante.fr", False, (), 0.0),
    _Profession("70", "Masseur-Kinésithérapeute", 0.10, "masseur-kinesitherapeute.mssante.fr",
                False, (), 0.0),
    _Profession("40", "Chirurgien-Dentiste", 0.08, "chirurgien-dentiste.mssante.fr", False,
                _SPECIALTIES_DENTIST, 0.15),
    _Profession("50", "Sage-Femme", 0.05, "sage-femme.mssante.fr", False, (), 0.0),
    _Profession("80", "Pédicure-Podologue", 0.03, None, True, (), 0.0),
    _Profession("91", "Orthophoniste", 0.02, None, True, (), 0.0),
)  # fmt: skip
_NATIONAL_DOMAINS = tuple(p.domain for p in _PROFESSIONS if p.domain)

# (domain prefix, name pattern, identified by FINESS rather than SIRET)
_STRUCTURE_KINDS = (
    ("ch", "CENTRE HOSPITALIER DE {city}", True),
    ("chu", "CHU DE {city}", True),
    ("clinique", "CLINIQUE SAINT-{saint} {city}", True),
    ("ehpad", "EHPAD LES {garden} {city}", True),
    ("cds", "CENTRE DE SANTE {city}", True),
    ("labo", "LABORATOIRE DE BIOLOGIE MEDICALE {city}", False),
    ("msp", "MAISON DE SANTE PLURIPROFESSIONNELLE {city}", False),
    ("imagerie", "CENTRE D'IMAGERIE MEDICALE {city}", False),
)
_SAINTS = ("JOSEPH", "MARTIN", "LOUIS", "VINCENT", "GEORGES", "JEAN", "ANNE", "ROCH")
_GARDENS = ("TILLEULS", "GLYCINES", "ROSES", "CHENES", "MIMOSAS", "OLIVIERS")
_SERVICES = (
    ("secretariat", "Secrétariat médical"), ("accueil", "Accueil"),
    ("urgences", "Service des urgences"), ("cardiologie", "Service de cardiologie"),
    ("pediatrie", "Service de pédiatrie"), ("radiologie", "Service d'imagerie"),
    ("laboratoire", "Laboratoire"), ("pui", "Pharmacie à usage intérieur"),
    ("bloc.operatoire", "Bloc opératoire"), ("dim", "Département d'information médicale"),
    ("maternite", "Maternité"), ("geriatrie", "Service de gériatrie"),
    ("psychiatrie", "Pôle psychiatrie"), ("oncologie", "Service d'oncologie"),
    ("consultations", "Consultations externes"), ("direction", "Direction"),
)  # fmt: skip

_FIRST_CUM = (_cumulative(len(_FIRST_MALE)), _cumulative(len(_FIRST_FEMALE)))
_LAST_CUM = _cumulative(len(_LAST), 0.7)
_CITY_CUM = _cumulative(len(_CITIES), 0.6)
_SERVICE_CUM = _cumulative(len(_SERVICES), 0.5)
_SPECIALTY_CUM = _cumulative(len(_SPECIALTIES_MD), 1.2)
_PROFESSION_CUM = tuple(
    sum(p.share for p in _PROFESSIONS[: i + 1]) for i in range(len(_PROFESSIONS))
)


def _pick(rng: random.Random, values: Sequence[str], cumulative: Sequence[float]) -> str:
    return values[bisect.bisect(cumulative, rng.random() * cumulative[-1])]


def _pick_index(rng: random.Random, cumulative: Sequence[float]) -> int:
    return min(bisect.bisect(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


class _Permutation:
    """i -> (a*i + b) mod 10**digits: distinct numbers for distinct i, no memory."""

    def __init__(self, rng: random.Random, digits: int) -> None:
        self.modulus = 10**digits
        factor = rng.randrange(self.modulus // 10, self.modulus) | 1
        while factor % 5 == 0:
            factor += 2
        self.factor = factor % self.modulus
        self.offset = rng.randrange(self.modulus)
        self.digits = digits

    def __call__(self, index: int) -> str:
        return f"{(self.factor * index + self.offset) % self.modulus:0{self.digits}d}"


@dataclass(frozen=True, slots=True)
class _Structure:
    domain: str
    facility_id_type: str
    facility_id: str
    name: str
    address_lines: tuple[str, ...]
    postal_code: str
    city: str
    department: str


def _street(rng: random.Random) -> str:
    repeat = rng.random()
    suffix = " B" if repeat < 0.05 else " T" if repeat < 0.06 else ""
    return f"{rng.randint(1, 180)}{suffix} {rng.choice(_STREET_TYPES)} {rng.choice(_STREET_NAMES)}"


def _siret(siren_body: str, rng: random.Random) -> str:
    """A SIRET whose SIREN and whole 14 digits both pass Luhn, like real ones."""
    siren = siren_body + _luhn_key(siren_body)
    nic_body = f"{siren}{rng.randint(1, 9999):04d}"
    return nic_body + _luhn_key(nic_body)


def _finess(department: str, body: str) -> str:
    prefix = "20" if department in ("2A", "2B") else department[:2]
    return prefix + body + _luhn_key(prefix + body)


def _structures(rng: random.Random, count: int) -> tuple[_Structure, ...]:
    permute = _Permutation(rng, 6)
    siren = _Permutation(rng, 8)
    out = []
    for index in range(count):
        prefix, pattern, finess = _STRUCTURE_KINDS[index % len(_STRUCTURE_KINDS)]
        city, postal, department, region = _CITIES[(index // len(_STRUCTURE_KINDS)) % len(_CITIES)]
        repeat = index // (len(_STRUCTURE_KINDS) * len(_CITIES))
        local = _slug(city) + (f"-{repeat + 1}" if repeat else "")
        if finess:
            kind, ident = "1", "1" + _finess(department, permute(index))
        else:
            kind, ident = "3", "3" + _siret(siren(index), rng)
        lines = [_street(rng)]
        if rng.random() < 0.3:
            lines.insert(0, f"BATIMENT {rng.choice('ABCDEF')}")
        if rng.random() < 0.2:
            lines.append(f"CS {rng.randint(10000, 99999)}")
        name = pattern.format(city=city, saint=rng.choice(_SAINTS), garden=rng.choice(_GARDENS))
        out.append(
            _Structure(
                domain=f"{prefix}-{local}.{region}.mssante.fr",
                facility_id_type=kind,
                facility_id=ident,
                name=name,
                address_lines=tuple(lines),
                postal_code=postal,
                city=city,
                department=department,
            )
        )
    return tuple(out)


def synthetic_extraction(
    n: int, *, seed: int = 0, domains: int = 500
) -> Iterator[ExtractionRecord]:
    """``n`` fake records, the same ones for the same ``seed``.

    About 85 % PER (RPPS ``10…`` of 11 digits, or ADELI of 9, Luhn-valid)
    and 15 % ORG (FINESS or SIRET, Luhn-valid). Addresses are unique except
    ~0.05 % deliberate duplicates: the same mailbox listed again for another
    structure, right after the first line, as in the real file. ``domains``
    counts the distinct mail domains (national professional domains
    included).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if domains <= len(_NATIONAL_DOMAINS):
        raise ValueError(
            f"domains must be over {len(_NATIONAL_DOMAINS)} (the national professional "
            f"domains) to leave room for structures, got {domains}"
        )
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not secrets
    structures = _structures(rng, domains - len(_NATIONAL_DOMAINS))
    structure_cum = _cumulative(len(structures), 0.9)
    person_ids = _Permutation(rng, 8)
    cabinet_sirens = _Permutation(rng, 8)
    used_locals: dict[tuple[str, str], int] = {}  # bounded by the name and domain lists
    persons = 0
    emitted = 0
    while emitted < n:
        where = _pick_index(rng, structure_cum)
        structure = structures[where]
        if rng.random() < ORG_SHARE:
            record = _org(rng, structure, used_locals)
        else:
            record = _per(rng, structure, persons, person_ids, cabinet_sirens, used_locals)
            persons += 1
        yield record
        emitted += 1
        if emitted < n and record.bal_type == "PER" and rng.random() < DUPLICATE_SHARE:
            other = structures[(where + 1) % len(structures)]
            yield dataclasses.replace(record, **_attachment(other, rng))
            emitted += 1


def _unique_local(base: str, key: tuple[str, str], used: dict[tuple[str, str], int]) -> str:
    count = used.get(key, 0) + 1
    used[key] = count
    return base if count == 1 else f"{base}{count}"


def _attachment(structure: _Structure, rng: random.Random) -> dict[str, Any]:
    """Fields a mailbox takes from the structure it is listed under."""
    return {
        "facility_id_type": structure.facility_id_type,
        "facility_id": structure.facility_id,
        "organisation_name": structure.name,
        "service": _SERVICES[_pick_index(rng, _SERVICE_CUM)][1],
        "address_lines": structure.address_lines,
        "postal_code": structure.postal_code,
        "city": structure.city,
        "department": structure.department,
    }


def _org(
    rng: random.Random, structure: _Structure, used: dict[tuple[str, str], int]
) -> ExtractionRecord:
    slug, label = _SERVICES[_pick_index(rng, _SERVICE_CUM)]
    local = _unique_local(slug, (slug, structure.domain), used)
    return ExtractionRecord(
        bal_type="ORG",
        address=f"{local}@{structure.domain}",
        facility_id_type=structure.facility_id_type,
        facility_id=structure.facility_id,
        service=label if rng.random() < 0.95 else None,
        organisation_name=structure.name,
        trade_name=structure.name.title() if rng.random() < 0.1 else None,
        dematerialisation="O" if rng.random() < 0.2 else "N",
        address_lines=structure.address_lines,
        postal_code=structure.postal_code,
        city=structure.city,
        department=structure.department,
        country="FRANCE" if rng.random() < 0.9 else None,
    )


def _per(
    rng: random.Random,
    structure: _Structure,
    person: int,
    person_ids: _Permutation,
    cabinet_sirens: _Permutation,
    used: dict[tuple[str, str], int],
) -> ExtractionRecord:
    profession = _PROFESSIONS[_pick_index(rng, _PROFESSION_CUM)]
    female = rng.random() < 0.55
    first_names = _FIRST_FEMALE if female else _FIRST_MALE
    first = _pick(rng, first_names, _FIRST_CUM[female])
    last = _pick(rng, _LAST, _LAST_CUM)
    key = (_slug(first), _slug(last))
    local = _unique_local(f"{key[0]}.{key[1]}", key, used)
    body = person_ids(person)
    if profession.adeli and rng.random() < 0.5:
        id_type, person_id = "0", body + _luhn_key(body)  # ADELI: 9 digits
    else:
        rpps = "10" + body
        id_type, person_id = "8", rpps + _luhn_key(rpps)  # RPPS: 11 digits
    specialty: tuple[str | None, str | None] = (None, None)
    if profession.specialties and rng.random() < profession.specialty_share:
        if profession.code == "10":
            specialty = _SPECIALTIES_MD[_pick_index(rng, _SPECIALTY_CUM)]
        else:
            specialty = rng.choice(profession.specialties)
    if profession.code in ("10", "40"):
        civility: str | None = "PR" if rng.random() < 0.04 else "DR"
    else:
        civility = "MME" if female else "M"
    if rng.random() < 0.03:
        civility = None
    category = rng.random()
    fields: dict[str, Any]
    if profession.domain is not None and rng.random() < LIBERAL_SHARE:
        domain = profession.domain
        city, postal, department, _ = _CITIES[_pick_index(rng, _CITY_CUM)]
        fields = {
            "address_lines": (_street(rng),),
            "postal_code": postal,
            "city": city,
            "department": department,
        }
        if rng.random() < 0.6:
            fields["facility_id_type"] = "3"
            fields["facility_id"] = "3" + _siret(cabinet_sirens(person), rng)
            if rng.random() < 0.5:
                fields["organisation_name"] = f"CABINET {last}"
    else:
        domain = structure.domain
        fields = _attachment(structure, rng)
        if rng.random() < 0.2:
            fields["service"] = None
    return ExtractionRecord(
        bal_type="PER",
        address=f"{local}@{domain}",
        person_id_type=id_type,
        person_id=person_id,
        person_national_id=id_type + person_id,
        civility=civility,
        last_name=last,
        first_name=first if rng.random() < 0.995 else None,
        profession_category_code="C" if category < 0.97 else "E" if category < 0.99 else "M",
        profession_category_label=(
            "Civil" if category < 0.97 else "Etudiant" if category < 0.99 else "Militaire"
        ),
        profession_code=profession.code,
        profession_label=profession.label,
        specialty_code=specialty[0],
        specialty_label=specialty[1],
        dematerialisation="O" if rng.random() < 0.3 else "N",
        country="FRANCE" if rng.random() < 0.9 else None,
        **fields,
    )


@contextlib.contextmanager
def _text_writer(target: Path, zipped: bool) -> Iterator[IO[str]]:
    """A UTF-8 text sink: the file itself, or the single member of a new ZIP."""
    if not zipped:
        with target.open("w", encoding="utf-8", newline="") as handle:
            yield handle
        return
    member = target.with_suffix(".txt").name
    with (
        zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open(member, "w", force_zip64=True) as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as handle,
    ):
        yield handle


@dataclass(frozen=True, slots=True)
class SyntheticFile:
    """What :func:`write_synthetic_file` wrote, so tests know what to expect."""

    path: Path
    records: int
    malformed: int
    multi_line: int
    physical_lines: int


_MALFORMED_KINDS = ("too_many_fields", "unknown_type", "no_at", "long_field")


def _malformed_line(line: str, kind: str) -> str:
    """A broken copy of a good line; always has at least the header's separators
    so it can never be glued to a neighbour by the multi-line repair."""
    fields = line.rstrip("\n").split("|")
    if kind == "too_many_fields":
        fields.append("surplus")
    elif kind == "unknown_type":
        fields[0] = "XYZ"
    elif kind == "no_at":
        fields[1] = fields[1].replace("@", ".at.")
    else:
        fields[7] = "X" * 1100  # Service de rattachement
    return "|".join(fields) + "\n"


def write_synthetic_file(
    path: str | os.PathLike[str],
    n: int,
    *,
    seed: int = 0,
    zipped: bool = False,
    malformed_every: int | None = None,
    multiline_every: int | None = None,
) -> SyntheticFile:
    """Write ``n`` synthetic records in the real format (or a ZIP of it).

    ``malformed_every=k`` adds one bad line after every k-th record (extra
    lines: the good records are all still there); ``multiline_every=k``
    breaks every k-th record over two physical lines at a space, so the
    reader's repair gives back the very same record.
    """
    target = Path(path)
    malformed = multi = lines = 0
    with _text_writer(target, zipped) as out:
        produced = format_extraction(synthetic_extraction(n, seed=seed), DEFAULT_HEADER)
        out.write(next(produced))
        lines += 1
        for index, full in enumerate(produced, start=1):
            line = full
            if multiline_every and index % multiline_every == 0:
                cut = line.find(" ", line.find("|") + 1)
                if cut > 0:
                    out.write(line[:cut] + "\n")
                    line = line[cut + 1 :]
                    multi += 1
                    lines += 1
            out.write(line)
            lines += 1
            if malformed_every and index % malformed_every == 0:
                kind = _MALFORMED_KINDS[malformed % len(_MALFORMED_KINDS)]
                out.write(_malformed_line(full, kind))
                malformed += 1
                lines += 1
    return SyntheticFile(target, n, malformed, multi, lines)
