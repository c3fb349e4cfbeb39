"""Input head images: load and check one volume, reorient to RAS and back, exactly.

Every function here keeps the *stored* voxel values (the integers on disk) and the
scaling (``scl_slope``/``scl_inter``) of the input, so that a round trip
``restore_grid(reorient_to_ras(img), img)`` gives back bit-for-bit the same voxels,
header and grid. Multiplying by the scale factor and saving through the original
header would make nibabel rescale every voxel (NOTES.md, "Files that bite").
"""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform


class InputImageError(ValueError):
    """An input image that cannot be defaced; the message names the file and the problem."""


def stored_data(img: nib.spatialimages.SpatialImage) -> np.ndarray:
    """The voxel values as stored on disk (before scaling)."""
    dataobj = img.dataobj
    if nib.is_proxy(dataobj) and hasattr(dataobj, "get_unscaled"):
        return np.asanyarray(dataobj.get_unscaled())
    return np.asanyarray(dataobj)


def scaling(img: nib.spatialimages.SpatialImage) -> tuple[float, float]:
    """(slope, intercept) that map stored values to image values; (1, 0) when unscaled."""
    slope = getattr(img.dataobj, "slope", None)
    inter = getattr(img.dataobj, "inter", None)
    if slope is None:  # an in-memory image: its header holds what will be written
        slope, inter = img.header.get_slope_inter() if hasattr(img.header, "get_slope_inter") else (None, None)
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    return slope, inter


def with_stored_data(data: np.ndarray, affine: np.ndarray | None, like: nib.spatialimages.SpatialImage,
                     slope: float, inter: float) -> nib.spatialimages.SpatialImage:
    """An image of ``like``'s class and header holding ``data`` as its stored values.

    The header carries ``slope``/``inter`` explicitly, so nibabel writes ``data`` as is
    instead of choosing a new scaling.
    """
    header = like.header.copy()
    header.set_data_dtype(data.dtype)
    out = like.__class__(data, affine, header)
    if (slope, inter) != (1.0, 0.0):
        out.header.set_slope_inter(slope, inter)
    return out


def load_volume(path: str | Path, name: str | None = None, *, structure: bool = True
                ) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    """Load a NIfTI image and check that it is one complete 3D volume.

    Parameters
    ----------
    path : the image file.
    name : how to name the file in error messages (default: ``path``).
    structure : refuse a volume whose neighbouring voxels are unrelated (empty, or noise); off for
        an image that takes another's distortion (a phase map is noise-like in air).

    Returns
    -------
    (img, stored) : the image as loaded (its shape may carry a singleton fourth axis) and its
        stored voxel values as a 3D array, read in full so that truncation shows here.

    Raises
    ------
    InputImageError : unreadable, truncated, 2D, or more than one volume.
    """
    name = name or str(path)
    path = Path(path)
    if not path.exists():  # also a broken symlink, e.g. git-annex content not fetched
        raise InputImageError(f"{name}: file not found or a broken link (is its content fetched?)")
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for a bad header
        raise InputImageError(f"{name}: not a readable NIfTI image ({exc})") from None
    shape = img.shape
    if len(shape) < 3 or sum(n > 1 for n in shape[:3]) < 3:
        raise InputImageError(f"{name}: a 2D image (shape {shape}); a 3D head volume is needed")
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        raise InputImageError(
            f"{name}: {int(np.prod(shape[3:]))} volumes (shape {shape}); only single 3D volumes can be defaced")
    check_size_claim(img, path, name)
    check_affine(img, name)
    try:
        img = read_whole(img, path)
        stored = stored_data(img)
    except (EOFError, zlib.error, OSError, ValueError) as exc:
        raise InputImageError(f"{name}: truncated or corrupt image data ({exc})") from None
    stored = stored.reshape(shape[:3])
    if not np.issubdtype(stored.dtype, np.number) or np.iscomplexobj(stored):
        raise InputImageError(f"{name}: unsupported voxel type {stored.dtype}")
    if np.issubdtype(stored.dtype, np.floating):
        bad = int(stored.size - np.count_nonzero(np.isfinite(stored)))
        if bad:
            raise InputImageError(f"{name}: {bad} voxel(s) are NaN or infinite; a head image has finite values "
                                  "(replace them, e.g. by 0, before defacing)")
    if structure and neighbour_correlation(stored) < MIN_NEIGHBOUR_CORRELATION:
        raise InputImageError(f"{name}: no head found: the volume is empty or noise "
                              "(neighbouring voxels are unrelated)")
    return img, stored


# deflate cannot shrink data more than ~1032:1; a header claiming more than that is lying
MAX_DEFLATE_RATIO = 1032


def check_size_claim(img, path: Path, name: str) -> None:
    """Refuse, before reading a voxel, a header whose dimensions × bits per voxel the file cannot hold."""
    header = img.header
    voxels = int(np.prod([int(n) for n in img.shape], dtype=object))
    claimed = voxels * header.get_data_dtype().itemsize + int(header.get("vox_offset", 0) or 0)
    size = Path(path).stat().st_size
    gzipped = _is_gzip(path)
    holds = size * MAX_DEFLATE_RATIO if gzipped else size
    if claimed > holds:
        raise InputImageError(
            f"{name}: the header claims {voxels:,} voxels ({claimed / 1e9:.1f} GB) but the file "
            f"({size:,} bytes{', compressed' if gzipped else ''}) cannot hold them: truncated or corrupt header")


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def check_affine(img, name: str) -> None:
    """Refuse a voxel-to-world matrix that is not finite or maps the volume onto less than 3D."""
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise InputImageError(f"{name}: the header's voxel-to-world matrix holds NaN or infinite values")
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    # |det| / product of the column lengths: 1 for orthogonal axes, 0 when they are dependent
    if np.any(zooms == 0) or abs(np.linalg.det(affine[:3, :3])) / float(np.prod(zooms)) < 1e-6:
        raise InputImageError(f"{name}: the header's voxel-to-world matrix is zero or singular "
                              "(voxel sizes or orientation missing): the head's position is unknown")


# Any anatomical image, however noisy, has neighbouring voxels that go together (real heads
# here: 0.94-0.999); an empty volume or pure noise has none (0).
MIN_NEIGHBOUR_CORRELATION = 0.3


def neighbour_correlation(data: np.ndarray) -> float:
    """Median over the three axes of the correlation between neighbouring voxels (on every
    fourth line of the volume, for speed); 0 for a constant volume."""
    values = []
    for axis in range(3):
        sub = tuple(slice(None, None, 4) if a != axis else slice(None) for a in range(3))
        vol = data[sub]
        n = vol.shape[axis] - vol.shape[axis] % 2
        a = np.take(vol, np.arange(0, n, 2), axis=axis).astype(np.float32).ravel()
        b = np.take(vol, np.arange(1, n, 2), axis=axis).astype(np.float32).ravel()
        if a.size < 2 or a.std() == 0 or b.std() == 0:
            values.append(0.0)
            continue
        values.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.median(values))


def reorient_to_ras(img: nib.spatialimages.SpatialImage, stored: np.ndarray | None = None
                    ) -> nib.spatialimages.SpatialImage:
    """The same volume with its voxel axes permuted/flipped to be closest to RAS.

    No resampling: voxels are only transposed and flipped, stored values and scaling kept,
    a singleton fourth axis dropped. ``stored`` may pass the already read 3D stored values.
    """
    if stored is None:
        stored = stored_data(img).reshape(img.shape[:3])
    affine = img.affine
    ornt = io_orientation(affine)
    ras = np.ascontiguousarray(apply_orientation(stored, ornt))
    ras_affine = affine @ inv_ornt_aff(ornt, stored.shape)
    out = with_stored_data(ras, ras_affine, img, *scaling(img))
    out.header.set_data_shape(ras.shape)
    return out


def restore_grid(img: nib.spatialimages.SpatialImage, like: nib.spatialimages.SpatialImage,
                 *, keep_dtype: bool = True) -> nib.spatialimages.SpatialImage:
    """``img`` (a RAS volume from :func:`reorient_to_ras`) back on ``like``'s grid and header.

    The result has ``like``'s shape (a singleton fourth axis restored), affine, header, and
    with ``keep_dtype`` its on-disk dtype and scaling. When ``img`` already shares that dtype
    and scaling its stored values are moved as they are; otherwise values are re-quantised
    (rounded and clipped for integer types), which leaves untouched voxels unchanged.
    """
    like_slope, like_inter = scaling(like)
    target = like.get_data_dtype() if keep_dtype else img.get_data_dtype()
    if img.get_data_dtype() == target and scaling(img) == (like_slope, like_inter):
        stored = stored_data(img)
    else:
        values = np.asanyarray(img.dataobj, dtype=np.float64)
        stored = (values - like_inter) / like_slope
        if np.issubdtype(target, np.integer):
            info = np.iinfo(target)
            stored = np.clip(np.rint(stored), info.min, info.max)
        stored = stored.astype(target)
    ornt = ornt_transform(io_orientation(img.affine), io_orientation(like.affine))
    back = apply_orientation(stored.reshape(img.shape[:3]), ornt)
    if back.shape != like.shape[:3]:
        raise ValueError(f"grid mismatch: {back.shape} cannot be restored onto {like.shape}")
    back = np.ascontiguousarray(back).reshape(like.shape)
    return with_stored_data(back, like.affine, like, like_slope, like_inter)


def restore_labels(labels: nib.spatialimages.SpatialImage, like: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """A RAS label image back on ``like``'s 3D grid, as uint8 with a clean header."""
    data = np.asanyarray(labels.dataobj).astype(np.uint8)
    ornt = ornt_transform(io_orientation(labels.affine), io_orientation(like.affine))
    back = np.ascontiguousarray(apply_orientation(data, ornt))
    if back.shape != like.shape[:3]:
        raise ValueError(f"grid mismatch: labels {back.shape} cannot be restored onto {like.shape}")
    out = nib.Nifti1Image(back, like.affine)
    out.header.set_xyzt_units("mm")
    # Keep the input's coordinate-system codes so the labels overlay it in every viewer.
    if hasattr(like, "get_qform"):
        out.set_qform(like.affine, int(like.get_qform(coded=True)[1]) or 1)
        out.set_sform(like.affine, int(like.get_sform(coded=True)[1]) or 1)
    return out


def read_whole(img: nib.spatialimages.SpatialImage, path: str | Path) -> nib.spatialimages.SpatialImage:
    """``img`` (a NIfTI header read from ``path``) with its data in memory; a gzip file is inflated
    by ISA-L (three times zlib's speed), the result a proxy image over the bytes, as if loaded."""
    if not str(path).endswith(".gz") or not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return img
    import isal.igzip

    return img.__class__.from_bytes(isal.igzip.decompress(Path(path).read_bytes()))


# gzip level of written images: ISA-L's 2 compresses as well as zlib's 1, seven times faster
GZIP_LEVEL = 2


def save_exact(img: nib.spatialimages.SpatialImage, path: str | Path) -> None:
    """Write ``img`` with its stored values and scale factor unchanged (see module docstring);
    ``.nii.gz`` compressed by ISA-L, with no time stamp (a rerun writes the same bytes)."""
    if nib.is_proxy(img.dataobj):
        img = with_stored_data(stored_data(img), img.affine, img, *scaling(img))
    if str(path).endswith(".gz") and isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        import isal.igzip

        Path(path).write_bytes(isal.igzip.compress(img.to_bytes(), GZIP_LEVEL, mtime=0))
        return
    nib.save(img, str(path))


# ---------------------------------------------------------------------------- images that keep stored values
# nibabel reads a scaled file as floats and, on ``nib.save``, computes a *new* scale factor from
# them, which rewrites every stored voxel; the images made below keep the stored values and the
# scale factor of their source, while ``get_fdata()`` still returns the scaled values.


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
    slope, inter = scaling(like)
    if not isinstance(like.dataobj, ArrayProxy) and (slope, inter) == (1.0, 0.0):
        return plain_class(raw, like.affine, header, extra=like.extra)
    # (an in-memory source with a scale factor, e.g. from reorient_to_ras, goes this way too: a
    # plain image made from an array would forget the scale factor)
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
    stored_class, _ = _stored_class(img)
    if not isinstance(img.dataobj, ArrayProxy):
        return image_from_unscaled(stored_data(img), img, header)
    return stored_class(img.dataobj, img.affine, header, extra=img.extra)
