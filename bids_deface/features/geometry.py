"""Head geometry at full resolution: resampling to a RAS grid and the head (air/skin) mask.

Shared by the label maker (training), the detector's refinement step and the distortions:
everything here is pure numpy/scipy on arrays and nibabel images.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi


def as_3d(img: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """Drop a singleton fourth axis; refuse anything that is not one 3D volume."""
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        data = np.asanyarray(img.dataobj)[..., 0]
        return nib.Nifti1Image(data, img.affine, img.header)
    if len(shape) != 3:
        raise ValueError(f"expected one 3D volume, got an image of shape {shape}")
    if min(shape) < 2:
        raise ValueError(f"image of shape {shape} is not a 3D volume")
    return img


def ras_grid(shape, affine: np.ndarray, voxel_mm: float = 1.0) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of a RAS-aligned grid of ``voxel_mm`` voxels covering the field of view
    of a volume of ``shape`` on ``affine``."""
    shape = tuple(shape[:3])
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)], float)
    world = nib.affines.apply_affine(affine, corners)
    lo, hi = world.min(0), world.max(0)
    out_shape = tuple(int(np.ceil((hi[a] - lo[a]) / voxel_mm)) + 1 for a in range(3))
    grid = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    grid[:3, 3] = lo
    return out_shape, grid


def resample(data: np.ndarray, src_affine: np.ndarray, out_shape, out_affine: np.ndarray,
             order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``data`` (on ``src_affine``) onto the grid ``out_shape``/``out_affine``."""
    vox2vox = np.linalg.solve(src_affine, out_affine)
    return ndi.affine_transform(np.asarray(data, dtype=np.float32), vox2vox[:3, :3], vox2vox[:3, 3],
                                output_shape=tuple(out_shape), order=order, cval=cval, mode="constant")


def to_ras(img: nib.spatialimages.SpatialImage, voxel_mm: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Intensities of ``img`` resampled (trilinear) onto a RAS grid; returns (data, affine)."""
    img = as_3d(img)
    shape, affine = ras_grid(img.shape, img.affine, voxel_mm)
    data = resample(np.asanyarray(img.dataobj, dtype=np.float32), img.affine, shape, affine, order=1)
    return data, affine


def robust_range(data: np.ndarray) -> tuple[float, float]:
    """Background level and a robust bright level of a head image."""
    finite = data[np.isfinite(data)]
    sample = finite[:: max(1, finite.size // 2_000_000)]
    return float(np.percentile(sample, 1)), float(np.percentile(sample, 99.5))


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's split of ``values`` (any shape): the level that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    return _otsu(hist, (edges[:-1] + edges[1:]) / 2)


def _otsu(hist: np.ndarray, centers: np.ndarray) -> float:
    w0 = np.cumsum(hist).astype(float)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    between = w0 * w1 * (m0 / np.maximum(w0, 1) - (m0[-1] - m0) / np.maximum(w1, 1)) ** 2
    return float(centers[np.argmax(between)])


LARGE_VOLUME = 2 ** 22  # voxels


def air_threshold(values: np.ndarray, bins: int = 4096) -> float:
    """Intensity separating air from the head's skin, in any contrast with dark air.

    The one air/skin threshold of the package (detector, surface extent, distortions, renders,
    brain guard). Otsu's split of the robustly clipped (1st-99.5th percentile) histogram lies
    between air and tissue; it is pulled towards the air level (0.6 of the way, and never above
    0.15 of the robust range) because skin is darker than the brain that dominates the
    histogram. One histogram of every voxel: fast, and independent of the grid's orientation.
    """
    values = np.asarray(values)
    if values.ndim == 3 and values.size > LARGE_VOLUME:  # every second voxel: the same histogram, 8x faster
        values = values[::2, ::2, ::2]
    finite = values.ravel(order="K")  # no copy, whatever the memory layout (NIfTI arrays are Fortran-ordered)
    if not np.isfinite(finite).all():
        finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0
    vmin, vmax = float(finite.min()), float(finite.max())
    if vmax <= vmin:
        return vmin
    hist, edges = np.histogram(finite, bins=bins, range=(vmin, vmax))
    cdf = np.cumsum(hist) / finite.size
    lo = float(edges[np.searchsorted(cdf, 0.01)])
    hi = float(edges[min(np.searchsorted(cdf, 0.995) + 1, bins)])
    if hi <= lo:
        return lo
    # Otsu on the clipped histogram, rebinned from the fine one
    centers = (edges[:-1] + edges[1:]) / 2
    coarse, coarse_edges = np.histogram(np.clip(centers, lo, hi), bins=256, range=(lo, hi), weights=hist)
    otsu = _otsu(coarse, (coarse_edges[:-1] + coarse_edges[1:]) / 2)
    return float(lo + 0.6 * min(otsu - lo, 0.25 * (hi - lo)))


def head_mask(data: np.ndarray, threshold: float | None = None) -> np.ndarray:
    """Solid head: tissue above the air threshold, largest component, internal cavities filled."""
    thr = air_threshold(data) if threshold is None else threshold
    mask = data > thr
    mask = ndi.binary_opening(mask, iterations=1)
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    sizes = ndi.sum_labels(mask, lab, index=np.arange(1, n + 1))
    mask = lab == (1 + int(np.argmax(sizes)))
    mask = ndi.binary_closing(mask, iterations=2)
    mask = ndi.binary_fill_holes(mask)
    # Sinuses, eyes and ear canals open to the outside only through thin gaps: fill slice-wise.
    for axis in (2, 0):
        moved = np.moveaxis(mask, axis, 0)
        for k in range(moved.shape[0]):
            if moved[k].any():
                moved[k] = ndi.binary_fill_holes(moved[k])
    return mask
