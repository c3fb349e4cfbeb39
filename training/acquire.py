"""Simulated acquisitions: the grid a scanner would have sampled the (moved, deformed) head on.

An :class:`Acquisition` is a voxel grid in any orientation (oblique to the head and to RAS),
with in-plane voxels and a slice thickness of 1–7 mm along one of its axes. Each slice
integrates the head over its thickness (box slice profile: the mean of sub-slices), which is
what makes thick-slice images look smeared when they are resampled onto another grid; the
detector then sees the image exactly as it would see a real one, through its own resampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .contrast import Renderer
from .deform import Warp, grid_points, rotation


@dataclass
class AcquisitionConfig:
    probability: float = 0.45
    thickness_mm: tuple[float, float] = (1.0, 7.0)
    in_plane_mm: float = 2.0  # on the training path the network sees 4 mm voxels anyway
    oblique_probability: float = 0.5
    max_oblique_deg: float = 30.0


@dataclass
class Acquisition:
    shape: tuple[int, int, int]
    affine: np.ndarray  # voxel -> world, columns scaled by the voxel sizes
    slice_axis: int
    thickness_mm: float
    in_plane_mm: float


def covering_acquisition(lo: np.ndarray, hi: np.ndarray, orientation: np.ndarray, slice_axis: int,
                         thickness_mm: float, in_plane_mm: float) -> Acquisition:
    """The grid of the given orientation (3×3 rotation) and voxel sizes that covers the box lo..hi."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    frame = corners @ orientation  # corner coordinates along the grid's axes
    f_lo, f_hi = frame.min(0), frame.max(0)
    voxel = np.full(3, in_plane_mm)
    voxel[slice_axis] = thickness_mm
    shape = tuple(int(np.ceil((b - a) / v)) + 1 for a, b, v in zip(f_lo, f_hi, voxel))
    affine = np.eye(4)
    affine[:3, :3] = orientation @ np.diag(voxel)
    affine[:3, 3] = orientation @ f_lo
    return Acquisition(shape, affine, slice_axis, float(thickness_mm), float(in_plane_mm))


def random_acquisition(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray, cfg: AcquisitionConfig) -> Acquisition:
    orientation = np.eye(3)
    if rng.random() < cfg.oblique_probability:
        angles = np.deg2rad(rng.uniform(-cfg.max_oblique_deg, cfg.max_oblique_deg, size=3))
        orientation = rotation(*angles)
    return covering_acquisition(lo, hi, orientation, int(rng.integers(3)), float(rng.uniform(*cfg.thickness_mm)),
                                cfg.in_plane_mm)


def acquire(render: Renderer, warp: Warp, acq: Acquisition) -> np.ndarray:
    """Intensities on the acquisition grid, each slice the mean over its thickness."""
    n_sub = max(1, int(round(acq.thickness_mm / acq.in_plane_mm)))
    image = None
    for f in (np.arange(n_sub) + 0.5) / n_sub - 0.5:
        offset = [0.0, 0.0, 0.0]
        offset[acq.slice_axis] = float(f)
        x, y, z = grid_points(acq.shape, acq.affine, offset)
        part = render(warp.source_coords(x, y, z))
        image = part if image is None else image + part
    return (image / n_sub).astype(np.float32)


def onto_grid(image: np.ndarray, acq: Acquisition, shape, affine: np.ndarray) -> np.ndarray:
    """An acquired image resampled (trilinear) onto another grid, as the detector does."""
    vox2vox = np.linalg.solve(acq.affine, affine)
    return ndi.affine_transform(image, vox2vox[:3, :3], vox2vox[:3, 3], output_shape=tuple(shape), order=1,
                                mode="constant", cval=float(image.min()))
