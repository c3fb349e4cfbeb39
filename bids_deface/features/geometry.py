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
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[np.argmax(between)])


def air_threshold(data: np.ndarray) -> float:
    """Intensity separating air from the head's skin (any contrast with dark air)."""
    lo, hi = robust_range(data)
    clipped = np.clip(data, lo, hi)
    sample = clipped[:: 7] if clipped.ndim == 1 else clipped.ravel()[::7]
    # Otsu on a robustly clipped histogram splits air from tissue; a floor keeps faint
    # skin in when the histogram is dominated by bright tissue.
    otsu = otsu_threshold(sample)
    return lo + min(otsu - lo, 0.25 * (hi - lo)) * 0.6


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
