"""Seeded, composable synthesis that turns a handful of heads into endless training samples.

A sample is drawn in two steps. The spatial step moves the head (rotation, flip, scale, shear,
shift), deforms it elastically (``training.deform``), gives it the head's own or a
domain-randomised contrast (``training.contrast``), optionally acquires it on an oblique grid
with 1–7 mm slices (``training.acquire``), and samples image and labels onto the network grid
through the same coordinates, so labels stay aligned with the image by construction. The
intensity steps then act on the grid image only: contrast look-up tables, gamma, bias field,
blur, Gaussian and Rician noise; field-of-view cuts (by the grid's planes or an oblique plane)
remove image and labels together. Every transform takes an explicit ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy import ndimage as ndi

from bids_deface.features.geometry import head_mask, resample
from bids_deface.features.preprocess import GRID_MM, GRID_SHAPE, grid_affine, normalise
from .acquire import AcquisitionConfig, acquire, onto_grid, random_acquisition
from .contrast import ContrastConfig, random_renderer
from .deform import ElasticConfig, grid_points, random_warp, rotation

Transform = Callable[[np.random.Generator, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class TrainingHead:
    """A head on a 1 mm RAS grid with its labels, tissue map and world bounding box."""

    name: str
    data: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    tissue: np.ndarray | None = None  # training.tissue classes, for synthetic contrasts

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


@dataclass
class SynthConfig:
    """What the spatial step synthesises beyond moving the head; ``None`` turns a part off."""

    elastic: ElasticConfig | None = field(default_factory=ElasticConfig)
    contrast: ContrastConfig | None = field(default_factory=ContrastConfig)
    acquisition: AcquisitionConfig | None = field(default_factory=AcquisitionConfig)


def random_head_motion(rng: np.random.Generator, centre: np.ndarray, cfg: SpatialConfig) -> np.ndarray:
    """A world-space 4×4 affine that moves the head (rotate/flip/scale/shear about its centre, shift)."""
    rx, ry, rz = np.deg2rad([rng.uniform(-cfg.max_pitch_deg, cfg.max_pitch_deg),
                             rng.uniform(-cfg.max_roll_deg, cfg.max_roll_deg),
                             rng.uniform(-cfg.max_yaw_deg, cfg.max_yaw_deg)])
    linear = rotation(rx, ry, rz)
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


def fine_grid(net_affine: np.ndarray) -> tuple[tuple[int, int, int], np.ndarray]:
    """The 2 mm grid whose 2×2×2 blocks are the network grid's 4 mm voxels."""
    fine = net_affine.copy()
    fine[:3, :3] /= 2
    fine[:3, 3] -= np.diag(net_affine)[:3] / 4
    return tuple(2 * s for s in GRID_SHAPE), fine


def block_mean(fine: np.ndarray) -> np.ndarray:
    return fine.reshape(GRID_SHAPE[0], 2, GRID_SHAPE[1], 2, GRID_SHAPE[2], 2).mean(axis=(1, 3, 5)).astype(np.float32)


def coarse_from_fine(lab2: np.ndarray) -> np.ndarray:
    """Labels on the network grid: a 4 mm voxel takes the feature filling ≥ 2 of its 8 sub-voxels.

    (Thin ears would vanish under a majority vote; the full-resolution refinement trims the
    coarse labels back to the feature.)"""
    blocks = lab2.reshape(GRID_SHAPE[0], 2, GRID_SHAPE[1], 2, GRID_SHAPE[2], 2)
    counts = np.stack([(blocks == c).sum(axis=(1, 3, 5)) for c in range(4)])
    fg = counts[1:].argmax(0) + 1
    return np.where(counts[1:].max(0) >= 2, fg, 0).astype(np.uint8)


def coarse_labels(labels: np.ndarray, src_affine: np.ndarray, net_affine: np.ndarray, world_to_src: np.ndarray) -> np.ndarray:
    """Network-grid labels of a label image moved by ``world_to_src`` (see coarse_from_fine)."""
    shape2, fine = fine_grid(net_affine)
    lab2 = np.rint(resample(labels, src_affine, shape2, world_to_src @ fine, order=0)).astype(np.uint8)
    return coarse_from_fine(lab2)


def place_grid(rng: np.random.Generator, head: TrainingHead, cfg: SpatialConfig):
    """Random head motion and the network grid placed over the moved head (with jitter)."""
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
    return motion, net_affine, (lo, hi)


def spatial_sample(rng: np.random.Generator, head: TrainingHead, cfg: SpatialConfig,
                   synth: SynthConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Move (and with ``synth`` deform, re-contrast, re-acquire) the head; (image, labels) on the grid."""
    motion, net_affine, (lo, hi) = place_grid(rng, head, cfg)
    shape2, fine = fine_grid(net_affine)
    cube_lo = fine[:3, 3] - 1.0
    cube_size = GRID_SHAPE[0] * GRID_MM + 2.0
    warp = random_warp(rng, head.affine, np.linalg.inv(motion), cube_lo, cube_size, synth and synth.elastic)
    render = random_renderer(rng, head.data, head.tissue, synth and synth.contrast)
    coords = warp.source_coords(*grid_points(shape2, fine))
    acq_cfg = synth and synth.acquisition
    if acq_cfg and rng.random() < acq_cfg.probability:
        # the acquisition covers the moved head's box within the sampled cube
        acq = random_acquisition(rng, np.maximum(lo - 10, cube_lo), np.minimum(hi + 10, cube_lo + cube_size), acq_cfg)
        image2 = onto_grid(acquire(render, warp, acq), acq, shape2, fine)
    else:
        image2 = render(coords)
    lab2 = ndi.map_coordinates(head.labels, coords, order=0, mode="constant", cval=0)
    return block_mean(image2), coarse_from_fine(lab2)


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


def oblique_cut(rng, image, labels):
    """Cut by a plane at a random angle through a random feature: an oblique field of view whose
    edge runs through the face or an ear (image set to air, labels removed beyond the plane)."""
    fg = np.argwhere(labels > 0)
    if not fg.size:
        return image, labels
    point = fg[rng.integers(len(fg))] + rng.uniform(-3, 3, size=3)
    normal = rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    i, j, k = np.ogrid[: image.shape[0], : image.shape[1], : image.shape[2]]
    beyond = (i - point[0]) * normal[0] + (j - point[1]) * normal[1] + (k - point[2]) * normal[2] > 0
    image, labels = image.copy(), labels.copy()
    image[beyond] = image.min()
    labels[beyond] = 0
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
        RandomApply(fov_cut, 0.3),
        RandomApply(oblique_cut, 0.1),
        RandomApply(contrast_change, 0.35),
        RandomApply(gamma, 0.4),
        RandomApply(bias_field, 0.5),
        RandomApply(blur, 0.2),
        RandomApply(gaussian_noise, 0.3),
        RandomApply(rician_noise, 0.2),
    ])


def draw_sample(rng: np.random.Generator, heads: list[TrainingHead], spatial: SpatialConfig | None = None,
                intensity: Compose | None = None, synth: SynthConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One synthesised (normalised image, labels) pair on the network grid."""
    head = heads[int(rng.integers(len(heads)))]
    image, labels = spatial_sample(rng, head, spatial or SpatialConfig(), synth or SynthConfig())
    image, labels = (intensity or default_intensity_pipeline())(rng, image, labels)
    return normalise(image), labels


