"""Negative controls for the face check: heads whose face was removed crudely.

Used to calibrate and test the detectors (``benchmarks/bench_qc.py``, ``tests/test_qc*.py``):
on such a head no detector may find a face.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from bids_deface.features.geometry import as_3d
from bids_deface.qc.render import surface_threshold


def remove_face_crudely(img: nib.spatialimages.SpatialImage, depth_mm: float = 80.0) -> nib.Nifti1Image:
    """``img`` with every voxel in front of a coronal plane ``depth_mm`` behind the nose tip set to 0.

    80 mm behind the nose tip lies behind the orbits, at about the front of the brain: the
    render shows a flat cut face. (A plane through the orbits leaves a skull-like face of
    sockets and nasal cavity, on which CenterFace scores up to ~0.75.)

    The nose tip is the most anterior voxel of the head (above the skin threshold). Works in
    world space, so any orientation; returns a float32 image on ``img``'s grid.
    """
    img = as_3d(img)
    data = np.asarray(img.dataobj, dtype=np.float32)
    ijk = np.indices(data.shape, dtype=np.float32).reshape(3, -1)
    anterior = (img.affine[1, :3] @ ijk + img.affine[1, 3]).reshape(data.shape)
    tip = anterior[data > surface_threshold(data)].max()
    out = np.where(anterior > tip - depth_mm, 0.0, data).astype(np.float32)
    return nib.Nifti1Image(out, img.affine)
