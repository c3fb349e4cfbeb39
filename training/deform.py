"""Random smooth (elastic) deformations of a head, composed with its rigid/affine motion.

A :class:`Warp` maps points of the output world (where a sample is drawn) to voxel
coordinates of the source head: ``src = world_to_src @ (p + u(p))``, with ``u`` a smooth
displacement field in mm. Image, labels and tissue map of a sample are all read through the
same coordinates, so labels move with the anatomy by construction. The field is the sum of a
coarse one (head and face proportions: a longer nose, a flatter face, ears set further out) and
a finer one (local shape), each drawn as random displacements on a control grid and smoothed by
cubic interpolation; the amplitudes keep the map free of folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

FIELD_SPACING_MM = 8.0  # the displacement field is stored at this spacing and read trilinearly


@dataclass
class ElasticConfig:
    probability: float = 0.7
    coarse_points: int = 4  # control points per axis over the sampled cube (~80 mm apart)
    coarse_max_mm: float = 7.0  # standard deviation of the coarse displacements, drawn up to this
    fine_points: int = 8  # ~35 mm apart
    fine_max_mm: float = 2.5


@dataclass
class Warp:
    """World points -> source voxel coordinates, through an optional displacement field."""

    src_affine: np.ndarray  # source voxel -> source world
    world_to_src: np.ndarray  # output world -> source world (inverse head motion)
    field: np.ndarray | None = None  # (3, n, n, n) displacement in mm, on field_affine's grid
    field_affine: np.ndarray | None = None

    def displacement(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> list[np.ndarray]:
        """u(p) in mm at world points given as three equally shaped arrays."""
        if self.field is None:
            return [np.zeros_like(x)] * 3
        inv = np.linalg.inv(self.field_affine)
        idx = [inv[a, 0] * x + inv[a, 1] * y + inv[a, 2] * z + inv[a, 3] for a in range(3)]
        return [ndi.map_coordinates(self.field[c], idx, order=1, mode="nearest") for c in range(3)]

    def source_coords(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Source voxel coordinates, shape (3, *x.shape), of world points (x, y, z)."""
        u = self.displacement(x, y, z)
        p = [x + u[0], y + u[1], z + u[2]]
        m = np.linalg.solve(self.src_affine, self.world_to_src)
        return np.stack([(m[a, 0] * p[0] + m[a, 1] * p[1] + m[a, 2] * p[2] + m[a, 3]).astype(np.float32)
                         for a in range(3)])


def rotation(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix: about x (pitch), then y (roll), then z (yaw), radians."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return Rz @ Ry @ Rx


def grid_points(shape, affine: np.ndarray, offset_vox=(0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World coordinates (x, y, z arrays of ``shape``) of a grid's voxels, optionally offset."""
    i, j, k = (np.arange(n, dtype=np.float32) + o for n, o in zip(shape, offset_vox))
    i, j, k = i[:, None, None], j[None, :, None], k[None, None, :]
    return tuple((affine[a, 0] * i + affine[a, 1] * j + affine[a, 2] * k + affine[a, 3]).astype(np.float32)
                 for a in range(3))


def _smooth_field(rng: np.random.Generator, points: int, max_mm: float, n_out: int) -> np.ndarray:
    sigma = rng.uniform(0, max_mm)
    control = rng.normal(0, sigma, size=(3, points, points, points))
    return np.stack([ndi.zoom(c, n_out / points, order=3, mode="nearest") for c in control])


def random_field(rng: np.random.Generator, lo: np.ndarray, size_mm: float, cfg: ElasticConfig) -> tuple[np.ndarray, np.ndarray]:
    """A random smooth displacement field over the cube ``lo`` .. ``lo + size_mm``."""
    n = int(np.ceil(size_mm / FIELD_SPACING_MM)) + 1
    field = (_smooth_field(rng, cfg.coarse_points, cfg.coarse_max_mm, n)
             + _smooth_field(rng, cfg.fine_points, cfg.fine_max_mm, n)).astype(np.float32)
    affine = np.diag([FIELD_SPACING_MM] * 3 + [1.0])
    affine[:3, 3] = lo
    return field, affine


def random_warp(rng: np.random.Generator, src_affine: np.ndarray, world_to_src: np.ndarray,
                lo: np.ndarray, size_mm: float, cfg: ElasticConfig | None) -> Warp:
    """The head motion, plus (with ``cfg.probability``) a random elastic field over the cube."""
    if cfg is None or rng.random() >= cfg.probability:
        return Warp(src_affine, world_to_src)
    field, field_affine = random_field(rng, lo, size_mm, cfg)
    return Warp(src_affine, world_to_src, field, field_affine)
