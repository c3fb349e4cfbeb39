"""Is a DICOM file whole? Truncated files are refused, never written.

pydicom reads a cut file without complaint: the element the cut falls in simply holds
fewer bytes than its length says, an undefined-length element runs to the end of the
file, and a cut between elements leaves the rest out. Written back, such a file would
carry short or missing pixel data and a face nobody defaced. :func:`check_complete`
raises :class:`Corrupt` (its message is the one-line reason) for:

* an element whose value is shorter than its declared length;
* an undefined-length element (sequence, encapsulated pixel data) without its
  delimiter, or encapsulated pixel data whose items do not fill it exactly;
* a file whose last element ends before the file does (a cut element header);
* an empty data set, an image SOP class without its pixel description, or an image
  (Rows, Columns, Bits Allocated) without Pixel Data;
* native Pixel Data shorter than rows × columns × frames × samples × bits.
"""

from __future__ import annotations

import struct
from pathlib import Path

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

UNDEFINED = 0xFFFFFFFF
ITEM, SEQUENCE_DELIMITER = 0xFFFEE000, 0xFFFEE0DD
PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


class Corrupt(ValueError):
    """The file is not a whole DICOM data set (the message says why, in one line)."""


def check_complete(ds: Dataset, path: Path) -> None:
    """Raise :class:`Corrupt` unless ``ds``, as read from ``path``, is whole."""
    size = Path(path).stat().st_size
    last_end, last_is_raw = 0, False
    with _LazyFile(path) as fh:  # opened only for an undefined-length element's delimiter
        for tag, elem in sorted(ds._dict.items()):
            if not isinstance(elem, RawDataElement) or elem.value_tell is None:
                last_is_raw = False
                continue
            n = len(elem.value) if elem.value is not None else 0
            if elem.length == UNDEFINED:
                end = elem.value_tell + n
                if _tag_at(fh, end, elem.is_little_endian) != SEQUENCE_DELIMITER:
                    raise Corrupt(f"dataset ends early: element ({tag.group:04X},{tag.element:04X}) "
                                  "has no delimiter")
                end += 8
            else:
                if n < elem.length:
                    raise Corrupt(f"dataset ends early: element ({tag.group:04X},{tag.element:04X}) "
                                  f"holds {n} of {elem.length} bytes")
                end = elem.value_tell + elem.length
            last_end, last_is_raw = max(last_end, end), True
    if not ds._dict:
        raise Corrupt("dataset ends early: no data element could be read")
    if last_is_raw and 0 < size - last_end < 8:
        raise Corrupt("dataset ends early: the last element header is cut")
    check_pixel_data(ds)


class _LazyFile:
    def __init__(self, path):
        self.path, self._fh = path, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._fh is not None:
            self._fh.close()

    def seek(self, offset: int):
        if self._fh is None:
            self._fh = open(self.path, "rb")
        self._fh.seek(offset)

    def read(self, n: int) -> bytes:
        return self._fh.read(n)


def _tag_at(fh, offset: int, little: bool) -> int | None:
    fh.seek(offset)
    raw = fh.read(4)
    if len(raw) < 4:
        return None
    group, element = struct.unpack("<HH" if little else ">HH", raw)
    return (group << 16) | element


def expected_pixel_bytes(ds: Dataset) -> int:
    """Bytes of native Pixel Data that rows × columns × frames × samples × bits need."""
    try:
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        if str(ds.get("PhotometricInterpretation", "")) == "YBR_FULL_422":
            samples = 2  # two chroma samples shared by each pair of pixels (PS3.3 C.7.6.3.1.2)
        count = int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1) * samples
    except (TypeError, ValueError):
        raise Corrupt("unreadable image pixel description (rows, columns, frames or bits)") from None
    return (count * bits + 7) // 8


def check_pixel_data(ds: Dataset) -> None:
    """Raise :class:`Corrupt` when an image's pixel data are missing, short or ill-formed."""
    if not all(k in ds for k in ("Rows", "Columns", "BitsAllocated")):
        sop_class = ds.get("SOPClassUID")
        if sop_class is not None and "Image Storage" in getattr(sop_class, "name", ""):
            raise Corrupt("dataset ends early: an image without its pixel description")
        return
    if not any(k in ds for k in PIXEL_KEYWORDS):
        raise Corrupt("dataset ends early: an image without Pixel Data")
    if "PixelData" not in ds:
        return
    elem = ds["PixelData"]
    value = elem.value or b""
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_encapsulated and elem.is_undefined_length:
        _check_items(value, bool(ts.is_little_endian))
        return
    need = expected_pixel_bytes(ds)
    if len(value) < need:
        raise Corrupt(f"pixel data shorter than rows × columns × frames × bits ({len(value)} of {need} bytes)")


def _check_items(value: bytes, little: bool) -> None:
    """Encapsulated pixel data: the offset table and fragments are items that fill it exactly."""
    fmt = "<HHL" if little else ">HHL"
    offset, items = 0, 0
    while offset < len(value):
        if offset + 8 > len(value):
            raise Corrupt("encapsulated pixel data end inside an item header")
        group, element, length = struct.unpack_from(fmt, value, offset)
        if (group << 16) | element != ITEM or length == UNDEFINED or offset + 8 + length > len(value):
            raise Corrupt("encapsulated pixel data are cut or ill-formed")
        offset += 8 + length
        items += 1
    if items < 2:  # the Basic Offset Table item and at least one fragment
        raise Corrupt("encapsulated pixel data hold no fragment")
