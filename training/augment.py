"""Seeded, composable augmentations that turn a handful of heads into endless training samples.

A sample is drawn in two steps. The spatial step moves the head (rotation, flip, scale, shear,
shift) and samples image and labels onto the network grid in one resampling per volume, so
labels stay aligned with the image by construction. The intensity steps then act on the
grid image only: contrast changes (T2w/PD/FLAIR-like), gamma, bias field, blur, thick slices,
Gaussian and Rician noise; a field-of-view cut removes image and labels together.
Every transform takes an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from bids_deface.features.geometry import head_mask, resample
from bids_deface.features.preprocess import GRID_MM, GRID_SHAPE, grid_affine, normalise, sample_to_grid

Transform = Callable[[np.random.Generator, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class TrainingHead:
    """A head on a 1 mm RAS grid with its labels and its world bounding box."""

    name: str
    data: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def from_arrays(cls, name, data, labels, affine) -> "TrainingHead":
        idx = np.argwhere(head_mask(data)[::2, ::2, ::2]) * 2
        lo = affine[:3, :3] @ idx.min(0) + affine[:3, 3]
        hi = affine[:3, :3] @ idx.max(0) + affine[:3, 3]
        return cls(name, data.astype(np.float32), labels.astype(np.uint8), affine, lo, hi)


@dataclass
class SpatialConfig:
    max_roll_deg: float = 20.0  # about the anterior axis
    max_pitch_deg: float = 35.0  # nodding, about the left-right axis
    max_yaw_deg: float = 25.0  # about the vertical axis
    scale: tuple[float, float] = (0.9, 1.1)
    max_shear: float = 0.08
    max_shift_mm: float = 12.0
    grid_jitter_mm: float = 10.0
    flip_probability: float = 0.5


def _rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def random_head_motion(rng: np.random.Generator, centre: np.ndarray, cfg: SpatialConfig) -> np.ndarray:
    """A world-space 4×4 affine that moves the head (rotate/flip/scale/shear about its centre, shift)."""
    rx, ry, rz = np.deg2rad([rng.uniform(-cfg.max_pitch_deg, cfg.max_pitch_deg),
                             rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg),
                             rng.uniform(-cfg.max_yaw_deg, cfg.max_yaw_deg)])
    linear = _rotation(rx, ry, rz)
    linear = linear @ np.diag(rng.uniform(*cfg.scale, size=3))
    shear = np.eye(3)
    shear[np.triu_indices(3, 1)] = rng.uniform(-cfg.max_shear, cfg.max_shear, size=3)
    linear = linear @ shear
    if rng.random() < cfg.flip_probability:
        linear = linear @ np.diag([-1.0, 1.0, 1.0])
    motion = np.eye(4)
    motion[:3, :3] = linear
    motion[:3, 3] = centre - linear @ centre + rng.uniform(-cfg.max_shift_mm, cfg.max_shift_mm, size=3)
    return motion


def coarse_labels(labels: np.ndarray, src_affine: np.ndarray, net_affine: np.ndarray, world_to_src: np.ndarray) -> np.ndarray:
    """Labels on the network grid: a 4 mm voxel takes the feature filling ≥ 2 of its 8 sub-voxels.

    (Thin ears would vanish under a majority vote; the full-resolution refinement trims the
    coarse labels back to the feature.)"""
    fine = net_affine.copy()
    fine[:3, :3] /= 2
    fine[:3, 3] -= np.diag(net_affine)[:3] / 4
    shape2 = tuple(2 * s for s in GRID_SHAPE)
    lab2 = np.rint(resample(labels, src_affine, shape2, world_to_src @ fine, order=0)).astype(np.uint8)
    blocks = lab2.reshape(GRID_SHAPE[0], 2, GRID_SHAPE[1], 2, GRID_SHAPE[2], 2)
    counts = np.stack([(blocks == c).sum(axis=(1, 3, 5)) for c in range(4)])
    fg = counts[1:].argmax(0) + 1
    return np.where(counts[1:].max(0) >= 2, fg, 0).astype(np.uint8)


def spatial_sample(rng: np.random.Generator, head: TrainingHead, cfg: SpatialConfig) -> tuple[np.ndarray, np.ndarray]:
    """Move the head at random and sample (image, labels) on the network grid placed over it."""
    centre = (head.lo + head.hi) / 2
    motion = random_head_motion(rng, centre, cfg)
    corners = np.array([[x, y, z, 1.0] for x in (head.lo[0], head.hi[0]) for y in (head.lo[1], head.hi[1])
                        for z in (head.lo[2], head.hi[2])])
    moved = (motion @ corners.T).T[:, :3]
    # the box of moved corners overestimates a rotated head: shrink it towards the centre a little
    lo, hi = moved.min(0), moved.max(0)
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    top_fraction = 0.85 + 0.15 * rng.random()
    lo, hi = mid - half * top_fraction, mid + half * top_fraction
    net_affine = grid_affine(lo, hi)
    net_affine[:3, 3] += rng.uniform(-cfg.grid_jitter_mm, cfg.grid_jitter_mm, size=3)
    world_to_src = np.linalg.inv(motion)
    image = sample_to_grid(head.data, head.affine, net_affine, world_to_src)
    labels = coarse_labels(head.labels, head.affine, net_affine, world_to_src)
    return image, labels


# ---- intensity and field-of-view transforms on the grid: (rng, image, labels) -> (image, labels)

def contrast_change(rng, image, labels):
    """A random intensity look-up table that keeps air dark: T2w/PD/FLAIR-like contrasts from T1w."""
    x = normalise(image)
    knots = np.linspace(0, 1.5, 7)
    values = np.concatenate([[0.0], rng.uniform(0.05, 1.0, size=6)])
    if rng.random() < 0.5:  # inverted tissue order (T2-like): bright fluid, darker white matter
        values[2:] = np.sort(values[2:])[::-1]
    return np.interp(x, knots, values).astype(np.float32), labels


def gamma(rng, image, labels):
    x = normalise(image)
    return np.power(x, float(np.exp(rng.normal(0, 0.3)))).astype(np.float32), labels


def bias_field(rng, image, labels):
    coarse = rng.normal(0, 0.25, size=(4, 4, 4))
    field = ndi.zoom(coarse, np.array(image.shape) / 4, order=3)
    return (image * np.exp(field)).astype(np.float32), labels


def blur(rng, image, labels):
    return ndi.gaussian_filter(image, sigma=rng.uniform(0.3, 1.2)).astype(np.float32), labels


def thick_slices(rng, image, labels):
    """Resolution loss along one axis, as from thick 2D slices (factor 2-4)."""
    axis = int(rng.integers(3))
    factor = float(rng.uniform(2, 4))
    zoom = np.ones(3)
    zoom[axis] = 1 / factor
    low = ndi.zoom(image, zoom, order=1)
    back = ndi.zoom(low, np.array(image.shape) / np.array(low.shape), order=1)
    return back[: image.shape[0], : image.shape[1], : image.shape[2]].astype(np.float32), labels


def gaussian_noise(rng, image, labels):
    x = normalise(image)
    return (x + rng.normal(0, rng.uniform(0.01, 0.06), size=x.shape)).astype(np.float32), labels


def rician_noise(rng, image, labels):
    x = normalise(image)
    s = rng.uniform(0.01, 0.06)
    return np.sqrt((x + rng.normal(0, s, x.shape)) ** 2 + rng.normal(0, s, x.shape) ** 2).astype(np.float32), labels


def fov_cut(rng, image, labels):
    """Cut the field of view: neck, vertex, face or one side, removing image and labels beyond."""
    image, labels = image.copy(), labels.copy()
    side = rng.choice(["inferior", "superior", "anterior", "left", "right"], p=[0.35, 0.15, 0.25, 0.125, 0.125])
    fg = np.argwhere(labels > 0)
    axis, keep_low = {"inferior": (2, False), "superior": (2, True), "anterior": (1, True),
                      "left": (0, False), "right": (0, True)}[side]
    n = image.shape[axis]
    if side in ("anterior", "left", "right") and fg.size:
        # cut through the outermost features: the face or an ear then touches the edge
        edge = fg[:, axis].max() if keep_low else fg[:, axis].min()
        cut = int(np.clip(edge + (-1 if keep_low else 1) * rng.integers(0, 4), 1, n - 1))
    elif side == "inferior":
        cut = int(rng.integers(2, n // 3))
    else:
        cut = int(rng.integers(n - 6, n))
    index = [slice(None)] * 3
    index[axis] = slice(cut, None) if keep_low else slice(0, cut)
    image[tuple(index)] = image.min()
    labels[tuple(index)] = 0
    return image, labels


@dataclass
class RandomApply:
    transform: Transform
    probability: float

    def __call__(self, rng, image, labels):
        if rng.random() < self.probability:
            return self.transform(rng, image, labels)
        return image, labels


@dataclass
class Compose:
    transforms: list

    def __call__(self, rng, image, labels):
        for t in self.transforms:
            image, labels = t(rng, image, labels)
        return image, labels


def default_intensity_pipeline() -> Compose:
    return Compose([
        RandomApply(fov_cut, 0.35),
        RandomApply(contrast_change, 0.35),
        RandomApply(gamma, 0.4),
        RandomApply(bias_field, 0.5),
        RandomApply(blur, 0.2),
        RandomApply(thick_slices, 0.2),
        RandomApply(gaussian_noise, 0.3),
        RandomApply(rician_noise, 0.2),
    ])


def draw_sample(rng: np.random.Generator, heads: list[TrainingHead], spatial: SpatialConfig | None = None,
                intensity: Compose | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One augmented (normalised image, labels) pair on the network grid."""
    head = heads[int(rng.integers(len(heads)))]
    image, labels = spatial_sample(rng, head, spatial or SpatialConfig())
    image, labels = (intensity or default_intensity_pipeline())(rng, image, labels)
    return normalise(image), labels


