"""Where the voxels are in a file's bytes: the data block of a NIfTI image, the native Pixel Data
of a DICOM file. The vault keeps everything around that block whole and only the changed items
inside it, so it needs the block's offset, length and item size (bytes per voxel or pixel)."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import nibabel as nib
import numpy as np

PIXEL_DATA = 0x7FE00010
UNDEFINED_LENGTH = 0xFFFFFFFF
_NIFTI = {348: nib.Nifti1Header, 540: nib.Nifti2Header}


@dataclass(frozen=True)
class Region:
    """``length`` bytes from ``offset``, made of items of ``itemsize`` bytes."""

    offset: int
    length: int
    itemsize: int


def _sizeof_hdr(stream: bytes) -> int | None:
    if len(stream) < 4:
        return None
    for order in "<>":
        size = struct.unpack(order + "i", stream[:4])[0]
        if size in _NIFTI:
            return size
    return None


def nifti_region(stream: bytes) -> Region | None:
    """The data block of a single-file NIfTI-1/2 image (``.nii`` bytes, decompressed)."""
    size = _sizeof_hdr(stream)
    if size is None:
        return None
    try:
        header = _NIFTI[size].from_fileobj(io.BytesIO(stream), check=False)
        offset = int(header.get_data_offset())
        itemsize = header.get_data_dtype().itemsize
        length = int(np.prod(header.get_data_shape(), dtype=np.int64)) * itemsize
    except Exception:  # noqa: BLE001 - an unreadable header is simply not a region we know
        return None
    if offset < size or length <= 0 or offset + length > len(stream):
        return None
    return Region(offset, length, itemsize)


def dicom_region(stream: bytes) -> Region | None:
    """The native (uncompressed, defined-length) Pixel Data of a DICOM Part 10 file."""
    if stream[128:132] != b"DICM":
        return None
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(stream), defer_size=256)
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed or syntax.is_deflated:  # offsets would not be file offsets
            return None
        elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
        bits = int(ds.get("BitsAllocated", 8) or 8)
    except Exception:  # noqa: BLE001
        return None
    tell, length = getattr(elem, "value_tell", None), getattr(elem, "length", None)
    if tell is None or not length or length == UNDEFINED_LENGTH or tell + length > len(stream):
        return None
    itemsize = bits // 8 if bits in (8, 16, 32, 64) and length % (bits // 8) == 0 else 1
    return Region(int(tell), int(length), itemsize)


def data_region(stream: bytes) -> Region | None:
    """The data block of a NIfTI or DICOM stream, or None for any other file."""
    return nifti_region(stream) or dicom_region(stream)
