"""PS3.15 Annex E: the Basic Application Level Confidentiality Profile and its options.

The attributes and their actions come from ``bids_deface/data/annex_e.tsv`` (Table
E.1-1, built by :mod:`tools.annex_e_build`). This module turns one row
and the options a user chose into a single action:

``D`` replace with a dummy value · ``Z`` replace with an empty value · ``X`` remove ·
``K`` keep · ``C`` clean (dates shifted, text scrubbed) · ``U`` replace UIDs
(deterministically, see :mod:`bids_deface.dicom.uids`) · ``U*`` keep a sequence and
replace the UIDs inside it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, fields
from functools import lru_cache
from importlib import resources

from pydicom.sr.codedict import codes

# Composite actions choose the weakest action that keeps the IOD conformant. We do
# not carry the IOD module tables, so D (a dummy) is used only for attributes that
# are Type 1 in the image IODs we write (Enhanced General Equipment, Enhanced MR/CT
# Image, Multi-frame Functional Groups); elsewhere Z (empty) or X (removed).
TYPE1_IN_IMAGE_IODS = frozenset({
    "DeviceSerialNumber", "ContentDate", "ContentTime", "AcquisitionDateTime",
})


@dataclass(frozen=True)
class ProfileOptions:
    """The PS3.15 Annex E options a user may turn on (all off = Basic Profile)."""

    retain_long_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    clean_descriptors: bool = False
    retain_safe_private: bool = False

    def enabled(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name)]


# option -> (column of Table E.1-1, DCM code for De-identification Method Code Sequence)
OPTION_COLUMNS = {
    "retain_long_modified_dates": "retain_long_modified_dates",
    "retain_patient_characteristics": "retain_patient_characteristics",
    "retain_device_identity": "retain_device_identity",
    "retain_institution_identity": "retain_institution_identity",
    "clean_descriptors": "clean_descriptors",
    "retain_safe_private": "retain_safe_private",
}
OPTION_CODES = {
    "retain_long_modified_dates": codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
    "retain_patient_characteristics": codes.DCM.RetainPatientCharacteristicsOption,
    "retain_device_identity": codes.DCM.RetainDeviceIdentityOption,
    "retain_institution_identity": codes.DCM.RetainInstitutionIdentityOption,
    "clean_descriptors": codes.DCM.CleanDescriptorsOption,
    "retain_safe_private": codes.DCM.RetainSafePrivateOption,
}
BASIC_PROFILE_CODE = codes.DCM.BasicApplicationConfidentialityProfile
# Defacing the pixels removes recognisable visual features (the face).
CLEAN_VISUAL_FEATURES_CODE = codes.DCM.CleanRecognizableVisualFeaturesOption


@dataclass(frozen=True)
class Rule:
    """One row of Table E.1-1."""

    tag: str  # GGGGEEEE, 'x' for repeating-group digits, or 'private'
    keyword: str
    name: str
    vr: str
    basic: str  # D Z X U Z/D X/Z X/D X/Z/D X/Z/U*
    options: tuple[tuple[str, str], ...]  # ((column, action), ...) non-empty cells only

    def option(self, column: str) -> str:
        return dict(self.options).get(column, "")


@lru_cache(maxsize=1)
def load_table() -> dict[str, Rule]:
    """Table E.1-1 as ``{tag: Rule}`` (tags as in the TSV)."""
    text = resources.files("bids_deface").joinpath("data/annex_e.tsv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    table: dict[str, Rule] = {}
    for row in rows:
        opts = tuple((c, row[c]) for c in OPTION_COLUMNS.values() if row.get(c))
        table[row["tag"]] = Rule(row["tag"], row["keyword"], row["name"], row["vr"], row["basic"], opts)
    return table


@lru_cache(maxsize=1)
def tag_rules() -> dict[int, Rule]:
    """Rules keyed by integer tag, for the exact (non-repeating) tags."""
    return {int(t, 16): r for t, r in load_table().items() if len(t) == 8 and "x" not in t}


def repeating_rule(tag: int) -> Rule | None:
    """Rule for curve (50xx,xxxx) and overlay (60xx,3000 / 60xx,4000) attributes."""
    group, element = tag >> 16, tag & 0xFFFF
    table = load_table()
    if group & 0xFF00 == 0x5000 and group < 0x5100:
        return table.get("50xxxxxx")
    if group & 0xFF00 == 0x6000 and group < 0x6100:
        return table.get(f"60xx{element:04X}")
    return None


@lru_cache(maxsize=4096)  # called for every attribute of every file: rules and options are frozen
def resolve(rule: Rule, options: ProfileOptions, keyword: str = "") -> str:
    """The single action for ``rule`` under ``options``.

    An option's ``K`` wins over another option's ``C``, which wins over the Basic
    Profile, as Annex E orders them (retaining is the purpose of the option).
    """
    chosen = {rule.option(OPTION_COLUMNS[o]) for o in options.enabled()} - {""}
    if "K" in chosen:
        return "K"
    if "C" in chosen:
        return "C"
    if "X" in chosen:  # e.g. Referenced Patient Sequence under Retain UIDs
        return "X"
    return resolve_composite(rule.basic, keyword or rule.keyword)


def resolve_composite(basic: str, keyword: str) -> str:
    if "/" not in basic:
        return basic
    parts = basic.split("/")
    if "U*" in parts:
        return "U*"  # keep the reference sequence, replace the UIDs in it
    if "D" in parts and keyword in TYPE1_IN_IMAGE_IODS:
        return "D"
    if "Z" in parts:
        return "Z"
    return parts[0]
