"""The original values of what de-identification changed, for the Encrypted Attributes Sequence.

:class:`EncryptedAttributes` compares each file's attributes as read (:meth:`~EncryptedAttributes.keep`,
or read again from the file) with the de-identified data set and encrypts the original values
of what changed (:mod:`bids_deface.vault.encrypted_attributes`). Doing this for every attribute
of every file cost more than de-identifying it, so: an attribute the de-identified data set
still holds undecoded, as read, is unchanged and skipped unread; the others are decoded, and
encoded into the Modified Attributes item, once per distinct stored value (the slices of a
series share most of theirs), and the item is the concatenation of those encodings, byte for
byte what pydicom writes for it whole. An attribute holding an ambiguous VR ('US or SS'), which
pydicom resolves from the attributes around it, sends its file the whole way through pydicom.
"""

from __future__ import annotations

import io
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_has_tag, dictionary_VR
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.valuerep import AMBIGUOUS_VR

from bids_deface.vault.encrypted_attributes import (
    ENCRYPTED_ATTRIBUTES, build_encrypted_attributes, encode_attribute, encrypt_content, envelope_builder,
    modified_attributes_content, own_copy)

CHARSET = 0x00080005
PIXEL_REPRESENTATION = 0x00280103  # resolves 'US or SS', in the items of a sequence too
MAX_CACHED = 20_000  # decoded and encoded attributes kept (a few MB)
DEFER_BYTES = 4096  # read again: larger values are read from the file only when compared
PIXEL_GROUP = 0x7FE0
_SPECIAL = (np.ndarray, io.BufferedIOBase)  # values DataElement compares its own way


def as_read(ds: Dataset) -> Dataset:
    """``ds``'s attributes as they are now, apart from what defacing and de-identifying ``ds`` do
    next: undecoded elements are immutable and shared, decoded ones copied. The pixels are not
    kept, only an empty stand-in, as pydicom decodes some values by whether they are there."""
    elements = {}
    for tag, elem in ds.items():
        if tag.group == PIXEL_GROUP:
            elements[tag] = RawDataElement(tag, elem.VR, 0, b"", None, *ds.original_encoding)
            continue
        if elem.is_raw and elem.value is None:  # deferred: read now
            elem = ds.get_item(tag)
        elements[tag] = elem if elem.is_raw else own_copy(elem)
    kept = Dataset(elements)
    kept.set_original_encoding(*ds.original_encoding, ds.original_character_set)
    return kept


def _stored(elem) -> bytes | None:
    """The stored bytes of an undecoded element (None: decoded, or not read yet)."""
    return elem.value if elem is not None and elem.is_raw else None


def _value_key(elem):
    """What identifies an element's value: its stored bytes, or its decoded value's text."""
    return None if elem is None else elem.value if elem.is_raw else str(elem.value)


@lru_cache(maxsize=4096)
def _vr_of_tag_alone(tag) -> bool:
    """Whether an implicit VR element of ``tag`` decodes alike in any data set: in the dictionary,
    with one VR."""
    return dictionary_has_tag(tag) and dictionary_VR(tag) not in AMBIGUOUS_VR


def _equal(a: DataElement, b: DataElement) -> bool:
    """``a == b`` for two elements of one tag, without DataElement's generic checks for the
    plain values (str, numbers, lists of them) nearly all attributes hold."""
    if isinstance(a.value, _SPECIAL) or isinstance(b.value, _SPECIAL):
        return a == b
    return a.VR == b.VR and a.value == b.value


def _context_free(elem) -> bool:
    """Whether pydicom writes ``elem`` alike in any data set: no VR in it left ambiguous."""
    if elem.is_raw:  # decoded, when written, by the item it lies in: as in the original
        return True
    if elem.VR in AMBIGUOUS_VR:
        return False
    return elem.VR != "SQ" or all(_context_free(e) for item in elem.value for e in item.elements())


class EncryptedAttributes:
    """The Encrypted Attributes Sequence of each de-identified file of a run, for ``certificates``."""

    def __init__(self, certificates):
        self.certificates = list(certificates)
        # keyed by tag, VR, stored bytes and what decodes them (encoding, character set, pixel
        # representation, a private attribute's creator): decoded elements, their bytes in the item
        self._decoded: dict = {}
        self._encoded: dict = {}
        self._kept: dict[Path, Dataset] = {}
        self._builder = None  # the CMS builder for the certificates, once they are checked

    def keep(self, path: Path, ds: Dataset) -> None:
        """Remember ``ds`` as just read from ``path``, so that the file need not be read again."""
        self._kept[Path(path)] = as_read(ds)

    def release(self) -> None:
        """Forget the data sets kept and not used (their files were not written)."""
        self._kept.clear()

    def __call__(self, path: Path, deidentified: Dataset) -> Sequence | None:
        """The sequence for ``deidentified``, de-identified from the file at ``path``: the original
        values of what changed, openable by each certificate's key; None if nothing changed."""
        original = self._kept.pop(Path(path), None)
        if original is None:
            # every attribute, those after the pixels too (trailing padding, digital signatures);
            # the pixels themselves are left unread (they go to the vault, not here)
            original = pydicom.dcmread(path, force=True, defer_size=DEFER_BYTES)
        if len(self._decoded) + len(self._encoded) > MAX_CACHED:  # a run of many series: start again
            self._decoded.clear()
            self._encoded.clear()
        changed = self._changed(original, deidentified)
        if not changed:
            return None
        content = self._content(original, changed)
        if content is None:  # an ambiguous VR: pydicom writes the item whole
            subset = Dataset({elem.tag: elem for elem, _ in changed})
            if CHARSET in original:
                subset[CHARSET] = original[CHARSET]
            return build_encrypted_attributes(subset, deidentified, self.certificates)
        if self._builder is None:
            self._builder = envelope_builder(self.certificates)
        return encrypt_content(content, self._builder)

    def _changed(self, original: Dataset, deidentified: Dataset) -> list[tuple[DataElement, tuple | None]]:
        """The original attributes (decoded) that ``deidentified`` changed or lacks, pixels excluded,
        each with the key of its encoding (None: not kept)."""
        context = (original.original_encoding, *(_value_key(original.get_item(tag))
                                                 for tag in (CHARSET, PIXEL_REPRESENTATION)))
        # tags as plain ints: BaseTag's Python-level == runs on every dict hit and key compared
        changed, now_of = [], {int(tag): elem for tag, elem in deidentified.items()}
        for tag, was in list(original.items()):
            t = int(tag)
            if t >> 16 == PIXEL_GROUP or t == ENCRYPTED_ATTRIBUTES:
                continue
            now = now_of.get(t)
            if now is was:  # the very element read: unchanged
                continue
            if was.is_raw and was.value is None:  # deferred by the reading: read (and decoded) now
                was = original.get_item(tag)
            stored = _stored(was)
            if stored is not None and _stored(now) == stored and was.VR == now.VR:
                continue
            elem = was if stored is None else self._decode(original, t, was, context)
            if now is not None and now.is_raw:
                now = deidentified[tag]
            if now is None or not _equal(now, elem):
                changed.append((elem, None if stored is None else (t, elem.VR, stored, context)))
        return changed

    def _decode(self, original: Dataset, tag: int, was, context) -> DataElement:
        """``original[tag]``, undecoded ``was``: decoded once per distinct stored value."""
        if tag >> 16 & 1:  # private: its VR may depend on its creator
            creator = original.get_item(tag >> 16 << 16 | (tag & 0xFFFF) >> 8) if tag & 0xFF00 else None
            key = (tag, was.VR, was.value, context, _value_key(creator))
        elif was.VR is not None or _vr_of_tag_alone(tag):
            key = (tag, was.VR, was.value, context)
        else:
            return original[tag]
        elem = self._decoded.get(key)
        if elem is None:
            elem = self._decoded[key] = original[tag]
        return elem

    def _content(self, original: Dataset, changed) -> bytes | None:
        """The encoded Modified Attributes Sequence of ``changed`` with the original Specific
        Character Set; None when an attribute's encoding depends on the others."""
        encodings = [default_encoding]
        if CHARSET in original:
            encodings = original[CHARSET].value  # their text decodes with it: the item carries it
            changed = [pair for pair in changed if pair[0].tag != CHARSET]
            changed.append((DataElement(CHARSET, "CS", encodings), (CHARSET, "item")))
        parts = []
        for elem, key in sorted(changed, key=lambda pair: pair[0].tag):
            if elem.tag.element == 0 and elem.tag.group > 6:  # retired group length: pydicom writes none
                continue
            full = None if key is None else (*key, str(encodings))
            data = self._encoded.get(full) if full is not None else None
            if data is None:
                if not _context_free(elem):
                    return None
                data = encode_attribute(elem, encodings)
                if full is not None:
                    self._encoded[full] = data
            parts.append(data)
        return modified_attributes_content(b"".join(parts))
