"""Codes and OIDs the bridge checks CDA headers and XDM metadata against.

One place for them so the parser, the builder and the tests agree, each with
the source it comes from (see ``shared/reference/cda-xdm.md`` §4-5 for the
sources' details). Only the values the bridge acts on are here, not whole
value sets.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CDA_TYPE_ID_EXTENSION",
    "CDA_TYPE_ID_ROOT",
    "CONFIDENTIALITY_OID",
    "HL7_NS",
    "IDNAT_PS_OID",
    "IDNAT_STRUCT_OID",
    "INS_C_LEGACY",
    "INS_NIA",
    "INS_NIR",
    "INS_NIR_DEMO",
    "INS_NIR_TEST",
    "INS_OIDS",
    "INS_OID_ARC",
    "LOINC_OID",
    "PRODUCTION_INS_OIDS",
    "TEMPLATE_CISIS_HEADER",
    "TEMPLATE_HL7_FRANCE",
    "TEMPLATE_XDS_SD",
    "TEST_INS_OIDS",
    "TRE_A05_OID",
    "TYPE_CODES",
    "VISIBILITY_OID",
    "Code",
    "Confidentiality",
    "Visibility",
    "accepted_ins_oids",
    "parse_visibility",
]


@dataclass(frozen=True)
class Code:
    """A coded value: the code, its code system (OID or scheme name), a display name.

    The same shape in a CDA header (``code``/``codeSystem``/``displayName``) and
    in XDS metadata (``nodeRepresentation``/``codingScheme``/``Name``).
    """

    code: str
    system: str
    display: str = ""


# --- namespaces and fixed header identifiers --------------------------------

#: HL7 v3 namespace of every CDA R2 element (HL7 CDA R2 normative edition).
HL7_NS: Final = "urn:hl7-org:v3"

#: CDA R2 ``typeId`` (HL7 CDA R2: root + extension POCD_HD000040).
CDA_TYPE_ID_ROOT: Final = "2.16.840.1.113883.1.3"
CDA_TYPE_ID_EXTENSION: Final = "POCD_HD000040"

#: Header templateIds required on every French CDA (ANS CI-SIS "Structuration
#: minimale" schematron, template 1.2.250.1.213.1.1.1.1; HL7 France realm template).
TEMPLATE_HL7_FRANCE: Final = "2.16.840.1.113883.2.8.2.1"
TEMPLATE_CISIS_HEADER: Final = "1.2.250.1.213.1.1.1.1"
#: Level-1 (non-structured) document: IHE XDS-SD template (IHE ITI XDS-SD, ANS CI-SIS).
TEMPLATE_XDS_SD: Final = "1.3.6.1.4.1.19376.1.2.20"

# --- INS (identifiant national de santé) --------------------------------------
# OIDs verified in the Interop'Santé FR Core patient profile and the ANS CI-SIS
# examples (ANS TestContenuCDA-3-0); spec MSSANTE.md Y-INS-1.

#: Every INS assigning-authority OID lives under this arc (ANS); an id whose
#: root starts with it is an INS candidate, known or not.
INS_OID_ARC: Final = "1.2.250.1.213.1.4."
INS_NIR: Final = "1.2.250.1.213.1.4.8"
INS_NIA: Final = "1.2.250.1.213.1.4.9"
INS_NIR_TEST: Final = "1.2.250.1.213.1.4.10"  # "NIR de test" (all ANS examples)
INS_NIR_DEMO: Final = "1.2.250.1.213.1.4.11"  # "NIR de démonstration" (not a test NIA)
INS_C_LEGACY: Final = "1.2.250.1.213.1.4.2"  # obsolete INS-C (calculated), always refused

PRODUCTION_INS_OIDS: Final = frozenset({INS_NIR, INS_NIA})
TEST_INS_OIDS: Final = frozenset({INS_NIR_TEST, INS_NIR_DEMO})
INS_OIDS: Final = PRODUCTION_INS_OIDS | TEST_INS_OIDS | {INS_C_LEGACY}


def accepted_ins_oids(*, test_mode: bool) -> frozenset[str]:
    """The INS OIDs a patient id may carry: test and demo NIR only in test mode.

    INS-C is never accepted: it is not a qualified identity (Y-INS-1).
    """
    return PRODUCTION_INS_OIDS | TEST_INS_OIDS if test_mode else PRODUCTION_INS_OIDS


# --- health professionals and organisations ----------------------------------

#: idNatPS ("8" + RPPS, or "0" + ADELI) assigning authority (ANS, as used in the
#: XDS authorPerson XCN by the ANS HL7v2 transmission volet mapping).
IDNAT_PS_OID: Final = "1.2.250.1.71.4.2.1"
#: idNatStruct ("1" + FINESS, "3" + SIRET, ...) assigning authority (same source).
IDNAT_STRUCT_OID: Final = "1.2.250.1.71.4.2.2"

# --- document type codes -------------------------------------------------------

#: LOINC code system (HL7 OID registry).
LOINC_OID: Final = "2.16.840.1.113883.6.1"
#: TRE_A05 TypeDocComplementaire: ANS type codes outside LOINC such as SYNTH,
#: REMB (ANS terminologies; JDV_J07 XdsTypeCode CI-SIS mixes both systems).
TRE_A05_OID: Final = "1.2.250.1.213.1.1.4.12"

#: LOINC type codes of JDV_J07 XdsTypeCode CI-SIS met by the bridge (ANS
#: TestContenuCDA-3-0 ``jeuxDeValeurs/JDV_J07_XdsTypeCode_CISIS.xml``), with a
#: short French label; the full value set has 114 codes and is not copied.
TYPE_CODES: Final[dict[str, str]] = {
    "11490-0": "Lettre de liaison de sortie",
    "18761-7": "Lettre de liaison d'entrée",
    "11502-2": "CR d'examens biologiques",
    "18748-4": "CR d'imagerie médicale",
    "11488-4": "CR de consultation",
    "57833-6": "Prescription de produits de santé",
    "57828-6": "Prescription",
    "34112-3": "CR hospitalier (séjour)",
    "34133-9": "Synthèse d'épisode de soins",
    "60591-5": "Synthèse médicale",
    "15507-7": "CR de passage aux urgences",
    "34874-8": "CR opératoire",
    "34794-8": "CR de réunion de concertation pluridisciplinaire",
    "77436-4": "CR d'anesthésie",
    "85208-7": "CR de télémédecine",
    "86531-1": "Attestation de sortie",
}

# --- confidentiality and visibility ------------------------------------------------

#: HL7 v3 Confidentiality code system (HL7 v3 vocabulary; ANS JDV_J58 / J08).
CONFIDENTIALITY_OID: Final = "2.16.840.1.113883.5.25"


class Confidentiality(enum.StrEnum):
    """The CDA header's confidentialityCode (HL7 v3 Confidentiality)."""

    NORMAL = "N"
    RESTRICTED = "R"
    VERY_RESTRICTED = "V"


#: TRE_A07 StatutVisibiliteDocument (ANS terminologies, IG terminologie de santé).
VISIBILITY_OID: Final = "1.2.250.1.213.1.1.4.13"


class Visibility(enum.StrEnum):
    """DMP visibility flags (TRE_A07), carried as extra XDS confidentialityCodes.

    TRE_A07 also has MASQUE_PSOCIAL and MASQUE_PT, which the DMP does not use
    (JDV_J58 lists only these three), so they are not accepted.
    """

    INVISIBLE_PATIENT = "INVISIBLE_PATIENT"
    INVISIBLE_REPRESENTANTS_LEGAUX = "INVISIBLE_REPRESENTANTS_LEGAUX"
    MASQUE_PS = "MASQUE_PS"


#: Input spellings that differ from TRE_A07: the HL7v2 volets' local table
#: MetaDMPMSS writes INVISIBLE_REP_LEGAUX (ANS HL7v2 transmission volet, meta-dmp-mss).
_VISIBILITY_ALIASES: Final = {"INVISIBLE_REP_LEGAUX": Visibility.INVISIBLE_REPRESENTANTS_LEGAUX}


def parse_visibility(code: str) -> Visibility:
    """The TRE_A07 flag for ``code``, accepting the HL7v2 alias (Y-VIS-1).

    Raises ValueError for anything else; the value is what callers emit.
    """
    value = code.strip()
    alias = _VISIBILITY_ALIASES.get(value)
    if alias is not None:
        return alias
    try:
        return Visibility(value)
    except ValueError:
        raise ValueError(f"not a DMP visibility code (TRE_A07): {code!r}") from None
