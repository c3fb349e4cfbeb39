"""The whole extent of each facial feature, at the image's own resolution, from the head's surface.

The detector (:mod:`.detect`) says roughly where each feature is: a centroid on its 4 mm grid.
This module finds all of it, in any contrast with dark air (T1w, T2w, PD, FLAIR-like):

- **ears**: the auricle is the flap of tissue that stands out from the side of the head: the
  head minus its morphological opening by a ball of ``EAR_OPENING_MM`` (the ball cannot enter
  the pinna, but follows the skull's curvature), inside a generous neighbourhood of the detected
  ear. Computed with two distance transforms on a crop around the ear, on a grid of about
  ``WORK_MM`` (never finer than the image's own), then carried back onto every image voxel by
  interpolating the distance to the opened head;
- **eyes**: the head (tissue and the cavities behind the face surface) within ``EYE_RADIUS_MM``
  of the eye's centre: the globe, the lids and the periocular skin;
- **nose** (:mod:`.nose`): the external nose, from landmarks found on the face surface (nasion,
  tip, subnasale) and the training labels' rule.

Front-back "columns" run along the voxel axis closest to the anterior direction, so that the
same code serves any orientation, oblique grids and thick slices (sizes are taken in mm from the
affine). :func:`auricle_coverage` measures how much of a labelled auricle a distortion reached.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from . import LABELS

WORK_MM = 2.0  # the ear opening's grid (distance transforms) at most this coarse; the image's where coarser
EAR_OPENING_MM = 10.0  # the training labels open with 9 mm; a little more reaches the whole root
EAR_NEAR_MM = (30.0, 40.0, 50.0)  # neighbourhood semi-axes (x, y, z) around a detected ear
EAR_CORE_MM = 22.0  # a flap must reach this close to the detected centre
EYE_RADIUS_MM = 17.0  # as the training labels: globe, lids and periocular skin
ENVELOPE_WIDTH_MM = 36.0  # bumps (nose, lids) and pits (sockets) narrower than this are planed off
ENVELOPE_SMOOTH_MM = 4.0


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(0))


def axis_towards(affine: np.ndarray, world_axis: int) -> tuple[int, int]:
    """The voxel axis closest to world axis ``world_axis`` (0 x, 1 y, 2 z), and +1 if increasing
    index goes towards +world, else -1."""
    cosines = affine[world_axis, :3] / voxel_sizes(affine)
    axis = int(np.argmax(np.abs(cosines)))
    return axis, int(np.sign(cosines[axis]))


def world_box(shape, affine: np.ndarray, lo_mm, hi_mm, multiple=(1, 1, 1)) -> tuple[slice, ...]:
    """Voxel slices covering the world box ``lo_mm``..``hi_mm`` (clipped to the volume), each a
    whole number of ``multiple`` voxels long where the volume allows."""
    corners = np.array(list(itertools.product(*zip(lo_mm, hi_mm))), float)
    ijk = nib.affines.apply_affine(np.linalg.inv(affine), corners)
    start = np.clip(np.floor(ijk.min(0)).astype(int), 0, np.array(shape))
    stop = np.clip(np.ceil(ijk.max(0)).astype(int) + 1, 0, np.array(shape))
    out = []
    for a, b, m, n in zip(start, stop, multiple, shape):
        length = max(m, -(-(b - a) // m) * m) if b > a else 0
        a = max(0, min(a, n - length))
        out.append(slice(int(a), int(min(n, a + length))))
    return tuple(out)


def box_world(affine: np.ndarray, box: tuple[slice, ...], shape=None, step=(1, 1, 1)) -> np.ndarray:
    """World coordinates (..., 3) of the voxels (or blocks of ``step`` voxels) of ``box``."""
    step = np.asarray(step)
    n = shape if shape is not None else tuple((s.stop - s.start) // k for s, k in zip(box, step))
    centres = [s.start + (np.arange(m) * k + (k - 1) / 2.0) for s, m, k in zip(box, n, step)]
    grid = np.stack(np.meshgrid(*centres, indexing="ij"), -1)
    return nib.affines.apply_affine(affine, grid)


@dataclass(frozen=True)
class Head:
    """One head image as the extent finders see it.

    ``data``: intensities on the image grid (float32, 3D); ``affine``; ``threshold``: its air/skin
    threshold (:func:`.geometry.air_threshold`); ``coarse`` and ``coarse_affine``: the solid head
    (holes filled) on a coarse grid, e.g. the detector's 4 mm grid: it tells, where a crop cuts
    through the head, which side is head.
    """

    data: np.ndarray
    affine: np.ndarray
    threshold: float
    coarse: np.ndarray
    coarse_affine: np.ndarray

    def inside(self, world: np.ndarray) -> np.ndarray:
        """Whether world points (..., 3) lie in the coarse solid head (nearest coarse voxel)."""
        ijk = np.rint(nib.affines.apply_affine(np.linalg.inv(self.coarse_affine), world)).astype(int)
        ok = np.all((ijk >= 0) & (ijk < self.coarse.shape), axis=-1)
        out = np.zeros(ijk.shape[:-1], bool)
        out[ok] = self.coarse[tuple(ijk[ok].T)]
        return out


def coarse_solid_head(grid: np.ndarray, threshold: float) -> np.ndarray:
    """The solid head on a coarse grid: the largest component above ``threshold``, holes filled."""
    mask = grid > threshold
    lab, n = ndi.label(mask)
    if n == 0:
        return mask
    mask = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    return ndi.binary_fill_holes(mask)


# ----------------------------------------------------------------- ears


def _walled_fill(solid: np.ndarray, walls: np.ndarray, open_faces) -> np.ndarray:
    """``solid`` with its holes filled, where the crop's faces inside the volume count as ``walls``
    (head where the coarse head says so) and faces on the volume's edge as air."""
    pad = np.pad(solid, 1)
    wall = np.pad(walls, 1, mode="edge")
    for axis, (low_open, high_open) in enumerate(open_faces):
        for side, is_open in ((0, low_open), (-1, high_open)):
            if not is_open:
                index = [slice(None)] * 3
                index[axis] = side
                pad[tuple(index)] = wall[tuple(index)]
    return ndi.binary_fill_holes(pad)[1:-1, 1:-1, 1:-1]


def _fill_slices(mask: np.ndarray, axes) -> np.ndarray:
    # ear canals and air cells open to the outside only through thin gaps: fill slice by slice
    for axis in axes:
        moved = np.moveaxis(mask, axis, 0)
        for k in range(moved.shape[0]):
            if moved[k].any():
                moved[k] = ndi.binary_fill_holes(moved[k])
    return mask


def _distance_to_opened(solid: np.ndarray, sampling, radius: float, open_faces) -> np.ndarray:
    """Distance (mm) from each voxel to the head eroded by a ball of ``radius``: a voxel lies in
    the opening when this is at most ``radius``. Beyond the volume's edge is air."""
    pad = [(int(lo), int(hi)) for lo, hi in open_faces]
    padded = np.pad(solid, pad)
    eroded = ndi.distance_transform_edt(padded, sampling=sampling) > radius
    if not eroded.any():
        return np.full(solid.shape, np.inf, np.float32)
    distance = ndi.distance_transform_edt(~eroded, sampling=sampling).astype(np.float32)
    return distance[tuple(slice(lo, distance.shape[a] - hi) for a, (lo, hi) in enumerate(pad))]


def auricle(head: Head, centre_mm, *, opening_mm: float = EAR_OPENING_MM, near_mm=EAR_NEAR_MM,
            core_mm: float = EAR_CORE_MM, work_mm: float = WORK_MM) -> tuple[tuple[slice, ...], np.ndarray]:
    """The auricle around a detected ear at ``centre_mm`` (world): (voxel slices, mask on them).

    The mask holds the image's tissue voxels that the opening of the head removes, inside the
    ellipsoid ``near_mm`` around the centre, in the 26-connected pieces that come within
    ``core_mm`` of it.
    """
    data, affine = head.data, head.affine
    centre = np.asarray(centre_mm, float)
    zooms = voxel_sizes(affine)
    k = np.maximum(1, np.floor(work_mm / zooms + 1e-6)).astype(int)  # never coarser than work_mm
    near = np.asarray(near_mm, float)
    reach = near + 2 * opening_mm + 2 * float(np.max(zooms * k))
    box = world_box(data.shape, affine, centre - reach, centre + reach, multiple=k)
    blocks = np.array([(s.stop - s.start) // m for s, m in zip(box, k)])
    if np.any(blocks < 2):
        return box, np.zeros([s.stop - s.start for s in box], bool)
    fine = tuple(slice(s.start, s.start + n * m) for s, n, m in zip(box, blocks, k))
    # work grid: the voxel at the middle of each block of k (cheap; a thin pinna lost there only
    # widens the flap)
    solid = data[tuple(slice(s.start + m // 2, s.stop, m) for s, m in zip(fine, k))] > head.threshold
    lab, n = ndi.label(solid)
    if n == 0:
        return fine, np.zeros([s.stop - s.start for s in fine], bool)
    solid = lab == 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    solid |= ndi.binary_closing(solid, border_value=1)
    open_faces = [(s.start == 0, s.stop == n_) for s, n_ in zip(fine, data.shape)]
    solid = _walled_fill(solid, _coarse_on_blocks(head, fine, k, tuple(blocks)), open_faces)
    solid = _fill_slices(solid, {axis_towards(affine, 2)[0]})
    distance = _distance_to_opened(solid, zooms * k, opening_mm, open_faces)
    # at full resolution, only the neighbourhood's voxels in blocks that may lie outside the
    # opening (the distance changes by at most a block's diagonal within one block)
    diagonal = float(np.linalg.norm(zooms * k))
    near_box = world_box(data.shape, affine, centre - near - diagonal, centre + near + diagonal)
    near_box = tuple(slice(max(a.start, b.start), min(a.stop, b.stop)) for a, b in zip(near_box, fine))
    block_of = [np.clip((np.arange(s.start, s.stop) - f.start) // m, 0, n - 1)
                for s, f, m, n in zip(near_box, fine, k, blocks)]
    candidate = (distance > opening_mm - diagonal)[np.ix_(*block_of)]
    idx = np.argwhere(candidate & (data[near_box] > head.threshold))
    world = nib.affines.apply_affine(affine, idx + [s.start for s in near_box])
    within = (((world - centre) / near) ** 2).sum(-1) <= 1
    idx, world = idx[within], world[within]
    at = (idx + [s.start - f.start for s, f in zip(near_box, fine)] - (k - 1) / 2.0) / k
    flap = ndi.map_coordinates(distance, at.T, order=1, mode="nearest") > opening_mm
    idx, world = idx[flap], world[flap]
    mask = np.zeros([s.stop - s.start for s in near_box], bool)
    if idx.size == 0:
        return near_box, mask
    sub = tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(0), idx.max(0)))
    mask[tuple(idx.T)] = True
    lab, _ = ndi.label(mask[sub], structure=np.ones((3, 3, 3), bool))
    core = lab[tuple((idx[np.linalg.norm(world - centre, axis=-1) <= core_mm] - [s.start for s in sub]).T)]
    keep = np.unique(core[core > 0])
    mask[sub] = np.isin(lab, keep) if keep.size else False
    return near_box, mask


def _coarse_on_blocks(head: Head, box: tuple[slice, ...], k, blocks) -> np.ndarray:
    """The coarse solid head sampled (nearest) at the centres of ``box``'s blocks of ``k`` voxels."""
    to_block = np.diag(np.append(k, 1.0))
    to_block[:3, 3] = [s.start + (m - 1) / 2.0 for s, m in zip(box, k)]
    vox2vox = np.linalg.solve(head.coarse_affine, head.affine @ to_block)
    return ndi.affine_transform(head.coarse.astype(np.uint8), vox2vox[:3, :3], vox2vox[:3, 3], output_shape=blocks,
                                order=0, mode="constant", cval=0) > 0


def auricle_coverage(distorted: np.ndarray, ear_labels: np.ndarray) -> float:
    """The smallest fraction, over the labelled auricles, of an auricle's voxels that ``distorted``
    covers (:func:`auricle_coverages`); ``nan`` when ``ear_labels`` holds no ear."""
    return min(auricle_coverages(distorted, ear_labels), default=float("nan"))


def auricle_coverages(distorted: np.ndarray, ear_labels: np.ndarray) -> list[float]:
    """Per labelled auricle, the fraction of its voxels that ``distorted`` (bool, same grid) covers.

    ``ear_labels``: a bool mask of ear voxels, or a label image (ears = ``LABELS["ears"]``). The
    ear voxels form two auricles when they fall into two groups along their longest voxel axis
    (the left-right one: a gap of over a third of their span between the groups), else one.
    """
    ears = np.asarray(ear_labels)
    ears = ears if ears.dtype == bool else ears == LABELS["ears"]
    distorted = np.asarray(distorted, bool)
    if distorted.shape != ears.shape:
        raise ValueError(f"distorted mask {distorted.shape} and ear labels {ears.shape} differ in shape")
    idx = np.argwhere(ears)
    if idx.size == 0:
        return []
    span = idx.max(0) - idx.min(0)
    axis = int(np.argmax(span))
    occupied = np.unique(idx[:, axis])
    gaps = np.diff(occupied)
    hit = distorted[tuple(idx.T)]
    if gaps.size and gaps.max() > span[axis] / 3:
        cut = occupied[int(np.argmax(gaps))]
        sides = [idx[:, axis] <= cut, idx[:, axis] > cut]
        return [float(hit[side].mean()) for side in sides]
    return [float(hit.mean())]


# ----------------------------------------------------------------- face (eyes, nose)


def columns(mask: np.ndarray, front: tuple[int, int]) -> np.ndarray:
    """``mask`` as front-back columns: the front axis first, index 0 at the front (a view)."""
    axis, sign = front
    moved = np.moveaxis(mask, axis, 0)
    return moved[::-1] if sign > 0 else moved


def from_columns(cols: np.ndarray, front: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`columns`."""
    axis, sign = front
    return np.moveaxis(cols[::-1] if sign > 0 else cols, 0, axis)


def surface_depth(tissue_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the first tissue voxel of every column (front first), and which columns hold any.

    Specks of bright noise in the air are not the face: a voxel counts when the one behind it is
    tissue too (as a renderer that needs two voxels above threshold in a row).
    """
    solid = tissue_cols.copy()
    solid[:-1] &= tissue_cols[1:]
    return solid.argmax(axis=0), solid.any(axis=0)


def face_envelope(depth_mm: np.ndarray, hit: np.ndarray, pixel_mm, width_mm: float = ENVELOPE_WIDTH_MM,
                  smooth_mm: float = ENVELOPE_SMOOTH_MM) -> np.ndarray:
    """The face without its features: depth (mm, front first) of a smooth surface over a depth map.

    Bumps narrower than ``width_mm`` (nose, closed lids, brows) are planed off by a grey opening
    of the face's height with a disk, pits as narrow (eye sockets) filled by a closing, on a grid
    of about WORK_MM; the result is brought back to every column and smoothed (Gaussian of
    ``smooth_mm``). Columns without a surface take their nearest one's.
    """
    depth = np.asarray(depth_mm, np.float32)
    if not hit.all():
        if not hit.any():
            return depth.copy()
        nearest = ndi.distance_transform_edt(~hit, sampling=pixel_mm, return_distances=False, return_indices=True)
        depth = depth[tuple(nearest)]
    # a coarser grid spanning the same extent (so that the result does not depend on which
    # way the voxel axes run), blurred first against aliasing
    step = [max(1.0, WORK_MM / p) for p in pixel_mm]
    coarse_shape = [max(2, int(round(n / k))) for n, k in zip(depth.shape, step)]
    blurred = ndi.gaussian_filter(depth, [k / 2 if k > 1 else 0 for k in step], mode="nearest")
    coarse = ndi.zoom(blurred, [c / n for c, n in zip(coarse_shape, depth.shape)], order=1, mode="nearest", grid_mode=True)
    cell = [p * n / c for p, n, c in zip(pixel_mm, depth.shape, coarse_shape)]
    r = [width_mm / 2 / c for c in cell]
    y, x = np.ogrid[-int(r[0]):int(r[0]) + 1, -int(r[1]):int(r[1]) + 1]
    disk = (y / max(r[0], 1e-6)) ** 2 + (x / max(r[1], 1e-6)) ** 2 <= 1
    height = ndi.grey_closing(ndi.grey_opening(-coarse, footprint=disk, mode="nearest"), footprint=disk, mode="nearest")
    fine = ndi.zoom(-height, [n / c for n, c in zip(depth.shape, coarse_shape)], order=1, mode="nearest", grid_mode=True)
    return ndi.gaussian_filter(fine, [smooth_mm / p for p in pixel_mm], mode="nearest")


def _front_box(shape, affine, box: tuple[slice, ...], front) -> tuple[tuple[slice, ...], int]:
    """``box`` reaching along the front axis to the volume's front edge, and how many of its
    voxels along that axis lie in front of ``box``."""
    axis, sign = front
    out = list(box)
    if sign > 0:
        out[axis] = slice(box[axis].start, shape[axis])
        ahead = shape[axis] - box[axis].stop
    else:
        out[axis] = slice(0, box[axis].stop)
        ahead = box[axis].start
    return tuple(out), ahead


def head_in_box(head: Head, box: tuple[slice, ...], front: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Over ``box``: the voxels at or behind the first tissue voxel of their front-back column
    (the head with its dark cavities, as a camera in front of the face sees it), and the depth
    (voxels from the volume's front edge) of that first tissue voxel in each column (inf where
    the column holds none)."""
    reach, ahead = _front_box(head.data.shape, head.affine, box, front)
    cols = columns(head.data[reach] > head.threshold, front)
    first, hit = surface_depth(cols)
    first = np.where(hit, first, np.inf)
    index = np.arange(ahead, cols.shape[0]).reshape(-1, 1, 1)
    return from_columns(index >= first[None], front), first


def _world_of(affine: np.ndarray, box: tuple[slice, ...], idx: np.ndarray) -> np.ndarray:
    return nib.affines.apply_affine(affine, idx + [s.start for s in box])


def eye_region(head: Head, centre_mm, front: tuple[int, int], radius_mm: float = EYE_RADIUS_MM):
    """The eye at ``centre_mm`` with its lids and periocular skin: (voxel slices, mask on them)."""
    centre = np.asarray(centre_mm, float)
    box = world_box(head.data.shape, head.affine, centre - radius_mm, centre + radius_mm)
    inside, _ = head_in_box(head, box, front)
    idx = np.argwhere(inside)
    far = np.linalg.norm(_world_of(head.affine, box, idx) - centre, axis=-1) > radius_mm
    inside[tuple(idx[far].T)] = False
    return box, inside
