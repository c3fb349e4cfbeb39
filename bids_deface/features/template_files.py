"""The template bids-deface ships: TemplateFlow's MNI152NLin2009cSym, reduced (4 mm T1w and T2w
heads, a 2 mm brain mask, 2 mm eye/nose/ear labels made by ``tools/build_template_labels.py``), read
through the ``templateflow`` client from ``bids_deface/data/templateflow``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

TEMPLATE = "MNI152NLin2009cSym"
SHIPPED_TEMPLATEFLOW = Path(str(files("bids_deface") / "data" / "templateflow"))
CONTRASTS = ("T1w", "T2w")
BRAIN_BOX_MM = 16.0  # how far around the brain its distance is carried onto the image (dilations)


@dataclass(frozen=True)
class Template:
    """The shipped template on its own grids: head intensities, brain mask and feature labels."""

    name: str  # e.g. "MNI152NLin2009cSym T1w"
    head: np.ndarray
    head_affine: np.ndarray
    brain: np.ndarray  # bool, 2 mm
    brain_affine: np.ndarray
    labels: np.ndarray  # uint8, 2 mm: 0 background, 1 eyes, 2 nose, 3 ears
    labels_affine: np.ndarray
    brain_distance: np.ndarray  # signed distance (mm) to the brain mask's edge, negative inside; 2 mm,
    brain_distance_affine: np.ndarray  # on the mask's grid run on by BRAIN_BOX_MM on each side


def _templateflow_get(**query) -> Path:
    os.environ.setdefault("TEMPLATEFLOW_HOME", str(SHIPPED_TEMPLATEFLOW))
    import templateflow.api as tf

    found = tf.get(TEMPLATE, **query)
    if not found or isinstance(found, list) or not Path(found).is_file() or Path(found).stat().st_size == 0:
        what = ", ".join(f"{k}={v}" for k, v in query.items())
        raise FileNotFoundError(
            f"{TEMPLATE} file ({what}) not found in TEMPLATEFLOW_HOME={os.environ['TEMPLATEFLOW_HOME']}; "
            f"bids-deface ships it in {SHIPPED_TEMPLATEFLOW}: point TEMPLATEFLOW_HOME there")
    return Path(found)


def template_files(contrast: str = "T1w") -> tuple[Path, Path]:
    """(head image, brain mask) of the shipped template, read through templateflow.

    TEMPLATEFLOW_HOME defaults to the folder shipped inside bids-deface; a different home must
    hold ``tpl-MNI152NLin2009cSym`` copied from there.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"no {TEMPLATE} template for contrast {contrast!r}; have {', '.join(CONTRASTS)}")
    return (_templateflow_get(resolution=4, suffix=contrast, desc=None),
            _templateflow_get(resolution=2, desc="brain", suffix="mask"))


def feature_labels_file() -> Path:
    """The template's eye/nose/ear labels (2 mm, built by tools/build_template_labels.py)."""
    return _templateflow_get(resolution=2, desc="facialfeatures", suffix="dseg", extension=".nii.gz")


@lru_cache(maxsize=1)
def brain_distance() -> tuple[np.ndarray, np.ndarray]:
    """(distance in mm beyond the template's brain mask, its affine): one for every contrast."""
    brain = nib.load(template_files()[1])
    mask = np.asarray(brain.dataobj) > 0
    spacing = np.sqrt((brain.affine[:3, :3] ** 2).sum(0))
    # distance beyond the mask's edge (half a voxel beyond the outermost voxel centres), mm, on a
    # grid run on by BRAIN_BOX_MM: a dilation may reach beyond the template's field of view.
    # Inside, every voxel holds -half a voxel (the edge voxels' true value): each use asks for
    # "within d >= 0 mm", and interpolation between inside voxels stays below 0 all the same
    pad = int(np.ceil(BRAIN_BOX_MM / spacing.min())) + 1
    padded = np.pad(mask, pad)
    half = spacing.min() / 2
    distance = np.where(padded, -half, ndi.distance_transform_edt(~padded, sampling=spacing) - half)
    padded_affine = brain.affine.copy()
    padded_affine[:3, 3] -= brain.affine[:3, :3] @ np.full(3, pad)
    return distance.astype(np.float32), padded_affine


@lru_cache(maxsize=2)
def load_template(contrast: str = "T1w") -> Template:
    head_path, brain_path = template_files(contrast)
    head, brain, labels = (nib.load(p) for p in (head_path, brain_path, feature_labels_file()))
    distance, distance_affine = brain_distance()
    return Template(f"{TEMPLATE} {contrast}", np.asarray(head.dataobj, np.float32), head.affine,
                    np.asarray(brain.dataobj) > 0, brain.affine, np.asarray(labels.dataobj, np.uint8),
                    labels.affine, distance, distance_affine)


# --- quality of a registration --------------------------------------------------------------

