"""De-identify one DICOM data set in place, to PS3.15 Annex E.

:func:`deidentify` walks the data set (and every sequence item in it) and applies,
to each attribute, the action Table E.1-1 gives under the chosen options
(:mod:`bids_deface.dicom.profile`). Beyond the table, for safety:

* every private attribute is removed, unless Retain Safe Private is on and it is
  listed in ``data/safe_private.tsv`` (a subset of Table E.3.10-1);
* an attribute the table does not list is still treated when its value type
  carries identity: dates, times and datetimes are emptied (or shifted under
  Retain Longitudinal Temporal Information with Modified Dates), person names
  emptied, and UIDs not defined by the standard replaced (instance UIDs often
  embed a device serial number and the acquisition time);
* group lengths and all File Meta Information that names a sender are dropped.

It returns how many attributes got each action; never a value.
"""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from pydicom.dataelem import DataElement
from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from bids_deface.dicom.profile import (
    BASIC_PROFILE_CODE,
    CLEAN_VISUAL_FEATURES_CODE,
    OPTION_CODES,
    ProfileOptions,
    repeating_rule,
    resolve,
    tag_rules,
)
from bids_deface.dicom.freetext import FREE_TEXT, Descriptors
from bids_deface.dicom.uids import Keyed, is_registered

TEMPORAL = frozenset({"DA", "DT", "TM"})
TEXT = frozenset({"LO", "SH", "ST", "LT", "UT", "UC", "PN", "AE", "CS"})
DUMMY = {
    "AE": "ANONYMIZED", "AS": "000Y", "CS": "ANONYMIZED", "DA": "19000101", "DS": "0",
    "DT": "19000101000000", "IS": "0", "LO": "ANONYMIZED", "LT": "ANONYMIZED",
    "PN": "ANONYMIZED", "SH": "ANONYMIZED", "ST": "ANONYMIZED", "TM": "000000",
    "UC": "ANONYMIZED", "UT": "ANONYMIZED", "UR": "", "FL": 0.0, "FD": 0.0,
    "SL": 0, "SS": 0, "UL": 0, "US": 0, "SV": 0, "UV": 0,
}
# File Meta Information attributes kept; the rest (sender's AE titles, source
# address, private information) can name the site.
META_KEEP = frozenset({0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013})
_TS = {(True, True): ImplicitVRLittleEndian, (False, True): ExplicitVRLittleEndian,
       (False, False): ExplicitVRBigEndian, (True, False): ImplicitVRLittleEndian}
METHOD = "bids-deface: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"


@lru_cache(maxsize=1)
def safe_private() -> frozenset[tuple[str, int, int]]:
    """``{(private creator, group, element byte)}`` retained under Retain Safe Private."""
    text = resources.files("bids_deface").joinpath("data/safe_private.tsv").read_text("utf-8")
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return frozenset((r["creator"].strip(), int(r["group"], 16), int(r["element"], 16)) for r in rows)


@dataclass
class _Context:
    keyed: Keyed
    options: ProfileOptions
    shift: dt.timedelta
    descriptors: Descriptors | None  # free-text cleaning (Clean Descriptors and the C actions)
    counts: Counter = field(default_factory=Counter)


def deidentify(ds: Dataset, keyed: Keyed, options: ProfileOptions = ProfileOptions(),
               *, pixels_defaced: bool = False) -> Counter:
    """De-identify ``ds`` in place; return ``Counter({action: attributes})``.

    Patient name and ID become the pseudonym (mapping file or keyed hash), UIDs are
    replaced under the key, and the de-identification is recorded in the data set
    (Patient Identity Removed, De-identification Method and its Code Sequence,
    Longitudinal Temporal Information Modified).
    """
    patient_id = str(ds.get("PatientID", "") or "")
    pseudonym = keyed.pseudonym(patient_id)
    descriptors = None
    if options.clean_descriptors or options.retain_patient_characteristics:
        descriptors = Descriptors(ds, options)
    ctx = _Context(keyed, options, keyed.date_shift(patient_id), descriptors)
    _walk(ds, ctx)

    ds.PatientName = pseudonym
    ds.PatientID = pseudonym
    ds.PatientIdentityRemoved = "YES"
    used = options.enabled()
    method = METHOD + "".join(f"; {o.replace('_', ' ')}" for o in used)
    if pixels_defaced:
        method += "; face defaced (eyes, nose, ears)"
    ds.DeidentificationMethod = method if len(method) <= 64 else _long_method(method)
    items = []
    for code in [BASIC_PROFILE_CODE] + [OPTION_CODES[o] for o in used] + (
            [CLEAN_VISUAL_FEATURES_CODE] if pixels_defaced else []):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = (
            code.value, code.scheme_designator, code.meaning)
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    ds.LongitudinalTemporalInformationModified = (
        "MODIFIED" if options.retain_long_modified_dates else "REMOVED")
    _clean_file_meta(ds)
    ds.preamble = b"\0" * 128  # a preamble may carry another format's header
    return ctx.counts


def _long_method(method: str) -> list[str]:
    # De-identification Method is LO (64 chars) with VM 1-n: split on '; '.
    return [part[:64] for part in method.split("; ")]


def _clean_file_meta(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    for tag in list(meta.keys()):
        if int(tag) not in META_KEEP:
            del meta[tag]
    if "SOPClassUID" in ds:
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
    if "SOPInstanceUID" in ds:
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    implicit, little = getattr(ds, "original_encoding", (None, None))
    if "TransferSyntaxUID" not in meta and implicit is not None:  # a data set without meta
        meta.TransferSyntaxUID = _TS[(bool(implicit), bool(little))]
    ts = meta.get("TransferSyntaxUID")
    mismatch = ts is not None and implicit is not None and (implicit, little) != (
        ts.is_implicit_VR, ts.is_little_endian)
    unknown_vr = ts is not None and not ts.is_implicit_VR and any(e.VR is None for e in ds._dict.values())
    if mismatch or unknown_vr:
        # Encoded unlike its transfer syntax says: decode every element so each has
        # its VR and is written in the declared encoding (implicit VR written as read).
        for _ in ds.iterall():
            pass
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "BIDS_DEFACE"
    ds.file_meta = meta


def _walk(ds: Dataset, ctx: _Context) -> None:
    rules = tag_rules()
    options = ctx.options
    for tag in list(ds.keys()):
        t = int(tag)
        group = t >> 16
        if group & 1:
            _private(ds, t, ctx)
            continue
        if t & 0xFFFF == 0:  # group length: recomputed on write if ever needed
            del ds[tag]
            continue
        rule = rules.get(t)
        if rule is None and 0x5000 <= group < 0x6100:
            rule = repeating_rule(t)
        if rule is not None:
            _apply(ds, t, resolve(rule, options), ctx)
            continue
        entry = DicomDictionary.get(t)
        vr = entry[0] if entry else (ds.get_item(tag).VR or "UN")
        if vr == "SQ":
            for item in ds[tag].value:
                _walk(item, ctx)
        elif vr in TEMPORAL:
            _apply(ds, t, "C" if options.retain_long_modified_dates else "Z", ctx, unlisted=True)
        elif vr == "PN":
            _apply(ds, t, "Z", ctx, unlisted=True)
        elif vr in FREE_TEXT and options.clean_descriptors:  # Sequence Name, coil names ...
            _apply(ds, t, "C", ctx, unlisted=True)
        elif vr == "UI":
            value = ds[tag].value
            values = value if isinstance(value, (list, tuple)) else [value]
            if any(v and not is_registered(str(v)) for v in values):
                _apply(ds, t, "U", ctx, unlisted=True)


def _private(ds: Dataset, t: int, ctx: _Context) -> None:
    if ctx.options.retain_safe_private:
        group, element = t >> 16, t & 0xFFFF
        block = element >> 8
        if element <= 0xFF and 0x10 <= element:  # private creator: kept if its block keeps anything
            creator = str(ds[t].value).strip()
            if any(c == creator and g == group for c, g, _ in safe_private()):
                return
        elif block >= 0x10:
            creator_tag = (group << 16) | block
            if creator_tag in ds:
                creator = str(ds[creator_tag].value).strip()
                if (creator, group, element & 0xFF) in safe_private():
                    ctx.counts["K"] += 1
                    return
    del ds[t]
    ctx.counts["X private"] += 1


def _apply(ds: Dataset, t: int, action: str, ctx: _Context, unlisted: bool = False) -> None:
    ctx.counts[action + (" unlisted" if unlisted else "")] += 1
    if action == "X":
        del ds[t]
        return
    raw_vr = _vr(ds, t)
    if raw_vr != "SQ" and _replace_undecoded(ds, t, action, raw_vr):
        return
    elem = ds[t]
    vr = elem.VR
    if vr == "SQ":
        if action == "Z":
            elem.value = Sequence()
        else:  # D, K, C, U, U*: keep the items, each de-identified in turn
            for item in elem.value:
                _walk(item, ctx)
        return
    if action == "K":
        return
    if action == "Z" or (action == "U*" and vr != "UI"):
        elem.value = None
    elif action == "D":
        if vr == "UI":
            elem.value = _map_uids(elem.value, ctx.keyed)
        elif vr in DUMMY:
            elem.value = DUMMY[vr]
        else:  # binary and unknown VRs: an empty value carries nothing
            elem.value = None
    elif action in ("U", "U*"):
        elem.value = _map_uids(elem.value, ctx.keyed)
    elif action == "C":
        if vr in ("DA", "DT"):
            elem.value = _shift(elem.value, ctx.shift, vr)
        elif vr in TEXT and ctx.descriptors is not None:
            elem.value = ctx.descriptors.clean(elem.value)
        elif vr in TEXT:
            elem.value = None
        # TM under modified dates: times of day are kept, only the day moves


def _replace_undecoded(ds: Dataset, t: int, action: str, vr: str) -> bool:
    """Apply K, Z and D (a non-UID) without decoding the old value; False when it is needed."""
    if action == "K":
        return True
    if " or " in vr or vr == "UI" or action not in ("Z", "D", "U*"):
        return False
    value = DUMMY.get(vr) if action == "D" else None
    ds[t] = DataElement(t, vr, value)
    return True


def _vr(ds: Dataset, t: int) -> str:
    raw = ds.get_item(t)
    if raw is not None and raw.VR:
        return raw.VR
    entry = DicomDictionary.get(t)
    return entry[0] if entry else "UN"


def _map_uids(value, keyed: Keyed):
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple)):
        return [keyed.uid(str(v)) if v else v for v in value]
    return keyed.uid(str(value))


def _shift(value, shift: dt.timedelta, vr: str):
    def one(v: str) -> str:
        v = str(v).strip()
        m = re.fullmatch(r"(\d{8})(.*)", v)
        if not m:
            return ""
        try:
            day = dt.datetime.strptime(m.group(1), "%Y%m%d").date() + shift
        except ValueError:
            return ""
        rest = m.group(2) if vr == "DT" else ""
        return day.strftime("%Y%m%d") + rest

    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple)):
        return [one(v) for v in value]
    return one(value)
