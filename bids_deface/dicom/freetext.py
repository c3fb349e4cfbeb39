"""Free text in DICOM headers, cleaned by the BIDS side's PHI detection.

Under Clean Descriptors (and the clean actions of Retain Patient Characteristics) a
description is kept with its identifying spans cut out, not kept or dropped whole. The
spans are found by :func:`bids_deface.metadata.phi.clean_text`, the detector the BIDS
sidecars use (names, dates, phone numbers, e-mail, identifiers, addresses), fed with
the identifying values of the same data set (patient, physicians, institution, dates,
identifiers: everything the profile removes), so "Doe follow-up" loses "Doe" whether or
not "Doe" looks like a name. Scanner-generated text the table keeps (Sequence Name,
coil and protocol strings, any unlisted text attribute) is checked the same way.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from bids_deface.dicom.profile import ProfileOptions, resolve, tag_rules
from bids_deface.metadata.phi import clean_text, known_patterns

# Value representations of free text a person may have typed (CS is a code string).
FREE_TEXT = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
SOURCE_VRS = FREE_TEXT | {"PN", "DA", "DT", "AE"}


def known_values(ds: Dataset, options: ProfileOptions) -> dict[str, list[str]]:
    """``{keyword: values}`` the profile removes from ``ds``: what free text must not repeat."""
    rules = tag_rules()
    found: dict[str, list[str]] = {}
    for elem in ds.iterall():
        if elem.VR not in SOURCE_VRS or elem.tag.is_private:
            continue
        rule = rules.get(int(elem.tag))
        if rule is None:
            if elem.VR != "PN":  # unlisted names are emptied; other unlisted values kept
                continue
        elif resolve(rule, options) in ("K", "C"):  # kept, or a descriptor itself
            continue
        values = elem.value if isinstance(elem.value, (list, tuple)) else [elem.value]
        words = [str(v) for v in values if v not in (None, "")]
        if words:
            found.setdefault(elem.keyword or str(elem.tag), []).extend(words)
    return found


class Descriptors:
    """Cleans free text of one data set; the known values are compiled on first use."""

    def __init__(self, ds: Dataset, options: ProfileOptions):
        self._values = known_values(ds, options)
        self._patterns = None

    def clean(self, value):
        """``value`` (a string or several) with every identifying span removed."""
        if value is None or value == "":
            return value
        if self._patterns is None:
            self._patterns = known_patterns(self._values)
        if isinstance(value, (list, tuple)):
            return [self._one(v) for v in value]
        return self._one(value)

    def _one(self, text) -> str:
        cleaned, _ = clean_text(str(text), patterns=self._patterns, method="redact")
        return cleaned.strip()
