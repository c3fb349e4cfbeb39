"""The brain guard: voxels that no distortion may change, and how close a change came to the brain.

The protect mask is the union of two independent guards, so that neither a registration error
nor an odd head shape alone can expose the brain:

- the registered template brain mask (``features.template``), dilated by ``BRAIN_MARGIN_MM``;
- every voxel deeper than ``MIN_DEPTH_MM`` under the head's surface: the distance to the air
  outside the head (head mask with its internal cavities and the dark skull filled), measured in
  millimetres on a grid of about ``DEPTH_GRID_MM`` (voxel sizes taken from the affine, so thick
  slices and oblique grids are measured in true millimetres).

The facial features lie within a few millimetres of the skin (auricle, eyelids, external nose);
the brain lies more than a centimetre beneath it everywhere.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from .geometry import air_threshold
from .registration import block_mean
from .template import Localisation

BRAIN_MARGIN_MM = 12.0  # FSL MNI152's own brain mask lies up to 10.8 mm beyond ours (tilted 20°, tests)
MIN_DEPTH_MM = 20.0
DEPTH_GRID_MM = 3.0


def _axis_along(affine: np.ndarray, world_axis: int) -> int:
    """The voxel axis closest to a world axis."""
    return int(np.argmax(np.abs(affine[world_axis, :3]) / np.sqrt((affine[:3, :3] ** 2).sum(0))))


def filled_head(data: np.ndarray, affine: np.ndarray, threshold: float) -> np.ndarray:
    """Head mask with cavities filled: in 3D, then slice by slice across the head (axial and
    sagittal), because a field of view that cuts the head leaves the dark skull open to its edge."""
    # closing on an edge-padded copy: a head cut by the field of view keeps its cut slice
    head = ndi.binary_closing(np.pad(data > threshold, 1, mode="edge"), iterations=1)[1:-1, 1:-1, 1:-1]
    lab, n = ndi.label(head)
    if n == 0:
        return head
    head = lab == 1 + int(np.argmax(ndi.sum_labels(head, lab, np.arange(1, n + 1))))
    head = ndi.binary_fill_holes(head)
    for axis in {_axis_along(affine, 2), _axis_along(affine, 0)}:
        moved = np.moveaxis(head, axis, 0)
        for k in range(moved.shape[0]):
            if moved[k].any():
                moved[k] = ndi.binary_fill_holes(moved[k])
    return head


def deep_tissue(data: np.ndarray, affine: np.ndarray, min_depth_mm: float = MIN_DEPTH_MM,
                threshold: float | None = None) -> np.ndarray:
    """Voxels (bool, the image grid) at least ``min_depth_mm`` beneath the head's surface.

    Measured on a grid of about DEPTH_GRID_MM: a voxel takes the depth of its cell's centre
    (within half a cell's diagonal, 2.6 mm on a 1 mm image, of its own).
    """
    coarse, coarse_affine = block_mean(data, affine, DEPTH_GRID_MM)
    thr = air_threshold(data[::2, ::2, ::2]) if threshold is None else threshold
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(0))
    k = np.maximum(1, np.round(DEPTH_GRID_MM / zooms)).astype(int)
    cell = zooms * k
    head = filled_head(coarse, coarse_affine, thr)
    # no air is assumed beyond the field of view: where it cuts the head, depth is measured
    # from the skin that is seen, which protects more, never less
    depth = ndi.distance_transform_edt(head, sampling=cell)
    deep = depth >= min_depth_mm
    index = [np.minimum(np.arange(n) // f, m - 1) for n, f, m in zip(data.shape, k, deep.shape)]
    return deep[np.ix_(*index)]


def protect_mask(data: np.ndarray, affine: np.ndarray, localisation: Localisation,
                 brain_margin_mm: float = BRAIN_MARGIN_MM, min_depth_mm: float = MIN_DEPTH_MM) -> np.ndarray:
    """Voxels (bool, the image grid) no distortion may change: dilated brain ∪ deep tissue."""
    if tuple(data.shape) != tuple(localisation.shape):
        raise ValueError(f"brain guard: image {data.shape} and localisation {localisation.shape} differ in shape")
    protect = deep_tissue(data, affine, min_depth_mm, localisation.air_threshold)
    protect |= localisation.brain_within(brain_margin_mm)
    return protect


def smallest_distance_mm(changed: np.ndarray, brain_mask: np.ndarray, affine: np.ndarray) -> float | None:
    """The smallest distance (mm, world) between a changed voxel and the brain mask's voxels.

    0.0 when a changed voxel lies inside the mask; None when nothing changed or there is no
    brain mask.
    """
    changed, brain_mask = np.asarray(changed, bool), np.asarray(brain_mask, bool)
    if changed.shape != brain_mask.shape:
        raise ValueError(f"changed voxels {changed.shape} and brain mask {brain_mask.shape} differ in shape")
    if not changed.any() or not brain_mask.any():
        return None
    if (changed & brain_mask).any():
        return 0.0
    # the nearest pair lies on both sets' edges: from a changed voxel whose six neighbours all
    # changed, the neighbour towards the brain is nearer to it (unless within a voxel, where the
    # edges hold a pair as near); so only edge voxels are compared
    brain_edge = np.argwhere(brain_mask & ~ndi.binary_erosion(brain_mask))
    idx = np.argwhere(changed)
    box = tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(idx.min(0), idx.max(0)))
    front = np.argwhere(changed[box] & ~ndi.binary_erosion(changed[box], border_value=0)) + idx.min(0)
    return _nearest_pair_mm(front, brain_edge, affine)


def _nearest_pair_mm(a: np.ndarray, b: np.ndarray, affine: np.ndarray, cell: int = 4) -> float:
    """The smallest world distance between voxel sets ``a`` and ``b`` (indices (n, 3)), exact.

    Coarse to fine: on cells of ``cell`` voxels, the nearest cell pair bounds the answer from
    above (its distance plus a cell's diameter); only the cells that can hold a nearer pair
    (within that bound plus a diameter of the other set) are compared voxel by voxel."""
    def world(v):
        return np.asarray(v, np.float64) @ affine[:3, :3].T + affine[:3, 3]

    signs = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1])).reshape(3, -1)
    diameter = float(np.linalg.norm(affine[:3, :3] @ signs, axis=0).max()) * (cell - 1)  # of a cell's voxels
    span = np.maximum(a.max(0), b.max(0)) // cell + 1

    def cells(v):  # the distinct cells of a set, and which one each voxel lies in
        keys, inverse = np.unique(np.ravel_multi_index((v // cell).T, span), return_inverse=True)
        return np.stack(np.unravel_index(keys, span), axis=1), inverse

    (ca, ia), (cb, ib) = cells(a), cells(b)
    centres_a, centres_b = world((ca + 0.5) * cell - 0.5), world((cb + 0.5) * cell - 0.5)
    near_b, _ = cKDTree(centres_b).query(centres_a)
    bound = float(near_b.min()) + diameter
    keep_a = near_b <= bound + diameter
    near_a, _ = cKDTree(centres_a[keep_a]).query(centres_b)
    keep_b = near_a <= bound + diameter
    pa, pb = a[keep_a[ia.ravel()]], b[keep_b[ib.ravel()]]
    distance, _ = cKDTree(world(pb)).query(world(pa))
    return float(distance.min())
