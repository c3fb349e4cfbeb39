"""Copy a NIfTI file with its identifying header content cleared, streaming the voxels.

The free-text header fields (:data:`bids_deface.metadata.NIFTI_TEXT_FIELDS`) are emptied and
every header extension dropped; the voxel bytes are copied as they are, in chunks, so a 4 GB
run costs the memory of one chunk. The header's claim (dimensions × bits per voxel) is checked
against the bytes that follow: a truncated file fails instead of being copied short.
"""

from __future__ import annotations

import gzip
import io
import zlib
from contextlib import contextmanager
from pathlib import Path

import nibabel as nib
import numpy as np

CHUNK = 1 << 22
MAX_HEADER_BYTES = 1 << 26  # header + extensions; more is no NIfTI file a converter writes
GZIP_MAGIC = b"\x1f\x8b"


class NiftiCopyError(ValueError):
    """A NIfTI file that cannot be copied; the message says why (the caller names the file)."""


def _open_read(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return gzip.open(path, "rb") if magic == GZIP_MAGIC else open(path, "rb")


@contextmanager
def _open_write(path: Path):
    with open(path, "wb") as raw:
        if not str(path).endswith(".gz"):
            yield raw
            return
        from isal import igzip

        # no file name and no time in the gzip header: the same input gives the same bytes
        with igzip.IGzipFile(filename="", mode="wb", compresslevel=2, fileobj=raw, mtime=0) as out:
            yield out


def read_header(source) -> nib.Nifti1Header:
    """The NIfTI-1 or NIfTI-2 header (with its extensions) at the start of an open file."""
    start = source.read(4)
    if len(start) < 4:
        raise NiftiCopyError("not a NIfTI image (empty or cut short)")
    sizes = {int.from_bytes(start, order) for order in ("little", "big")}
    sizeof = next((n for n in (348, 540) if n in sizes), None)
    if sizeof is None:
        raise NiftiCopyError("not a NIfTI image (unknown header size)")
    klass = nib.Nifti1Header if sizeof == 348 else nib.Nifti2Header
    head = start + source.read(sizeof - 4 + 4)
    try:
        probe = klass(binaryblock=head[:sizeof], check=False)
    except Exception as exc:  # nibabel raises several types for a bad header
        raise NiftiCopyError(f"not a readable NIfTI header ({exc})") from None
    if probe.get("magic", b"") not in (b"n+1", b"n+2"):
        raise NiftiCopyError("not a single-file NIfTI image (a .hdr/.img pair or Analyze)")
    offset = int(probe.get_data_offset())
    if offset > MAX_HEADER_BYTES:
        raise NiftiCopyError(f"header claims {offset} bytes before the voxels")
    head += source.read(max(0, offset - len(head)))
    try:
        header = klass.from_fileobj(io.BytesIO(head), check=False)
    except Exception as exc:
        raise NiftiCopyError(f"not a readable NIfTI header ({exc})") from None
    return header


def header_of(path: Path):
    """The NIfTI header (and extensions) of ``path``, read without touching the voxels; raises
    :class:`NiftiCopyError` (or OSError) for a file that is not a readable NIfTI image."""
    try:
        with _open_read(Path(path)) as source:
            return read_header(source)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise NiftiCopyError(f"truncated or corrupt compressed data ({exc})") from None


def data_bytes(header) -> int:
    """How many voxel bytes the header says follow it."""
    shape = [int(n) for n in header.get_data_shape()]
    return int(np.prod(shape, dtype=object)) * header.get_data_dtype().itemsize if shape else 0


def copy_scrubbed_nifti(src: Path, dst: Path, text_fields) -> list[str]:
    """Write ``src`` to ``dst`` with ``text_fields`` emptied and extensions dropped; returns
    the names of what was cleared. Raises :class:`NiftiCopyError` (nothing usable written)."""
    try:
        return _copy(src, dst, text_fields)
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise NiftiCopyError(f"truncated or corrupt compressed data ({exc})") from None


def _copy(src: Path, dst: Path, text_fields) -> list[str]:
    with _open_read(src) as source:
        header = read_header(source)
        expected = data_bytes(header)
        cleared = [name for name in text_fields if name in header and bytes(header[name]).strip(b"\x00 ")]
        for name in cleared:
            header[name] = b""
        cleared += [f"extension:{ext.get_code()}" for ext in header.extensions]
        header.extensions.clear()
        header["vox_offset"] = header.single_vox_offset
        with _open_write(dst) as out:
            header.write_to(out)
            copied = 0
            while chunk := source.read(CHUNK):
                out.write(chunk)
                copied += len(chunk)
    if copied < expected:
        raise NiftiCopyError(f"truncated: the header claims {expected} bytes of voxels, the file holds {copied}")
    return cleared
