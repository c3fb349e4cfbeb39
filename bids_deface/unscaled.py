"""NIfTI images whose stored (unscaled) voxel values survive saving unchanged.

Many converters store integers with a scale factor (``scl_slope``/``scl_inter``).
nibabel reads such a file as scaled floats and, on ``nib.save``, computes a *new*
scale factor from those floats, which rewrites every stored voxel. Defacing
promises that voxels outside the distorted regions are bit-for-bit unchanged on
disk, so the images made here keep the stored values and the scale factor of their
source: ``nib.save`` writes them back exactly, while ``get_fdata()`` still returns
the scaled values as for any loaded image.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy

from bids_deface.images import scaling, stored_data  # noqa: F401  (re-exported for the core)


class _KeepsStoredValues:
    """Mixin: saving writes the stored values and scale factor of the proxy unchanged."""

    def to_file_map(self, file_map=None, dtype=None):
        proxy = self._dataobj
        if dtype is not None or not isinstance(proxy, ArrayProxy):
            return super().to_file_map(file_map, dtype)
        raw = np.asanyarray(proxy.get_unscaled())
        plain = self._plain_class(raw, self.affine, self.header, extra=self.extra)
        plain.header.set_data_dtype(raw.dtype)
        # An explicit scale factor makes nibabel write ``raw`` as it is (no rescaling).
        plain.header.set_slope_inter(proxy.slope, proxy.inter)
        plain.to_file_map(self.file_map if file_map is None else file_map)


class StoredNifti1Image(_KeepsStoredValues, nib.Nifti1Image):
    """A Nifti1Image that ``nib.save`` writes with its stored values and scale factor unchanged."""

    _plain_class = nib.Nifti1Image


class StoredNifti2Image(_KeepsStoredValues, nib.Nifti2Image):
    """A Nifti2Image that ``nib.save`` writes with its stored values and scale factor unchanged."""

    _plain_class = nib.Nifti2Image


def _stored_class(img):
    if isinstance(img, nib.Nifti2Image):
        return StoredNifti2Image, nib.Nifti2Image
    if isinstance(img, nib.Nifti1Image):
        return StoredNifti1Image, nib.Nifti1Image
    raise TypeError(f"expected a NIfTI image, got {type(img).__name__}")


def image_from_unscaled(raw: np.ndarray, like: nib.spatialimages.SpatialImage,
                        header: nib.spatialimages.SpatialHeader | None = None) -> nib.Nifti1Image:
    """An image of stored values ``raw`` with the affine, scale factor and header of ``like``.

    Inputs: ``raw`` (shape of ``like``; for images read from disk, their on-disk dtype),
    ``like`` (the source image), ``header`` (defaults to ``like.header``).
    Output: for a source read from disk, an image whose ``get_fdata()`` gives the scaled
    values and whose ``nib.save`` writes ``raw`` and the scale factor exactly; for an
    in-memory source (no proxy, no scaling), a plain image holding ``raw``.
    """
    header = like.header if header is None else header
    stored_class, plain_class = _stored_class(like)
    if not isinstance(like.dataobj, ArrayProxy):
        return plain_class(raw, like.affine, header, extra=like.extra)
    slope, inter = scaling(like)
    plain = plain_class(raw, like.affine, header, extra=like.extra)
    plain.header.set_data_dtype(raw.dtype)
    plain.header.set_slope_inter(slope, inter)
    # Serialising to bytes and reading back gives an ordinary proxy image (scaled reads,
    # get_unscaled(), slope/inter), as if the result had been loaded from a file.
    out = stored_class.from_bytes(plain.to_bytes())
    out.extra = dict(like.extra)
    return out


def with_header(img: nib.spatialimages.SpatialImage,
                header: nib.spatialimages.SpatialHeader) -> nib.Nifti1Image:
    """``img``'s voxels (stored values and scale factor kept) under a new ``header``."""
    stored_class, plain_class = _stored_class(img)
    if not isinstance(img.dataobj, ArrayProxy):
        return plain_class(img.dataobj, img.affine, header, extra=img.extra)
    return stored_class(img.dataobj, img.affine, header, extra=img.extra)
