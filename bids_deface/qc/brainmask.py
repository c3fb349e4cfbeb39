"""Brain-preservation check: a brain mask independent of the face detector, and the count of
voxels that defacing changed inside it.

The mask is the MNI152NLin2009cSym brain mask shipped with bids-deface, carried onto the image
by the template registration of ``bids_deface.features.template`` (the one implementation: the
fail-closed gate and the brain guard use the same registration). Mutual information makes no
assumption on contrast, so T1w and T2w (and other) images register to either template; the
template of the image's own contrast is used when there is one.

Registration error is a few millimetres; defacing works centimetres away from the brain, so
any changed voxel inside the mask is worth a curator's look.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..features.geometry import as_3d
from ..features.template import METHOD, TEMPLATE, Localisation, localise, template_files

__all__ = ["BrainMask", "brain_mask", "brain_mask_from", "brain_voxels_changed", "template_files", "TEMPLATE"]


@dataclass
class BrainMask:
    """A brain mask on an image's own grid, and how it was made."""

    mask: np.ndarray  # bool, the image's 3D grid
    affine: np.ndarray  # the image's affine
    template_to_image: np.ndarray  # 4x4, template world (mm) -> image world (mm)
    template: str  # e.g. "MNI152NLin2009cSym T1w"
    mutual_information: float  # at the solution, in nats
    method: str = METHOD
    registration_failures: tuple[str, ...] = ()  # the registration quality checks it failed


def brain_mask_from(loc: Localisation) -> BrainMask:
    """The brain mask of a localisation already made (no second registration)."""
    reg = loc.registration
    return BrainMask(loc.brain, loc.affine.copy(), reg.template_to_image, reg.template, reg.mutual_information,
                     registration_failures=tuple(reg.failures))


def brain_mask(img: nib.spatialimages.SpatialImage, contrast: str | None = "T1w") -> BrainMask:
    """The template brain mask registered onto ``img`` (3D, or 4D with one volume).

    ``contrast`` picks the template (T1w or T2w); any other value, or None, uses T1w (mutual
    information copes with the mismatch).
    """
    return brain_mask_from(localise(as_3d(img), contrast))


def brain_voxels_changed(original: nib.spatialimages.SpatialImage, defaced: nib.spatialimages.SpatialImage,
                         mask: np.ndarray) -> int:
    """How many voxels inside ``mask`` differ between ``original`` and ``defaced`` (same grid)."""
    a = np.asarray(as_3d(original).dataobj, dtype=np.float64)
    b = np.asarray(as_3d(defaced).dataobj, dtype=np.float64)
    if a.shape != b.shape or a.shape != mask.shape:
        raise ValueError(f"brain check: original {a.shape}, defaced {b.shape} and mask {mask.shape} differ in shape")
    changed = ~((a == b) | (np.isnan(a) & np.isnan(b)))
    return int(np.count_nonzero(changed & mask))
