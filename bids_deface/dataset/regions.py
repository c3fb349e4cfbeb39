"""The distorted regions as the shared output may keep them: the group report's session overlay.

Per feature, the region its operator may change (:func:`bids_deface.distort.distortion_regions`)
begins at the face's *original* surface: kept as it is, it would give the nose back. What is kept
instead (``logs/images/<image>_regions.npz``, beside the image's record) is its trace on a
world-aligned lattice of :data:`LATTICE_MM` (a cell belongs to it when at least half of the image's
voxels in it do), swept outward, away from the head's centre along the nearest world axis, up to
the edge of the field of view. The swept mask keeps the region's footprint (where on the head it
lies) and its inner boundary (the new surface, which the defaced image shows anyway), never its
outer boundary: it holds no surface that the defaced image does not already show.

The lattice is anchored at the scanner's origin, so the images of a session put their masks on
one lattice; another image's mask is carried into the reference's space with the session's
registration (:func:`in_reference_space`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

LATTICE_MM = 3.0
MIN_FRACTION = 0.5  # of the image's voxels in a cell
LARGE_PART = 0.2  # of a feature's largest part: smaller parts are specks of a large one


def regions_relpath(record_relpath: str) -> str:
    """``logs/images/<image>_regions.npz`` beside the image's record ``logs/images/<image>.json``."""
    return record_relpath.removesuffix(".json") + "_regions.npz"


@dataclass
class KeptRegions:
    """Swept region masks on the lattice over one image's field of view."""

    origin: np.ndarray  # (3,) int: lattice index of masks[...][0, 0, 0]
    fov: np.ndarray  # bool (lattice): cells whose centre lies in the image's field of view
    masks: dict  # feature -> bool (lattice), swept

    def save(self, path: str | Path) -> None:
        shape = np.array(self.fov.shape)
        with open(path, "wb") as f:  # (a file object: numpy adds no .npz to a temporary name)
            np.savez_compressed(f, origin=self.origin, shape=shape, lattice_mm=LATTICE_MM,
                                fov=np.packbits(self.fov), features=np.array(sorted(self.masks)),
                                **{f"mask_{name}": np.packbits(mask) for name, mask in self.masks.items()})

    @classmethod
    def load(cls, path: str | Path) -> "KeptRegions":
        z = np.load(path)
        shape = tuple(int(n) for n in z["shape"])
        if float(z["lattice_mm"]) != LATTICE_MM:
            raise ValueError(f"{Path(path).name}: lattice of {float(z['lattice_mm'])} mm, not {LATTICE_MM}")

        def bits(name):
            return np.unpackbits(z[name])[: int(np.prod(shape))].reshape(shape).astype(bool)

        return cls(z["origin"].astype(int), bits("fov"), {str(f): bits(f"mask_{f}") for f in z["features"]})

def _fov(shape, affine) -> tuple[np.ndarray, np.ndarray]:
    """(origin, field-of-view mask) of the lattice over an image's grid."""
    corners = np.array([[i, j, k] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1) for k in (0, shape[2] - 1)])
    world = nib.affines.apply_affine(affine, corners)
    lo, hi = np.floor(world.min(0) / LATTICE_MM).astype(int), np.ceil(world.max(0) / LATTICE_MM).astype(int)
    vox = lattice_mapped(np.linalg.inv(affine), lo, tuple(hi - lo + 1))
    inside = np.all((vox >= -0.5) & (vox <= np.asarray(shape[:3]) - 0.5), axis=-1)
    return lo, inside


def _bounds(mask: np.ndarray):
    """(first, last + 1) voxel index of ``mask`` along each axis; (None, None) when empty."""
    spans = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None, None
        spans.append((hit[0], hit[-1] + 1))
    return np.array([a for a, _ in spans]), np.array([b for _, b in spans])


def _cells(region: np.ndarray, affine, origin, shape) -> np.ndarray:
    """The lattice cells (bool, lattice over the field of view) at least half in ``region``: its
    block means of about a cell, sampled at the cells' centres."""
    from bids_deface.features.registration import block_mean

    lo, hi = _bounds(region)
    if lo is None:
        return np.zeros(shape, bool)
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(0))
    k = np.maximum(1, np.round(LATTICE_MM / zooms)).astype(int)
    lo = np.maximum((lo // k - 1) * k, 0)  # block-aligned: a block never straddles the box
    hi = np.minimum(hi + 2 * k, region.shape)
    box_affine = np.asarray(affine, float).copy()
    box_affine[:3, 3] = nib.affines.apply_affine(affine, lo)
    frac, frac_affine = block_mean(region[tuple(slice(a, b) for a, b in zip(lo, hi))].view(np.uint8),
                                   box_affine, LATTICE_MM)
    corners = np.array([[i, j, m] for i in (0, frac.shape[0] - 1) for j in (0, frac.shape[1] - 1)
                        for m in (0, frac.shape[2] - 1)])
    world = nib.affines.apply_affine(frac_affine, corners)
    first = np.clip(np.floor(world.min(0) / LATTICE_MM).astype(int) - 1 - origin, 0, shape)
    last = np.clip(np.ceil(world.max(0) / LATTICE_MM).astype(int) + 2 - origin, 0, shape)
    out = np.zeros(shape, bool)
    if np.any(last <= first):
        return out
    vox = lattice_mapped(np.linalg.inv(frac_affine), first + origin, tuple(last - first))
    inside = ndi.map_coordinates(frac, vox.reshape(-1, 3).T, order=1, mode="constant", cval=0.0) >= MIN_FRACTION
    out[tuple(slice(a, b) for a, b in zip(first, last))] = inside.reshape(tuple(last - first))
    return out


def _swept(cells: np.ndarray, fov: np.ndarray, origin, centre_mm) -> np.ndarray:
    """Each large connected part of ``cells`` (an ear, the face) swept outward to the edge of the
    field of view: away from ``centre_mm`` along the lattice axis nearest to that direction."""
    out = np.zeros(cells.shape, bool)
    lo, hi = _bounds(cells)
    if lo is None:
        return out
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    parts, n = ndi.label(cells[box], structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(parts.ravel(), minlength=n + 1)[1:]
    centroids = np.asarray(ndi.center_of_mass(cells[box], parts, np.arange(1, n + 1))).reshape(n, 3) + lo
    large = np.nonzero(sizes >= LARGE_PART * sizes.max())[0]
    for part in range(n):  # a speck goes the way of the nearest large part (the ear or the face it belongs to)
        lead = large[np.argmin(np.linalg.norm(centroids[large] - centroids[part], axis=1))]
        mask = np.zeros(cells.shape, bool)
        mask[box] = parts == part + 1
        away = (centroids[lead] + origin) * LATTICE_MM - np.asarray(centre_mm)
        axis = int(np.argmax(np.abs(away)))
        if away[axis] >= 0:
            out |= np.logical_or.accumulate(mask, axis=axis)
        else:
            out |= np.flip(np.logical_or.accumulate(np.flip(mask, axis), axis=axis), axis)
    return out & fov


def keep_regions(regions: dict, affine, centre_mm) -> KeptRegions:
    """``regions`` (feature -> bool mask on the grid of ``affine``) as the output keeps them;
    ``centre_mm``: the head's centre (world), from which every region is swept away."""
    shape = next(iter(regions.values())).shape[:3]
    origin, fov = _fov(shape, affine)
    return KeptRegions(origin, fov, {name: _swept(_cells(region, affine, origin, fov.shape), fov, origin, centre_mm)
                                     for name, region in regions.items()})


def head_centre_mm(brain: np.ndarray | None, affine, shape) -> np.ndarray:
    """The brain's centroid (world mm), or the field of view's centre without a brain mask."""
    if brain is not None and np.any(brain):
        index = np.argwhere(np.asarray(brain).reshape(shape[:3])).mean(0)
    else:
        index = (np.asarray(shape[:3]) - 1) / 2
    return nib.affines.apply_affine(affine, index)


def lattice_mapped(matrix, origin, shape) -> np.ndarray:
    """``matrix @ p`` for the centre ``p`` (world mm) of every cell of a lattice block (its first
    cell ``origin``, its ``shape``): shape (*shape, 3), by broadcasting (the lattice is regular)."""
    matrix = np.asarray(matrix, float)
    out = np.broadcast_to(matrix[:3, :3] @ (np.asarray(origin) * LATTICE_MM) + matrix[:3, 3], (*shape, 3)).copy()
    for axis in range(3):
        steps = np.arange(shape[axis])[:, None] * (matrix[:3, axis] * LATTICE_MM)[None, :]
        out += steps.reshape([shape[axis] if a == axis else 1 for a in range(3)] + [3])
    return out


def in_reference_space(kept: KeptRegions, reference: KeptRegions, reference_to_image) -> KeptRegions:
    """``kept`` (an image's) on ``reference``'s lattice: each reference cell centre ``p`` takes the
    image's cell at ``reference_to_image @ p`` (nearest); ``fov`` is the image's field of view seen
    from the reference (outside it, the image says nothing)."""
    cell = np.floor(lattice_mapped(reference_to_image, reference.origin, reference.fov.shape) / LATTICE_MM
                    + 0.5).astype(int)
    cell -= kept.origin
    ok = np.all((cell >= 0) & (cell < kept.fov.shape), axis=-1)
    flat = np.where(ok, np.ravel_multi_index(tuple(np.clip(cell[..., a], 0, kept.fov.shape[a] - 1) for a in range(3)),
                                             kept.fov.shape), 0)

    def pull(mask):
        return mask.ravel()[flat] & ok

    return KeptRegions(reference.origin, pull(kept.fov), {name: pull(mask) for name, mask in kept.masks.items()})


def dice(a: np.ndarray, b: np.ndarray, within: np.ndarray) -> float | None:
    """Dice of two masks within ``within`` (None when both are empty there)."""
    a, b = a & within, b & within
    both = int(a.sum() + b.sum())
    return 2 * int((a & b).sum()) / both if both else None
