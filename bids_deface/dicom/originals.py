"""The original values of what de-identification changed, for the Encrypted Attributes Sequence.

:class:`EncryptedAttributes` reads a file's original attributes again (pixels left unread) and lets
:func:`bids_deface.vault.encrypted_attributes.build_encrypted_attributes` find what changed. Most
attributes of a de-identified data set are still the undecoded bytes read from the same file, so
those whose bytes are the same are left out before it looks, and the others are decoded once per
distinct stored value (the slices of a series share most of theirs): decoding and comparing every
attribute of every file cost more than de-identifying it.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from bids_deface.vault.encrypted_attributes import build_encrypted_attributes

CHARSET = 0x00080005
MAX_CACHED = 20_000  # decoded attributes kept (a few MB)
DEFER_BYTES = 4096  # larger values are read from the file only when compared
PIXEL_GROUP = 0x7FE0


def _same_bytes(original: Dataset, deidentified: Dataset, tag) -> bool:
    """Whether the attribute is provably unchanged: both undecoded, the same VR and bytes."""
    if tag not in deidentified:
        return False
    was, now = original.get_item(tag), deidentified.get_item(tag)
    return bool(getattr(was, "is_raw", False) and getattr(now, "is_raw", False)
                and was.VR == now.VR and was.value == now.value)


def changed_original(original: Dataset, deidentified: Dataset, decoded: dict | None = None) -> Dataset:
    """The attributes of ``original`` that may differ in ``deidentified`` (decoded), with the
    original Specific Character Set, which their text decodes with. ``decoded``: a cache of
    decoded attributes by stored bytes, shared by the files of a run (never modified)."""
    decoded = {} if decoded is None else decoded
    charset = original.get_item(CHARSET) if CHARSET in original else None
    context = (original.original_encoding, str(getattr(charset, "value", "")))
    subset = Dataset()
    for tag in original.keys():
        if tag.group == PIXEL_GROUP or (tag != CHARSET and _same_bytes(original, deidentified, tag)):
            continue
        stored = original.get_item(tag)
        if not getattr(stored, "is_raw", False) or tag.is_private:  # a private VR depends on its creator
            subset[tag] = original[tag]
            continue
        key = (tag, stored.VR, stored.value, context)
        if key not in decoded:
            decoded[key] = original[tag]
        subset[tag] = decoded[key]
    return subset


class EncryptedAttributes:
    """The Encrypted Attributes Sequence of each de-identified file of a run, for ``certificates``."""

    def __init__(self, certificates):
        self.certificates = list(certificates)
        self._decoded: dict = {}

    def __call__(self, path: Path, deidentified: Dataset) -> Sequence | None:
        """The sequence for ``deidentified``, de-identified from the file at ``path``: the original
        values of what changed, openable by each certificate's key; None if nothing changed."""
        # every attribute, those after the pixels too (trailing padding, digital signatures);
        # the pixels themselves are left unread (they go to the vault, not here)
        original = pydicom.dcmread(path, force=True, defer_size=DEFER_BYTES)
        if len(self._decoded) > MAX_CACHED:  # a run of many series: start again
            self._decoded.clear()
        subset = changed_original(original, deidentified, self._decoded)
        return build_encrypted_attributes(subset, deidentified, self.certificates)
