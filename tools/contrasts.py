"""Other contrasts of one real head, on other grids: the images of one session, for tests and
benchmarks (``tests/test_sessions.py``). Made from a T1w by remapping its tissue intensities (a
T2w-like image: fluid bright, fat and white matter darker; a FLAIR-like one: fluid dark, grey
matter bright; a fieldmap magnitude: flat and smooth), moving the head a little as between two
scans, and sampling it onto a new, possibly oblique, grid of other voxel sizes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from tools.perturb import head_centre, rotation_about


# how far each contrast's head moved from the T1w's in the test sessions (degrees about the
# left-right axis, mm): as between two scans of one session
SESSION_MOTION = {"T2w": (3.0, (2.0, -3.0, 1.0)), "FLAIR": (-2.0, (-1.0, 2.0, 0.0)), "magnitude1": (0.0, (0.0, 1.0, 1.0))}


def session_motion(t1: nib.spatialimages.SpatialImage, name: str) -> np.ndarray:
    """T1w world -> ``name``'s world as :data:`SESSION_MOTION` moves it (an oracle for tests: the
    registration never sees it); the identity for a contrast not moved."""
    degrees, mm = SESSION_MOTION.get(name, (0.0, (0.0, 0.0, 0.0)))
    move = rotation_about(head_centre(t1), degrees, 0)
    move[:3, 3] += np.asarray(mm)
    return move


def _levels(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Head tissue (above a tenth of the bright level) and intensities scaled to [0, 1] within it."""
    bright = np.percentile(data, 99.5)
    tissue = data > 0.1 * bright
    return tissue, np.clip(data / bright, 0, 1)


def t2_like(data: np.ndarray) -> np.ndarray:
    tissue, v = _levels(data)
    return np.where(tissue, 1000 * (1.05 - 0.8 * v), 1000 * v).astype(np.float32)


def flair_like(data: np.ndarray) -> np.ndarray:
    tissue, v = _levels(data)
    bump = np.exp(-((v - 0.55) / 0.25) ** 2)  # grey matter brightest, fluid and fat darker
    return np.where(tissue, 1000 * (0.25 + 0.75 * bump), 1000 * v).astype(np.float32)


def magnitude_like(data: np.ndarray) -> np.ndarray:
    tissue, v = _levels(data)
    return np.where(tissue, 800 * (0.6 + 0.4 * ndi.gaussian_filter(v, 2)), 800 * v).astype(np.float32)


def phase_like(magnitude: np.ndarray, seed: int = 0) -> np.ndarray:
    """A phase-difference map on the magnitude's grid: smooth phase in the head, noise in air."""
    rng = np.random.default_rng(seed)
    tissue = magnitude > 0.1 * np.percentile(magnitude, 99.5)
    smooth = ndi.gaussian_filter(rng.normal(size=magnitude.shape), 12) * 4000
    noise = rng.uniform(-4096, 4096, magnitude.shape)
    return np.where(tissue, np.clip(smooth, -4096, 4096), noise).astype(np.float32)


def acquired(img: nib.spatialimages.SpatialImage, data: np.ndarray, zooms=(1.0, 1.0, 1.0), tilt_deg: float = 0.0,
             moved_deg: float = 0.0, moved_mm=(0.0, 0.0, 0.0), fov_mm=(240.0, 256.0, 256.0)) -> nib.Nifti1Image:
    """``data`` (on ``img``'s grid) as another scan of the session would hold it: the head moved
    by ``moved_deg`` (about left-right) and ``moved_mm``, sampled on a grid of ``zooms`` tilted by
    ``tilt_deg`` (about left-right) over a ``fov_mm`` field of view centred on the head."""
    centre = head_centre(img)
    motion = rotation_about(centre, moved_deg, 0)
    motion[:3, 3] += np.asarray(moved_mm, float)
    tilt = rotation_about(centre, tilt_deg, 0)
    shape = np.ceil(np.asarray(fov_mm) / np.asarray(zooms)).astype(int)
    grid = np.diag([*zooms, 1.0])
    grid[:3, 3] = -(shape - 1) / 2 * np.asarray(zooms)
    affine = tilt @ nib.affines.from_matvec(np.eye(3), centre) @ grid
    vox2vox = np.linalg.inv(img.affine) @ np.linalg.inv(motion) @ affine
    out = ndi.affine_transform(np.asarray(data, np.float32), vox2vox[:3, :3], vox2vox[:3, 3],
                               output_shape=tuple(shape), order=1, mode="constant", cval=0.0)
    result = nib.Nifti1Image(out, affine)
    result.header.set_xyzt_units("mm", "sec")
    result.set_qform(affine, 1)
    result.set_sform(affine, 1)
    return result
