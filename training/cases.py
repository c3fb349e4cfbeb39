"""Full-resolution test images made from annotated heads, with their true labels on the image grid.

The same synthesis as training (``training.deform``, ``training.contrast``, ``training.acquire``),
but at the resolution of a real scan, so the detector is tested end to end through its own
resampling: (a) :func:`augmented_case` draws everything at random from a seed stream that
training never uses; (c) :func:`perturbed_case` applies one named heavy perturbation to a head
(the held-out real head in ``training.evaluate``), so every perturbation has its own row.
Truth labels are the head's labels read at each voxel centre through the same warp.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from .acquire import Acquisition, AcquisitionConfig, acquire, covering_acquisition, random_acquisition
from .augment import SpatialConfig, TrainingHead, random_head_motion
from .contrast import ContrastConfig, random_renderer, source_renderer, synthetic_renderer
from .deform import ElasticConfig, Warp, grid_points, random_field, random_warp, rotation
from .labels import load_landmarks

MARGIN_MM = 20.0  # air around the head in a made image


def _truth(head: TrainingHead, warp: Warp, acq: Acquisition) -> np.ndarray:
    coords = warp.source_coords(*grid_points(acq.shape, acq.affine))
    return ndi.map_coordinates(head.labels, coords, order=0, mode="constant", cval=0).astype(np.uint8)


def _scanner_intensities(rng: np.random.Generator, image: np.ndarray, noise: float) -> np.ndarray:
    """Gamma, a smooth bias field and Gaussian noise, then stored as int16 like a scanner would."""
    lo, hi = np.percentile(image[:: 7], [1, 99.5])
    x = np.clip((image - lo) / max(hi - lo, 1e-6), 0, None) ** float(np.exp(rng.normal(0, 0.25)))
    field = ndi.zoom(rng.normal(0, 0.2, (4, 4, 4)), np.array(x.shape) / 4, order=3)[: x.shape[0], : x.shape[1], : x.shape[2]]
    x = x * np.exp(field) + rng.normal(0, noise, x.shape).astype(np.float32)
    return (np.clip(x, 0, None) * 1000).astype(np.int16)


def _field_over(rng, lo, hi, cfg: ElasticConfig):
    size = float(np.max(hi - lo)) + 2 * MARGIN_MM
    return random_field(rng, lo - MARGIN_MM, size, cfg)


def augmented_case(rng: np.random.Generator, head: TrainingHead) -> tuple[nib.Nifti1Image, np.ndarray]:
    """A full-resolution synthesised head: moved, deformed, any contrast, any acquisition grid."""
    centre = (head.lo + head.hi) / 2
    motion = random_head_motion(rng, centre, SpatialConfig(max_shift_mm=8.0))
    lo, hi = centre - (head.hi - head.lo) / 2 * 1.1 - 8, centre + (head.hi - head.lo) / 2 * 1.1 + 8
    warp = random_warp(rng, head.affine, np.linalg.inv(motion), lo - MARGIN_MM,
                       float(np.max(hi - lo)) + 2 * MARGIN_MM, ElasticConfig())
    render = random_renderer(rng, head.data, head.tissue, ContrastConfig())
    in_plane = float(rng.uniform(0.9, 1.5))
    if rng.random() < 0.5:
        acq = random_acquisition(rng, lo, hi, AcquisitionConfig(in_plane_mm=in_plane))
    else:
        acq = covering_acquisition(lo, hi, np.eye(3), 2, in_plane, in_plane)
    image = _scanner_intensities(rng, acquire(render, warp, acq), float(rng.uniform(0, 0.04)))
    truth = _truth(head, warp, acq)
    if rng.random() < 0.3:  # neck cut by the field of view
        k = int(rng.uniform(0.05, 0.25) * acq.shape[2])
        image[:, :, :k], truth[:, :, :k] = 0, 0
    return nib.Nifti1Image(image, acq.affine), truth


# one heavy perturbation per row: slice thickness (mm) and axis, obliquity, cut, contrast, deformation
PERTURBATIONS: dict[str, dict] = {
    "slices 3 mm axial": {"thickness": 3.0, "axis": 2},
    "slices 5 mm coronal": {"thickness": 5.0, "axis": 1},
    "slices 7 mm axial": {"thickness": 7.0, "axis": 2},
    "slices 7 mm sagittal": {"thickness": 7.0, "axis": 0},
    "oblique 25°, 5 mm axial slices": {"oblique_deg": 25.0, "thickness": 5.0, "axis": 2},
    "oblique 15°, 7 mm coronal slices": {"oblique_deg": 15.0, "thickness": 7.0, "axis": 1},
    "partial FOV: nose tip cut": {"cut": "nose"},
    "partial FOV: left ear cut": {"cut": "ear"},
    "synthetic contrast A": {"synthetic": True},
    "synthetic contrast B": {"synthetic": True},
    "elastic deformation": {"elastic": True},
    "elastic + synthetic + oblique 20°, 6 mm": {"elastic": True, "synthetic": True, "oblique_deg": 20.0,
                                                 "thickness": 6.0, "axis": 2},
}


def perturbed_case(kind: str, head: TrainingHead, seed: int) -> tuple[nib.Nifti1Image, np.ndarray]:
    """``head`` under one named heavy perturbation (see PERTURBATIONS), 1 mm in-plane."""
    p = PERTURBATIONS[kind]
    rng = np.random.default_rng([seed, list(PERTURBATIONS).index(kind)])
    lo, hi = head.lo - 8, head.hi + 8
    lm = load_landmarks(head.name)
    if p.get("cut") == "nose":  # the field of view ends between the nose tip and the nasion
        hi = hi.copy()
        hi[1] = lm.pronasale[1] - 10
    elif p.get("cut") == "ear":  # ... or through the left auricle
        lo = lo.copy()
        lo[0] = min(e[0] for e in lm.ears) + 4
    warp = Warp(head.affine, np.eye(4))
    if p.get("elastic"):
        field, field_affine = _field_over(rng, lo, hi, ElasticConfig(probability=1.0))
        warp = Warp(head.affine, np.eye(4), field, field_affine)
    render = synthetic_renderer(rng, head.tissue, ContrastConfig()) if p.get("synthetic") else source_renderer(head.data)
    a = np.deg2rad(p.get("oblique_deg", 0.0))
    orientation = rotation(a, 0.6 * a, -0.4 * a)
    acq = covering_acquisition(lo, hi, orientation, p.get("axis", 2), p.get("thickness", 1.0), 1.0)
    image = _scanner_intensities(rng, acquire(render, warp, acq), 0.02)
    return nib.Nifti1Image(image, acq.affine), _truth(head, warp, acq)
